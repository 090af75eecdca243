//! `eventlet serve`: static files from a directory, or a hello page, on the
//! green HTTP server, with eventlet's access log on stderr.
//!
//! A request path is percent-decoded and split into segments; a `..`
//! segment (written plainly or as `%2e%2e`) is refused with `403`, and so
//! is a path that leads out of the directory through a symbolic link (the
//! resolved file must lie under the resolved directory). A directory is
//! answered with its `index.html` if it has one, else with a listing.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Result};
use eventlet_http::http::{header, Method, Request, Response, StatusCode};
use eventlet_http::Body;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(short, long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen: String,
    /// Most connections open at once.
    #[arg(short, long, value_name = "N", default_value_t = 1024)]
    max_clients: usize,
    /// Also open an inspection console on this address (`nc ADDR`, then `threads`).
    #[arg(long, value_name = "ADDR")]
    console: Option<String>,
    /// Directory to serve (without it: a hello page).
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    crate::at_least_one(args.max_clients, "--max-clients")?;
    let root = match &args.dir {
        Some(dir) => Some(check_dir(dir)?),
        None => None,
    };
    let listener = crate::listen(&args.listen)?;
    let server = eventlet_http::Server::new(listener).max_connections(args.max_clients).access_log(true);
    let addr = server.local_addr()?;
    let stop = server.shutdown_handle();
    crate::signal::on_interrupt(move || stop.shutdown())?;
    match &root {
        Some(root) => println!("serving {} on http://{addr}/", root.display()),
        None => println!("serving a hello page on http://{addr}/"),
    }
    crate::console(args.console.as_deref())?;
    let root = Rc::new(root);
    server.serve(move |req| match root.as_ref() {
        Some(root) => file_response(root, &req),
        None => hello(&req),
    })?;
    eprintln!("server stopped");
    Ok(())
}

/// The directory to serve, resolved; a clear error if it is not one.
fn check_dir(dir: &Path) -> Result<PathBuf> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(dir.canonicalize()?),
        Ok(_) => bail!("{}: not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{}: no such directory", dir.display()),
        Err(e) => bail!("{}: {e}", dir.display()),
    }
}

fn hello(req: &Request<Body>) -> Response<Body> {
    if let Some(r) = check_method(req) {
        return r;
    }
    let mut r = Response::new(Body::from("Hello, World!\r\n"));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn check_method(req: &Request<Body>) -> Option<Response<Body>> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return None;
    }
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    Some(r)
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Answers a request for a file or directory under `root`.
fn file_response(root: &Path, req: &Request<Body>) -> Response<Body> {
    if let Some(r) = check_method(req) {
        return r;
    }
    let url_path = req.uri().path();
    let Some(decoded) = percent_decode(url_path.as_bytes()) else {
        return text(StatusCode::BAD_REQUEST, "bad request: malformed %-escape in the path\n");
    };
    let mut path = root.to_path_buf();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => return text(StatusCode::FORBIDDEN, "forbidden: '..' in the path\n"),
            s if s.contains(&0) => return text(StatusCode::BAD_REQUEST, "bad request: NUL in the path\n"),
            s => path.push(std::ffi::OsStr::from_bytes(s)),
        }
    }
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) => return io_error(&e),
    };
    if !real.starts_with(root) {
        return text(StatusCode::FORBIDDEN, "forbidden: outside the served directory\n");
    }
    let meta = match std::fs::metadata(&real) {
        Ok(m) => m,
        Err(e) => return io_error(&e),
    };
    if meta.is_dir() {
        if !url_path.ends_with('/') {
            let mut location = format!("{url_path}/");
            if let Some(q) = req.uri().query() {
                location = format!("{location}?{q}");
            }
            let mut r = text(StatusCode::MOVED_PERMANENTLY, &format!("moved to {location}\n"));
            if let Ok(v) = header::HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        let index = real.join("index.html");
        if index.is_file() {
            return send_file(&index);
        }
        return listing(&real, url_path);
    }
    send_file(&real)
}

fn io_error(e: &std::io::Error) -> Response<Body> {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => text(StatusCode::NOT_FOUND, "not found\n"),
        std::io::ErrorKind::PermissionDenied => text(StatusCode::FORBIDDEN, "forbidden\n"),
        _ => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("internal server error: {e}\n")),
    }
}

fn send_file(path: &Path) -> Response<Body> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return io_error(&e),
    };
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return text(StatusCode::FORBIDDEN, "forbidden: not a regular file\n"),
        Err(e) => return io_error(&e),
    };
    let mut r = Response::new(Body::sized_reader(file, len));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type(path)));
    r
}

/// The `Content-Type` for a file name's extension.
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "text" | "log" | "rs" | "toml" | "py" | "c" | "h" | "sh" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// An HTML listing of a directory, names sorted, directories ending in `/`.
fn listing(dir: &Path, url_path: &str) -> Response<Body> {
    let entries = match std::fs::read_dir(dir) {
        Ok(it) => it,
        Err(e) => return io_error(&e),
    };
    let mut names: Vec<(Vec<u8>, bool)> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let is_dir = e.path().is_dir();
            (e.file_name().into_vec(), is_dir)
        })
        .collect();
    names.sort();
    let title = html_escape(url_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if url_path != "/" {
        html.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir) in names {
        let slash = if is_dir { "/" } else { "" };
        let shown = html_escape(&String::from_utf8_lossy(&name));
        let _ = writeln!(html, "<li><a href=\"{}{slash}\">{shown}{slash}</a></li>", percent_encode(&name));
    }
    html.push_str("</ul>\n</body></html>\n");
    let mut r = Response::new(Body::from(html));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` for a malformed one.
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_encodes() {
        assert_eq!(percent_decode(b"/a%20b/%2e%2E").unwrap(), b"/a b/..");
        assert_eq!(percent_decode(b"/%zz"), None);
        assert_eq!(percent_decode(b"/%2"), None);
        assert_eq!(percent_encode("a b&ü.txt".as_bytes()), "a%20b%26%C3%BC.txt");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("x/INDEX.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
