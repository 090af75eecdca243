//! `eventlet serve`: static files from a directory, or a hello page, on the
//! green HTTP server, on every core ([`eventlet_http::Server::workers`]),
//! with eventlet's access log on stderr.
//!
//! A request path is percent-decoded and split into segments; a `..`
//! segment (written plainly or as `%2e%2e`) is refused with `403`, and so
//! is a path that leads out of the directory through a symbolic link (the
//! resolved file, a directory's `index.html` too, must lie under the
//! resolved directory), and so is
//! anything but a regular file or a directory (a FIFO, whose opening would
//! wait with the hub's thread; a device). A directory is answered with its
//! `index.html` if it has one, else with a listing.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use eventlet_http::http::{header, Method, Request, Response, StatusCode};
use eventlet_http::Body;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(short, long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen: String,
    /// Most connections open at once (on all hubs together).
    #[arg(short, long, value_name = "N", default_value_t = 1024)]
    max_clients: usize,
    /// Hubs (OS threads) serving connections [default: every core this process may use].
    #[arg(short, long, value_name = "N")]
    workers: Option<usize>,
    /// Also open an inspection console on this address (`nc ADDR`, then `threads`).
    #[arg(long, value_name = "ADDR")]
    console: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Directory to serve (without it: a hello page).
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    crate::at_least_one(args.max_clients, "--max-clients")?;
    let workers = crate::workers(args.workers)?;
    let root = match &args.dir {
        Some(dir) => Some(check_dir(dir)?),
        None => None,
    };
    let listener = crate::listen(&args.listen)?;
    let mut server = eventlet_http::Server::new(listener).max_connections(args.max_clients).access_log(true);
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            server =
                server.tls_files(cert, key).map_err(|e| anyhow::anyhow!("cannot use --tls-cert/--tls-key: {e}"))?;
            "https"
        }
        _ => "http",
    };
    let server = server.workers(workers);
    let addr = server.local_addr()?;
    let stop = server.shutdown_handle();
    crate::signal::on_interrupt(move || stop.stop())?;
    let hubs = format!("{workers} hub{}", if workers == 1 { "" } else { "s" });
    match &root {
        Some(root) => println!("serving {} on {scheme}://{addr}/ ({hubs})", root.display()),
        None => println!("serving a hello page on {scheme}://{addr}/ ({hubs})"),
    }
    crate::console(args.console.as_deref())?;
    let root = Arc::new(root);
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
            // A path on this server: `//name/` would be another host's.
            let mut location = format!("/{}/", url_path.trim_start_matches('/'));
            if let Some(q) = req.uri().query() {
                location = format!("{location}?{q}");
            }
            let mut r = text(StatusCode::MOVED_PERMANENTLY, &format!("moved to {location}\n"));
            if let Ok(v) = header::HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        // The index is a path like any other: a link out of the
        // directory is refused.
        if let Ok(index) = real.join("index.html").canonicalize() {
            if !index.starts_with(root) {
                return text(StatusCode::FORBIDDEN, "forbidden: outside the served directory\n");
            }
            if index.is_file() {
                return send_file(&index, req);
            }
        }
        return listing(&real, url_path);
    }
    if !meta.is_file() {
        // A FIFO or a device: opening one may wait (for a writer) with
        // the hub's whole OS thread.
        return text(StatusCode::FORBIDDEN, "forbidden: not a regular file\n");
    }
    send_file(&real, req)
}

fn io_error(e: &std::io::Error) -> Response<Body> {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => text(StatusCode::NOT_FOUND, "not found\n"),
        std::io::ErrorKind::PermissionDenied => text(StatusCode::FORBIDDEN, "forbidden\n"),
        _ => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("internal server error: {e}\n")),
    }
}

/// A file, with what nginx offers of it: `Accept-Ranges`, a strong `ETag`
/// and `Last-Modified`; `304` for `If-None-Match` / `If-Modified-Since`; one
/// byte range (`206` with `Content-Range`, honouring `If-Range`), `416` for
/// one past the end. A request for several ranges gets the whole file
/// (`200`), which RFC 9110 allows.
fn send_file(path: &Path, req: &Request<Body>) -> Response<Body> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return io_error(&e),
    };
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => return text(StatusCode::FORBIDDEN, "forbidden: not a regular file\n"),
        Err(e) => return io_error(&e),
    };
    let len = meta.len();
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let etag = format!("\"{:x}-{:x}\"", len, mtime.map_or(0, |d| d.as_nanos()));
    let last_modified = mtime.map(|d| http_date::format(d.as_secs()));
    let header = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    let mut head = Response::builder()
        .header(header::CONTENT_TYPE, content_type(path))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag.as_str());
    if let Some(lm) = &last_modified {
        head = head.header(header::LAST_MODIFIED, lm.as_str());
    }
    // Conditional requests: If-None-Match wins over If-Modified-Since.
    let not_modified = match header(header::IF_NONE_MATCH) {
        Some(tags) => tags.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        }),
        None => match (header(header::IF_MODIFIED_SINCE).and_then(http_date::parse), mtime) {
            (Some(since), Some(m)) => m.as_secs() <= since,
            _ => false,
        },
    };
    if not_modified {
        return head.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap_or_default();
    }
    let range = header(header::RANGE).filter(|_| {
        // If-Range: the range holds only for the same version of the file.
        match header(header::IF_RANGE) {
            None => true,
            Some(v) if v.starts_with('"') => v == etag,
            Some(v) => http_date::parse(v).is_some_and(|d| mtime.is_some_and(|m| m.as_secs() <= d)),
        }
    });
    match range.map(|r| parse_range(r, len)) {
        Some(Range::One(start, end)) => {
            use std::io::Seek;
            if let Err(e) = file.seek(std::io::SeekFrom::Start(start)) {
                return io_error(&e);
            }
            let n = end - start + 1;
            head.status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
                .body(Body::sized_reader(file, n))
                .unwrap_or_default()
        }
        Some(Range::Unsatisfiable) => head
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Body::empty())
            .unwrap_or_default(),
        Some(Range::Whole) | None => head.body(Body::sized_reader(file, len)).unwrap_or_default(),
    }
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Bytes `start..=end`.
    One(u64, u64),
    /// Nothing of it exists: `416`.
    Unsatisfiable,
    /// The whole file (several ranges, or a header this server ignores).
    Whole,
}

/// Parses `bytes=A-B`, `bytes=A-` and `bytes=-N` (RFC 9110 §14.1.2).
fn parse_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Range::Whole };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Range::Whole };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        // The last N bytes.
        (true, false) => match num(b) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::One(len.saturating_sub(n), len - 1),
            None => Range::Whole,
        },
        (false, _) => match (num(a), if b.is_empty() { Some(u64::MAX) } else { num(b) }) {
            (Some(start), Some(_)) if start >= len => Range::Unsatisfiable,
            (Some(start), Some(end)) if end >= start => Range::One(start, end.min(len - 1)),
            _ => Range::Whole,
        },
        (true, true) => Range::Whole,
    }
}

/// HTTP dates (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`), written and
/// read.
mod http_date {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

    /// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (i64::from(m) + 9) % 12;
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The civil date of a day count since 1970-01-01.
    fn civil_from_days(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    /// `secs` since the epoch as an HTTP date.
    pub(super) fn format(secs: u64) -> String {
        let days = (secs / 86_400) as i64;
        let t = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        format!(
            "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
            DAYS[days.rem_euclid(7) as usize],
            MONTHS[m as usize - 1],
            t / 3600,
            t / 60 % 60,
            t % 60
        )
    }

    /// An HTTP date as seconds since the epoch; `None` if malformed.
    pub(super) fn parse(s: &str) -> Option<u64> {
        let mut f = s.split_whitespace().skip(1);
        let d: u32 = f.next()?.parse().ok()?;
        let month = f.next()?;
        let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(month))? as u32 + 1;
        let y: i64 = f.next()?.parse().ok()?;
        // Beyond these years the day arithmetic would overflow; HTTP dates
        // have four-digit years.
        if !(1970..=9999).contains(&y) {
            return None;
        }
        let mut hms = f.next()?.split(':').map(|x| x.parse::<u64>().ok());
        let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
        if f.next()? != "GMT" || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
        Some(days * 86_400 + h * 3600 + mi * 60 + se)
    }
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
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::One(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::One(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::One(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Range::One(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), Range::One(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Whole);
        assert_eq!(parse_range("bytes=9-3", 100), Range::Whole);
        assert_eq!(parse_range("items=0-1", 100), Range::Whole);
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date::format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date::parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(http_date::format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        for t in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(http_date::parse(&http_date::format(t)), Some(t));
        }
        assert_eq!(http_date::parse("yesterday"), None);
        assert_eq!(http_date::parse("Sun, 06 Nov 9223372036854775807 08:49:37 GMT"), None);
        assert_eq!(http_date::parse("Fri, 31 Dec 9999 23:59:59 GMT"), Some(253_402_300_799));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("x/INDEX.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
