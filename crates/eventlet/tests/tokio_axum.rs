//! axum, unchanged, on a hub: a router whose handler awaits a green thread
//! doing blocking-style work (a pool of green `TcpStream`s to a green echo
//! server, kept in a `Queue`), all on one OS thread, stays correct under
//! `wrk -c100` for three seconds: every response is a 200 with the exact
//! body, wrk sees no socket error, the server counted every request, and
//! it still answers afterwards. When wrk's time is up it closes its
//! connections with requests in flight: hyper drops their handlers' futures,
//! which kills their green work (cancellation), and a connection such a
//! green thread held goes back to the pool as a new one.
//! Skips without wrk outside CI.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use util::servers::{wrk_binary, TempDir};

/// Echo connections in the pool (fewer than wrk's, so handlers wait for
/// one the green way).
const POOL: usize = 20;

type Conn = BufReader<eventlet::net::TcpStream>;

thread_local! {
    /// The hub thread's pool of connections to the echo server.
    static ECHO: eventlet::Queue<Conn> = eventlet::Queue::new();
    /// The echo server's address.
    static ECHO_ADDR: std::cell::Cell<Option<SocketAddr>> = const { std::cell::Cell::new(None) };
}

/// Green threads killed in the middle of their work (their request was
/// cancelled: wrk closed its connections when its time was up).
static CANCELLED: AtomicU64 = AtomicU64::new(0);

/// A connection borrowed from the pool. If the work is cancelled (the
/// green thread killed) while it holds one, the connection may be in the
/// middle of a line: it is closed, and a new one goes to the pool.
struct Lease(Option<Conn>);

impl Drop for Lease {
    fn drop(&mut self) {
        if self.0.take().is_some() {
            CANCELLED.fetch_add(1, Ordering::Relaxed);
            // No waiting while unwinding: a green thread of its own connects.
            eventlet::spawn_n(|| {
                let addr = ECHO_ADDR.with(std::cell::Cell::get).unwrap();
                let s = eventlet::net::TcpStream::connect(addr).unwrap();
                ECHO.with(|q| q.put(BufReader::new(s))).unwrap();
            });
        }
    }
}

/// The green work of a request: borrow a connection, send a line, read it
/// back, return the connection.
fn echo(n: u64) -> String {
    let mut lease = Lease(Some(ECHO.with(|q| q.get()).unwrap()));
    let conn = lease.0.as_mut().unwrap();
    let line = format!("ping {n}\n");
    conn.get_mut().write_all(line.as_bytes()).unwrap();
    let mut back = String::new();
    conn.read_line(&mut back).unwrap();
    assert_eq!(back, line);
    ECHO.with(|q| q.put(lease.0.take().unwrap())).unwrap();
    format!("echoed {}", back.trim_end())
}

async fn work(State(count): State<Arc<AtomicU64>>, Path(n): Path<u64>) -> String {
    count.fetch_add(1, Ordering::Relaxed);
    eventlet::hub::handle().spawn_future(move || echo(n)).unwrap().await.unwrap()
}

/// Prints what wrk counted, and counts bodies that are not the expected one.
const LUA: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or body ~= "echoed ping 7" then bad = bad + 1 end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d bad=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, b, e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

#[test]
fn axum_handler_awaits_green_work_under_wrk() {
    let Some(wrk) = wrk_binary() else { return };
    let dir = TempDir::new("tokio-axum-wrk");
    std::fs::write(dir.0.join("check.lua"), LUA).unwrap();

    let hub = eventlet::hub::start("axum-hub").unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let c = count.clone();
    hub.handle()
        .spawn(move || {
            // The green echo server.
            let echo_server = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let echo_addr = echo_server.local_addr().unwrap();
            ECHO_ADDR.with(|a| a.set(Some(echo_addr)));
            eventlet::spawn_n(move || loop {
                let Ok((s, _)) = echo_server.accept() else { return };
                eventlet::spawn_n(move || {
                    let mut r = BufReader::new(s);
                    let mut line = String::new();
                    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                        if r.get_mut().write_all(line.as_bytes()).is_err() {
                            return;
                        }
                        line.clear();
                    }
                });
            });
            for _ in 0..POOL {
                let s = eventlet::net::TcpStream::connect(echo_addr).unwrap();
                ECHO.with(|q| q.put(BufReader::new(s))).unwrap();
            }
            // axum on the hub's tokio runtime, its tasks on this thread.
            let app = Router::new().route("/work/{n}", get(work)).with_state(c);
            eventlet::block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
            // The green echo server's threads are left parked; the hub
            // thread is not joined.
        })
        .unwrap();
    let addr = addr_rx.recv().unwrap();

    let out = Command::new(&wrk)
        .args(["-t1", "-c100", "-d3s", "-s"])
        .arg(dir.0.join("check.lua"))
        .arg(format!("http://{addr}/work/7"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let result = stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_else(|| panic!("no summary: {stdout}"));
    let field = |name: &str| -> u64 {
        result
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {result}"))
    };
    eprintln!("wrk: {result}; green work cancelled with its request: {}", CANCELLED.load(Ordering::Relaxed));
    assert!(field("requests") > 1000, "{result}");
    for f in ["bad", "connect", "read", "write", "status", "timeout"] {
        assert_eq!(field(f), 0, "{f} in {result}");
    }
    // The server saw at least what wrk completed (wrk cuts the last ones
    // short when its time is up).
    assert!(count.load(Ordering::Relaxed) >= field("requests"), "{result}");

    // Still healthy afterwards.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /work/9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut s, &mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("echoed ping 9"), "{resp}");
    let _ = stop_tx.send(());
    drop(hub);
}
