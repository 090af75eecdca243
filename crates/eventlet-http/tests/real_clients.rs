//! The server driven by clients no one here wrote: curl and Python's
//! `http.client`.

mod util;

use std::io::Write;

use util::{pattern, routes, run, spawn_server};

fn url(addr: std::net::SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[test]
fn curl_keep_alive_reuses_one_connection() {
    let Some(curl) = util::tool("curl") else { return };
    let addr = spawn_server(|s| s, routes);
    let (out, err) =
        run(&curl, &["-sv", "--max-time", "10", &url(addr, "/peer"), &url(addr, "/peer"), &url(addr, "/")]);
    let out = String::from_utf8(out).unwrap();
    // Both /peer answers name the same client port: one connection.
    let port = out.strip_suffix("hello").expect("third body").to_string();
    assert_eq!(port.len() % 2, 0, "{out}");
    let (a, b) = port.split_at(port.len() / 2);
    assert_eq!(a, b, "two connections were used: {out}\n{err}");
    assert!(err.contains("< Date: "), "no Date header: {err}");
}

#[test]
fn curl_chunked_upload_is_echoed() {
    let Some(curl) = util::tool("curl") else { return };
    let addr = spawn_server(|s| s, routes);
    let data = pattern(300_000);
    let dir = std::env::temp_dir().join(format!("eventlet-http-upload-{}", std::process::id()));
    std::fs::File::create(&dir).unwrap().write_all(&data).unwrap();
    let file = format!("@{}", dir.display());
    for path in ["/echo", "/echo-stream"] {
        let (out, err) = run(
            &curl,
            &["-sv", "--max-time", "10", "-H", "Transfer-Encoding: chunked", "--data-binary", &file, &url(addr, path)],
        );
        assert!(err.contains("> Transfer-Encoding: chunked"), "curl did not send chunked: {err}");
        assert_eq!(out.len(), data.len(), "{path}: {err}");
        assert!(out == data, "{path}: echoed body differs");
    }
    let _ = std::fs::remove_file(dir);
}

#[test]
fn curl_expect_100_continue() {
    let Some(curl) = util::tool("curl") else { return };
    let addr = spawn_server(|s| s, routes);
    let data = pattern(50_000);
    let dir = std::env::temp_dir().join(format!("eventlet-http-expect-{}", std::process::id()));
    std::fs::File::create(&dir).unwrap().write_all(&data).unwrap();
    let file = format!("@{}", dir.display());
    // Buffered (`/echo`) and streamed straight back (`/echo-stream`): the
    // 100 must come before the final head, never inside the body.
    for path in ["/echo", "/echo-stream"] {
        let (out, err) = run(
            &curl,
            &["-sv", "--max-time", "10", "-H", "Expect: 100-continue", "--data-binary", &file, &url(addr, path)],
        );
        assert!(err.contains("< HTTP/1.1 100 Continue"), "{path}: no 100 Continue: {err}");
        assert!(out == data, "{path}: echoed body differs ({} bytes back for {})", out.len(), data.len());
    }
    let _ = std::fs::remove_file(dir);
}

#[test]
fn curl_head_has_headers_and_no_body() {
    let Some(curl) = util::tool("curl") else { return };
    let addr = spawn_server(|s| s, routes);
    let (out, _) = run(&curl, &["-sI", "--max-time", "10", &url(addr, "/")]);
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Content-Length: 5\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "a body followed a HEAD answer: {out:?}");
    // HEAD then GET on the same connection: the HEAD answer carried no body
    // bytes that would corrupt the next response.
    let (out, err) =
        run(&curl, &["-sv", "--max-time", "10", "-I", &url(addr, "/stream"), "--next", "-s", &url(addr, "/")]);
    let out = String::from_utf8(out).unwrap();
    assert!(out.ends_with("\r\n\r\nhello"), "{out:?} {err}");
}

#[test]
fn curl_receives_chunked_response() {
    let Some(curl) = util::tool("curl") else { return };
    let addr = spawn_server(|s| s, routes);
    let (out, err) = run(&curl, &["-sv", "--max-time", "10", &url(addr, "/stream?70000")]);
    assert!(err.contains("< Transfer-Encoding: chunked"), "{err}");
    assert!(out == pattern(70_000));
}

const PY_PIPELINE: &str = r#"
import http.client, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
# keep-alive: three requests on one HTTPConnection
c = http.client.HTTPConnection(host, port, timeout=10)
ports = []
for path in ["/peer", "/peer", "/"]:
    c.request("GET", path)
    r = c.getresponse()
    assert r.status == 200, r.status
    ports.append(r.read().decode())
assert ports[0] == ports[1], ports
assert ports[2] == "hello", ports
c.request("POST", "/echo", body=b"x" * 1000)
r = c.getresponse()
assert r.read() == b"x" * 1000
c.close()

# pipelining: three requests in one write, answers read in order
s = socket.create_connection((host, port), timeout=10)
s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
          b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nworld"
          b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
f = s.makefile("rb")
class Keep:  # HTTPResponse closes its file after each body: keep ours open
    def __getattr__(self, name):
        return getattr(f, name)
    def close(self):
        pass
class Sock:
    def makefile(self, *a, **k):
        return Keep()
bodies = []
for method in ["GET", "POST", "GET"]:
    r = http.client.HTTPResponse(Sock(), method=method)
    r.begin()
    bodies.append(r.read())
assert bodies == [b"slow", b"world", b"hello"], bodies
assert f.read() == b""
print("ok")
"#;

#[test]
fn python_http_client_keep_alive_and_pipelining() {
    let Some(py) = util::tool("python3") else { return };
    let addr = spawn_server(|s| s, routes);
    let (out, err) = run(&py, &["-c", PY_PIPELINE, &addr.ip().to_string(), &addr.port().to_string()]);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "ok", "{err}");
}
