//! The server under a short, bounded load from wrk, a load generator no
//! one here wrote: 50 keep-alive connections for two seconds of `GET`s,
//! then one second of `POST`s whose bodies the server reads. Every request
//! must be answered with a 2xx, without a socket error, and the server must
//! be healthy afterwards: it answers, and the load's connections are gone.
//!
//! Without wrk the test is skipped with a note, except in CI (see
//! `util::tool`).

mod util;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventlet_http::{Body, Server};
use http::{Request, Response};
use util::{connect, read_response, KillOnDrop, TIMEOUT};

/// Prints what wrk counted, in a form easy to parse.
const SUMMARY_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

/// [`SUMMARY_LUA`], sending `POST /echo` with a 1000-byte body.
const POST_LUA: &str = r#"
wrk.method = "POST"
wrk.path = "/echo"
wrk.body = string.rep("0123456789", 100)
wrk.headers["Content-Type"] = "application/octet-stream"
"#;

/// What wrk's summary says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    requests: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
}

/// Starts the server on its own OS thread: `GET /` says hello, `POST /echo`
/// echoes the body, `GET /connections` tells how many connections are open.
fn start_server() -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let server = Server::bind("127.0.0.1:0").unwrap();
        tx.send(server.local_addr().unwrap()).unwrap();
        let handle = server.shutdown_handle();
        server
            .serve(move |req: Request<Body>| match req.uri().path() {
                "/echo" => match req.into_body().into_bytes() {
                    Ok(b) => Response::new(Body::from(b)),
                    Err(e) => {
                        let mut r = Response::new(Body::from(e.to_string()));
                        *r.status_mut() = http::StatusCode::BAD_REQUEST;
                        r
                    }
                },
                "/connections" => Response::new(Body::from(handle.connections().to_string())),
                _ => Response::new(Body::from("Hello, World!\r\n")),
            })
            .unwrap();
    });
    rx.recv_timeout(TIMEOUT).expect("server did not start")
}

/// Runs `wrk -t1 -c50 -d{secs}s` with `script` (plus the summary) against
/// `url`, killing it should it overrun; returns its summary.
fn wrk(bin: &str, url: &str, secs: u64, script: &str) -> Summary {
    let path = std::env::temp_dir().join(format!("eventlet-http-wrk-{}-{secs}.lua", std::process::id()));
    std::fs::write(&path, format!("{script}\n{SUMMARY_LUA}")).unwrap();
    let duration = format!("{secs}s");
    let child = Command::new(bin)
        .args(["-t1", "-c50", "-d", &duration, "--timeout", "5s", "-s"])
        .arg(&path)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wrk failed");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(secs) + TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "wrk ran past its {secs} s by more than {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&path);
    let (mut out, mut err) = (String::new(), String::new());
    child.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "wrk failed ({status}):\n{out}\n{err}");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no summary in wrk's output:\n{out}\n{err}"));
    let mut s = Summary::default();
    for field in line.split(' ') {
        let (k, v) = field.split_once('=').unwrap();
        let v: u64 = v.parse().unwrap();
        match k {
            "requests" => s.requests = v,
            "connect" => s.connect = v,
            "read" => s.read = v,
            "write" => s.write = v,
            "status" => s.status = v,
            "timeout" => s.timeout = v,
            _ => panic!("unknown field {k} in {line}"),
        }
    }
    eprintln!("wrk {url} for {secs} s:\n{out}");
    s
}

/// `GET path` on a new connection; the response, head and body.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = connect(addr);
    std::io::Write::write_all(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    read_response(&mut s)
}

#[test]
fn wrk_load_gets_only_2xx_and_the_server_stays_healthy() {
    let Some(bin) = util::tool("wrk") else { return };
    let addr = start_server();

    let gets = wrk(&bin, &format!("http://{addr}/"), 2, "");
    assert!(gets.requests > 0, "wrk made no request: {gets:?}");
    assert_eq!(gets, Summary { requests: gets.requests, ..Summary::default() }, "errors under GET load");

    let posts = wrk(&bin, &format!("http://{addr}/echo"), 1, POST_LUA);
    assert!(posts.requests > 0, "wrk made no request: {posts:?}");
    assert_eq!(posts, Summary { requests: posts.requests, ..Summary::default() }, "errors under POST load");

    // Healthy afterwards: a plain request is answered, and once wrk's
    // connections have closed only ours is left.
    let reply = get(addr, "/");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n") && reply.ends_with("Hello, World!\r\n"), "{reply}");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let reply = get(addr, "/connections");
        let open = reply.rsplit("\r\n\r\n").next().unwrap().to_string();
        if open == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "wrk's connections still open {TIMEOUT:?} after the load: {open}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
