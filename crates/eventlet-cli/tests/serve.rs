//! `eventlet serve`: files with their content types, directory listings,
//! no way out of the directory, the hello page, the access log, a missing
//! directory, and Ctrl-C.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use util::{http, run, Proc, TempDir};

#[test]
fn serves_files_listings_and_content_types() {
    let site = TempDir::new("serve-files");
    site.write("notes.txt", "plain text\n");
    site.write("style.CSS", "body {}\n");
    site.write("pic.png", [0x89, b'P', b'N', b'G']);
    site.write("blob", [0u8, 1, 2]);
    site.write("sub dir/a&b.html", "<p>hi</p>");
    site.write("with-index/index.html", "<h1>index</h1>");
    site.write("with-index/other.txt", "o");
    let (server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);

    let r = http(&addr, "GET", "/notes.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "plain text\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("11"));
    assert_eq!(http(&addr, "GET", "/style.CSS").header("content-type"), Some("text/css; charset=utf-8"));
    let png = http(&addr, "GET", "/pic.png");
    assert_eq!((png.header("content-type"), png.body.as_slice()), (Some("image/png"), &[0x89, b'P', b'N', b'G'][..]));
    assert_eq!(http(&addr, "GET", "/blob").header("content-type"), Some("application/octet-stream"));
    assert_eq!(http(&addr, "GET", "/sub%20dir/a%26b.html").text(), "<p>hi</p>");

    // HEAD: the head without the body.
    let head = http(&addr, "HEAD", "/notes.txt");
    assert_eq!((head.status, head.header("content-length"), head.body.len()), (200, Some("11"), 0));
    let post = http(&addr, "POST", "/notes.txt");
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(http(&addr, "GET", "/nothing-here").status, 404);
    assert_eq!(http(&addr, "GET", "/notes.txt/deeper").status, 404);

    // The root lists its entries, sorted, directories with a slash, names escaped.
    let root = http(&addr, "GET", "/");
    assert_eq!((root.status, root.header("content-type")), (200, Some("text/html; charset=utf-8")));
    let html = root.text();
    let order: Vec<usize> = ["blob", "notes.txt", "pic.png", "style.CSS", "sub%20dir/", "with-index/"]
        .iter()
        .map(|n| html.find(&format!("href=\"{n}\"")).unwrap_or_else(|| panic!("{n} not listed: {html}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{html}");
    assert!(!html.contains("href=\"../\""), "no parent link at the root: {html}");
    // A directory without the slash is redirected; with it, listed.
    let moved = http(&addr, "GET", "/sub%20dir?x=1");
    assert_eq!((moved.status, moved.header("location")), (301, Some("/sub%20dir/?x=1")));
    let sub = http(&addr, "GET", "/sub%20dir/").text();
    assert!(sub.contains("<a href=\"a%26b.html\">a&amp;b.html</a>") && sub.contains("href=\"../\""), "{sub}");
    // A directory with an index.html is answered with it.
    assert_eq!(http(&addr, "GET", "/with-index/").text(), "<h1>index</h1>");

    // The access log, eventlet's format, on stderr.
    let log = server.stderr_once(|log| {
        log.contains("\"GET /notes.txt HTTP/1.1\" 200 11 ") && log.contains("\"POST /notes.txt HTTP/1.1\" 405")
    });
    assert!(log.lines().any(|l| l.starts_with("127.0.0.1 - - [") && l.contains("\"GET /notes.txt HTTP/1.1\" 200 11 ")));
    assert!(log.contains("\"POST /notes.txt HTTP/1.1\" 405"), "{log}");
}

#[test]
fn no_way_out_of_the_directory() {
    let top = TempDir::new("serve-escape");
    top.write("secret.txt", "TOP SECRET");
    top.write("root/ok.txt", "ok");
    top.write("root/sub/inner.txt", "inner");
    std::os::unix::fs::symlink(top.path().join("secret.txt"), top.path().join("root/link.txt")).unwrap();
    std::os::unix::fs::symlink(top.path(), top.path().join("root/up")).unwrap();
    std::os::unix::fs::symlink(top.path().join("root/ok.txt"), top.path().join("root/inside-link.txt")).unwrap();
    let root = top.path().join("root");
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", root.to_str().unwrap()]);

    for target in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/link.txt",
        "/up/secret.txt",
        "/up/",
    ] {
        let r = http(&addr, "GET", target);
        assert!(r.status == 403 || r.status == 404, "{target}: {r:?}");
        assert!(!r.text().contains("TOP SECRET"), "{target} leaked the file");
    }
    assert_eq!(http(&addr, "GET", "/../secret.txt").status, 403);
    assert_eq!(http(&addr, "GET", "/link.txt").status, 403);
    assert_eq!(http(&addr, "GET", "/%zz").status, 400);
    // What is inside stays reachable, through a link too; `.` is harmless.
    assert_eq!(http(&addr, "GET", "/inside-link.txt").text(), "ok");
    assert_eq!(http(&addr, "GET", "/./sub/./inner.txt").text(), "inner");
}

#[test]
fn without_a_directory_serves_a_hello_page() {
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0"]);
    let r = http(&addr, "GET", "/anything");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!\r\n"));
}

#[test]
fn a_missing_directory_is_an_error() {
    let out = run(&["serve", "--listen", "127.0.0.1:0", "/nonexistent/site"], Duration::from_secs(30));
    assert_eq!(out.one_line_error(), "eventlet: /nonexistent/site: no such directory");
    let file = TempDir::new("serve-notdir");
    file.write("f", "x");
    let f = file.path().join("f");
    let out = run(&["serve", "--listen", "127.0.0.1:0", f.to_str().unwrap()], Duration::from_secs(30));
    assert_eq!(out.one_line_error(), format!("eventlet: {}: not a directory", f.display()));
}

#[test]
fn workers_spread_the_connections_over_their_hubs() {
    let (server, addr) =
        Proc::server(&["serve", "--listen", "127.0.0.1:0", "--workers", "2", "--console", "127.0.0.1:0"]);
    // 30 keep-alive connections, one request each, left open.
    let conns: Vec<std::net::TcpStream> = (0..30)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 256];
            while !String::from_utf8_lossy(&got).ends_with("Hello, World!\r\n") {
                let n = c.read(&mut b).unwrap();
                assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&b[..n]);
            }
            c
        })
        .collect();
    let green = util::server_hubs(&util::console(&util::console_of(&server), "hubs\n"), 2);
    assert!(green[0].abs_diff(green[1]) <= 2 && green.iter().sum::<usize>() >= 30, "{green:?}");
    // Both hubs write to the one access log.
    let log = server.stderr_once(|log| log.matches("\"GET / HTTP/1.1\" 200 15 ").count() >= 30);
    assert_eq!(log.matches("\"GET / HTTP/1.1\" 200 15 ").count(), 30, "{log}");
    drop(conns);
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--workers", "0"], Duration::from_secs(30));
    assert_eq!(out.one_line_error(), "eventlet: --workers must be at least 1");
}

#[test]
fn ctrl_c_stops_it_cleanly() {
    let (server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(http(&addr, "GET", "/").status, 200);
    server.interrupt();
    let out = server.wait(Duration::from_secs(10));
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.ends_with("server stopped\n"), "{out:?}");
}

/// One request with extra header lines, `Connection: close`; the status
/// and the response, 5 s at most.
fn http_with(addr: &str, target: &str, headers: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        panic!("GET {target}: no answer in 5 s ({e}): {}", String::from_utf8_lossy(&raw));
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A named pipe (FIFO) in the served directory: `File::open` on it waited
/// for a writer, blocking the hub's OS thread and every connection on it
/// (here the only hub: the server stopped answering anyone). Now it is
/// refused with 403 like any file that is not a regular one.
#[test]
fn a_fifo_in_the_directory_does_not_stall_the_server() {
    let site = TempDir::new("serve-fifo");
    site.write("ok.txt", "ok");
    let fifo = site.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", "--workers", "1", site.str()]);
    let (status, text) = http_with(&addr, "/pipe", "");
    assert_eq!(status, 403, "{text}");
    let (status, text) = http_with(&addr, "/ok.txt", "");
    assert_eq!((status, text.ends_with("\r\n\r\nok")), (200, true), "{text}");
}

/// Dates with absurd years in conditional headers overflowed the date
/// arithmetic: the handler panicked (a 500 and a panic report per request
/// in a debug build). Now such a date is ignored, as any malformed one.
#[test]
fn absurd_dates_in_conditional_headers_are_ignored() {
    let site = TempDir::new("serve-dates");
    site.write("f.txt", "0123456789");
    let (server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);
    for year in ["99999999999999", "9223372036854775807", "999999999999999999999", "-9223372036854775808"] {
        let date = format!("Sun, 06 Nov {year} 08:49:37 GMT");
        let (status, text) = http_with(&addr, "/f.txt", &format!("If-Modified-Since: {date}\r\n"));
        assert_eq!(status, 200, "If-Modified-Since: {date}: {text}");
        let (status, text) = http_with(&addr, "/f.txt", &format!("Range: bytes=0-1\r\nIf-Range: {date}\r\n"));
        assert_eq!(status, 200, "If-Range: {date}: {text}");
    }
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// A directory asked for without its slash is redirected to the path
/// with one; a path beginning `//` made that `Location: //name/`, which a
/// browser reads as another host. Now the Location is a path on this
/// server.
#[test]
fn directory_redirects_stay_on_this_server() {
    let site = TempDir::new("serve-redirect");
    site.write("evil.example/index.html", "x");
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);
    for target in ["//evil.example", "///evil.example", "/evil.example"] {
        let (status, text) = http_with(&addr, target, "");
        assert_eq!(status, 301, "{target}: {text}");
        let location = text.lines().find_map(|l| l.strip_prefix("location: ").or(l.strip_prefix("Location: ")));
        assert_eq!(location, Some("/evil.example/"), "{target}: {text}");
    }
}

/// A directory's `index.html` that is a symbolic link out of the served
/// directory: the directory was checked to lie inside, its index was not,
/// and `GET /sub/` served the file the link points to. Now the index is
/// resolved and checked like any other path (403 when outside).
#[test]
fn an_index_html_linked_out_of_the_directory_is_refused() {
    let top = TempDir::new("serve-index-link");
    top.write("secret.txt", "TOP SECRET");
    top.write("root/inside.html", "inside");
    top.write("root/sub/.keep", "");
    top.write("root/ok/.keep", "");
    std::os::unix::fs::symlink(top.path().join("secret.txt"), top.path().join("root/sub/index.html")).unwrap();
    std::os::unix::fs::symlink(top.path().join("secret.txt"), top.path().join("root/index.html")).unwrap();
    std::os::unix::fs::symlink(top.path().join("root/inside.html"), top.path().join("root/ok/index.html")).unwrap();
    let root = top.path().join("root");
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", root.to_str().unwrap()]);
    for target in ["/sub/", "/"] {
        let r = http(&addr, "GET", target);
        assert!(!r.text().contains("TOP SECRET"), "{target} leaked the file: {r:?}");
        assert_eq!(r.status, 403, "{target}: {r:?}");
    }
    // A link that stays inside still serves.
    assert_eq!(http(&addr, "GET", "/ok/").text(), "inside");
}
