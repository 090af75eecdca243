//! `eventlet load` against `eventlet echo` and `eventlet serve` (directly
//! and through `eventlet forward`): the JSON it prints, the human summary,
//! stopping by itself, Ctrl-C, a server that dies mid-run, bad input.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::{closed_port, run, Proc};

const LIMIT: Duration = Duration::from_secs(60);

/// An echo server on threads of the test, which says how far the load
/// has got (so that a test acts once the load is under way, not after a
/// fixed time that a loaded machine may spend starting the program) and
/// can die mid-run.
struct WatchedEcho {
    addr: String,
    /// The most bytes echoed on one connection.
    most: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    dead: Arc<AtomicBool>,
}

impl WatchedEcho {
    fn start() -> WatchedEcho {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (most, conns, dead) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(Vec::<TcpStream>::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let (m, c, d) = (most.clone(), conns.clone(), dead.clone());
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                if d.load(Ordering::SeqCst) {
                    // Dropping the listener too: connects are refused.
                    return;
                }
                c.lock().unwrap().push(s.try_clone().unwrap());
                let m = m.clone();
                std::thread::spawn(move || {
                    let (mut buf, mut echoed) = ([0u8; 4096], 0);
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        echoed += n;
                        m.fetch_max(echoed, Ordering::SeqCst);
                    }
                });
            }
        });
        WatchedEcho { addr, most, conns, dead }
    }

    /// Waits (at most 20 s) until one connection has had `bytes` echoed.
    fn wait_for(&self, bytes: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.most.load(Ordering::SeqCst) < bytes {
            assert!(
                Instant::now() < deadline,
                "the load sent {} bytes on a connection",
                self.most.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes every connection and the listener.
    fn die(&self) {
        self.dead.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Wakes the accept loop, which then ends.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Runs `eventlet load ARGS --json` and checks what every run must hold.
fn load_json(args: &[&str]) -> Value {
    let mut argv = vec!["load"];
    argv.extend_from_slice(args);
    argv.push("--json");
    let out = run(&argv, LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr, "", "no progress bar when stderr is not a terminal");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object: {out:?}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    let requests = v["requests"].as_u64().unwrap();
    assert!(requests > 0, "{v}");
    let lat = &v["latency_us"];
    let (p50, p90, p99, max) = (
        lat["p50"].as_u64().unwrap(),
        lat["p90"].as_u64().unwrap(),
        lat["p99"].as_u64().unwrap(),
        lat["max"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{v}");
    let rate = v["requests_per_s"].as_f64().unwrap();
    let secs = v["duration_s"].as_f64().unwrap();
    assert!((rate * secs - requests as f64).abs() < 1.0, "{v}");
    v
}

#[test]
fn load_against_echo() {
    let (_echo, addr) = Proc::server(&["echo", "--listen", "127.0.0.1:0"]);
    let t = Instant::now();
    let v = load_json(&["echo", &addr, "-c", "20", "-d", "1s"]);
    assert!(t.elapsed() < Duration::from_secs(15), "bounded by its duration: {:?}", t.elapsed());
    assert_eq!((v["mode"].as_str(), v["target"].as_str()), (Some("echo"), Some(addr.as_str())));
    assert_eq!((v["connections"].as_u64(), v["errors"].as_u64()), (Some(20), Some(0)));
    let secs = v["duration_s"].as_f64().unwrap();
    assert!((1.0..10.0).contains(&secs), "{v}");
    assert_eq!(v["bytes"].as_u64().unwrap(), 64 * v["requests"].as_u64().unwrap());
    assert_eq!(v["interrupted"].as_bool(), Some(false));

    // (Runs of a second: a run must get a request through, and a shorter
    // one could be spent whole in a stall of a loaded machine.)
    let v = load_json(&["echo", &addr, "-c", "3", "-d", "1s", "--size", "1000"]);
    assert_eq!(v["bytes"].as_u64().unwrap(), 1000 * v["requests"].as_u64().unwrap());
}

#[test]
fn load_against_http_directly_and_through_the_forwarder() {
    let (_serve, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0"]);
    let (_fwd, fwd_addr) = Proc::server(&["forward", "127.0.0.1:0", &addr, "--quiet"]);
    for target in [&addr, &fwd_addr] {
        let url = format!("http://{target}/");
        let v = load_json(&["http", &url, "-c", "10", "-d", "1s"]);
        assert_eq!((v["mode"].as_str(), v["errors"].as_u64(), v["non_2xx"].as_u64()), (Some("http"), Some(0), Some(0)));
        assert_eq!(v["bytes"].as_u64().unwrap(), "Hello, World!\r\n".len() as u64 * v["requests"].as_u64().unwrap());
    }
    // Echo through the forwarder too.
    let (_echo, echo_addr) = Proc::server(&["echo", "--listen", "127.0.0.1:0"]);
    let (_fwd2, fwd2) = Proc::server(&["forward", "127.0.0.1:0", &echo_addr, "--quiet"]);
    let v = load_json(&["echo", &fwd2, "-c", "10", "-d", "1s"]);
    assert_eq!(v["errors"].as_u64(), Some(0));
}

#[test]
fn human_summary_has_the_percentiles() {
    let (_serve, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0"]);
    let out = run(&["load", "http", &format!("http://{addr}/missing"), "-c", "2", "-d", "1s"], LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr, "");
    let s = &out.stdout;
    assert!(s.starts_with(&format!("load http http://{addr}/missing: 2 connections")), "{s}");
    for want in ["requests:", "/s)", "errors:    0", "latency:   p50 ", " p90 ", " p99 ", " max "] {
        assert!(s.contains(want), "{want:?} missing: {s}");
    }
    // The hello page answers everything with 200; a 404 would be counted.
    assert!(s.contains("non-2xx:   0"), "{s}");
}

#[test]
fn ctrl_c_stops_it_early_with_a_summary() {
    let echo = WatchedEcho::start();
    let p = Proc::spawn(&["load", "echo", &echo.addr, "-c", "5", "-d", "60s", "--json"]);
    // A second message on a connection: the first came back, a request
    // is done (and the Ctrl-C handler is in place).
    echo.wait_for(2 * 64);
    let t = Instant::now();
    p.interrupt();
    let out = p.wait(Duration::from_secs(15));
    assert!(t.elapsed() < Duration::from_secs(10));
    // Cut short: the summary, then `eventlet: interrupted` and status 130
    // (it exited 0, as if the run had been complete).
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert_eq!(out.stderr.trim(), "eventlet: interrupted", "{out:?}");
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["interrupted"].as_bool(), Some(true));
    assert!(v["requests"].as_u64().unwrap() > 0 && v["duration_s"].as_f64().unwrap() < 30.0, "{v}");
}

#[test]
fn a_server_that_dies_mid_run_is_counted_as_errors() {
    let echo = WatchedEcho::start();
    let p = Proc::spawn(&["load", "echo", &echo.addr, "-c", "4", "-d", "1500ms", "--json", "--timeout", "1s"]);
    echo.wait_for(2 * 64);
    echo.die();
    let out = p.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert!(v["requests"].as_u64().unwrap() > 0 && v["errors"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    let dead = closed_port();
    let out = run(&["load", "echo", &dead, "-d", "1s"], LIMIT);
    assert!(out.one_line_error().starts_with(&format!("eventlet: cannot connect: {dead}: ")), "{out:?}");
    let out = run(&["load", "http", "not-a-url", "-d", "1s"], LIMIT);
    assert!(out.one_line_error().starts_with("eventlet: not-a-url: malformed URL"), "{out:?}");
    let out = run(&["load", "http", &format!("http://{dead}/"), "-d", "1s"], LIMIT);
    assert!(out.one_line_error().starts_with(&format!("eventlet: cannot fetch http://{dead}/: ")), "{out:?}");
    let out = run(&["load", "echo", &dead, "-c", "0"], LIMIT);
    assert_eq!(out.one_line_error(), "eventlet: --connections must be at least 1");
    for bad in [["-d", "0s"], ["-d", "soon"]] {
        let out = run(&["load", "echo", &dead, bad[0], bad[1]], LIMIT);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
    }
    let out = run(&["load", "smtp", &dead], LIMIT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
