//! The `client` scenario: 1,000 concurrent fetches from a local HTTP
//! server, eventlet-http's client against reqwest on tokio.
//!
//! The server is neither contender: hyper on a tokio current-thread runtime
//! in its own process (`eventlet-bench peer client-target ADDR`), pinned to
//! CPU 0, answering every `GET` with the same 1 KiB body. It counts the
//! connections it accepts and tells at `/stats`, so the table shows how
//! well each client's keep-alive pool reuses them.
//!
//! A round is one contender fetching the page `fetches` times, at most
//! 1,000 at once, with a fresh client (so its pool starts empty), on a
//! fresh OS thread pinned to CPU 1:
//!
//! - `eventlet`: one shared [`eventlet_http::Client`] and the seed
//!   crawler's pattern, [`eventlet::GreenPool::imap`] with a pool of 1,000
//!   green threads, each fetch on a green thread of its own.
//! - `reqwest`: one shared `reqwest::Client` on a tokio current-thread
//!   runtime, each fetch a task of its own, a semaphore of 1,000 permits.
//! - `eventlet+reqwest`: reqwest in green threads: the seed crawler's
//!   pattern (`GreenPool::imap`, 1,000 green threads) where each fetch is
//!   `eventlet::block_on` of one shared `reqwest::Client`'s request, on the
//!   hub's tokio runtime (the `tokio` feature's bridge).
//!
//! Every body is checked (status 200, 1 KiB); a failed fetch fails the
//! scenario. Rounds alternate between the contenders; the table has the
//! median of the rounds in fetches per second, the client's CPU time per
//! 1,000 fetches (the harness process, which does nothing else meanwhile),
//! the connections the server accepted per round and how busy the server
//! was (near 100% means it, not the client, set the pace).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::report::{Report, Row};
use crate::util;
use crate::Opts;

/// The peer kind of the server this scenario fetches from.
const TARGET: &str = "client-target";
/// Fetches in flight at once.
const CONCURRENCY: usize = 1000;
/// The size of the page the server answers with.
const PAGE_LEN: usize = 1024;
/// The page: 1 KiB of text.
static PAGE: [u8; PAGE_LEN] = [b'x'; PAGE_LEN];
/// How long one fetch may take before it counts as failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A contender's round: `fetches` fetches of `url`, `CONCURRENCY` at once;
/// returns how long they took.
type RoundFn = fn(&str, usize) -> Result<Duration>;

/// What one round measured.
#[derive(Debug, Clone, Copy)]
struct Measure {
    /// Fetches per second.
    rate: f64,
    /// The harness process's CPU time per 1,000 fetches, in ms.
    cpu_ms_per_1000: f64,
    /// Connections the server accepted during the round.
    connections: u64,
    /// The server's CPU time over the round's wall time, in percent.
    server_busy: f64,
}

/// The `client` scenario.
pub(crate) fn client(opts: &Opts) -> Result<Report> {
    let fetches = if opts.quick { 5_000 } else { 20_000 };
    let contenders: Vec<(&str, RoundFn)> = [
        ("eventlet", eventlet_round as RoundFn),
        ("reqwest", reqwest_round),
        ("eventlet+reqwest", green_reqwest_round),
    ]
    .into_iter()
    .filter(|(name, _)| opts.wants(name))
    .collect();
    let mut report = Report::new("client", "fetches/s", true);
    if contenders.is_empty() {
        bail!("--only names no contender of the client scenario (eventlet, reqwest, eventlet+reqwest)");
    }

    let addr = free_addr()?;
    let server = Server(Some(util::spawn_pinned(
        util::SERVER_CPU,
        &util::self_exe()?,
        &["peer", TARGET, &addr.to_string()],
        true,
    )?));
    wait_listening(addr, server.pid())?;
    let url = format!("http://{addr}/page");

    let mut measured: Vec<Vec<Measure>> = vec![Vec::new(); contenders.len()];
    for _ in 0..opts.rounds() {
        for (i, (name, round)) in contenders.iter().enumerate() {
            let m = measure(*round, &url, fetches, addr, server.pid()).with_context(|| format!("{name} round"))?;
            measured[i].push(m);
        }
    }

    for ((name, _), ms) in contenders.iter().zip(&measured) {
        let med = |f: fn(&Measure) -> f64| crate::report::median(&ms.iter().map(f).collect::<Vec<_>>());
        report.rows.push(
            Row::new(name, "", ms.iter().map(|m| m.rate).collect())
                .with("client CPU ms/1000", format!("{:.0}", med(|m| m.cpu_ms_per_1000)))
                .with("conns/round", format!("{:.0}", med(|m| m.connections as f64)))
                .with("server busy", format!("{:.0}%", med(|m| m.server_busy))),
        );
    }
    report.notes.push(format!(
        "{fetches} fetches of a 1 KiB page per round, {CONCURRENCY} at once, a fresh client per round; \
         server: hyper, one thread{}",
        if util::can_pin() { ", on CPU 0; clients on CPU 1" } else { " (not pinned: taskset missing or one CPU)" }
    ));
    for ((name, _), ms) in contenders.iter().zip(&measured) {
        let conns = crate::report::median(&ms.iter().map(|m| m.connections as f64).collect::<Vec<_>>());
        if conns > 2.0 * CONCURRENCY as f64 {
            report.notes.push(format!(
                "{name} opened {conns:.0} connections for {fetches} fetches: its pool kept few of its \
                 {CONCURRENCY} connections alive between fetches"
            ));
        }
    }
    if measured.iter().flatten().any(|m| m.server_busy > 90.0) {
        report.notes.push("the server was over 90% busy in some round: it may have set the pace there".into());
    }
    Ok(report)
}

/// Runs one round on a fresh OS thread pinned to the load CPU and measures
/// it, with the server's view of it.
fn measure(round: RoundFn, url: &str, fetches: usize, addr: SocketAddr, server_pid: u32) -> Result<Measure> {
    let accepted = server_accepted(addr)?;
    let server_cpu = util::cpu_time(server_pid)?;
    let cpu = util::own_cpu_time();
    let url = url.to_string();
    let wall = std::thread::Builder::new()
        .name("client-round".into())
        .spawn(move || {
            util::pin_self(util::LOAD_CPU);
            round(&url, fetches)
        })
        .context("cannot start the round's thread")?
        .join()
        .map_err(|_| anyhow!("the round's thread panicked"))??;
    let cpu = util::own_cpu_time().saturating_sub(cpu);
    let server_cpu = util::cpu_time(server_pid)?.saturating_sub(server_cpu);
    // Our own /stats request is one more connection.
    let connections = server_accepted(addr)?.saturating_sub(accepted + 1);
    Ok(Measure {
        rate: fetches as f64 / wall.as_secs_f64(),
        cpu_ms_per_1000: cpu.as_secs_f64() * 1e3 * 1000.0 / fetches as f64,
        connections,
        server_busy: server_cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
    })
}

/// Fails with the first of `failures` failed fetches, if any.
fn check_failures(who: &str, fetches: usize, failures: usize, first: Option<String>) -> Result<()> {
    if failures > 0 {
        bail!("{who}: {failures} of {fetches} fetches failed; the first: {}", first.unwrap_or_default());
    }
    Ok(())
}

/// The eventlet round: a shared client, `GreenPool::imap` over the fetches.
fn eventlet_round(url: &str, fetches: usize) -> Result<Duration> {
    let client = eventlet_http::Client::builder().timeout(FETCH_TIMEOUT).build();
    let url: std::rc::Rc<str> = url.into();
    let fetch = move |_: usize| -> io::Result<()> {
        let resp = client.get(&url)?;
        let status = resp.status();
        let body = resp.into_body().into_bytes()?;
        check_page(status.as_u16(), body.len()).map_err(io::Error::other)
    };
    let pool = eventlet::GreenPool::new(CONCURRENCY);
    let start = Instant::now();
    let (mut failures, mut first) = (0, None);
    for r in pool.imap(fetch, 0..fetches) {
        if let Err(e) = r {
            failures += 1;
            first.get_or_insert_with(|| e.to_string());
        }
    }
    let wall = start.elapsed();
    check_failures("eventlet", fetches, failures, first)?;
    Ok(wall)
}

/// The reqwest round: a shared client on a current-thread runtime, a task
/// per fetch, a semaphore bounding them.
fn reqwest_round(url: &str, fetches: usize) -> Result<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().context("reqwest client")?;
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(fetches);
        for _ in 0..fetches {
            let permit = permits.clone().acquire_owned().await.context("semaphore closed")?;
            let (client, url) = (client.clone(), url.to_string());
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                check_page(status, body.len())
            }));
        }
        let (mut failures, mut first) = (0, None);
        for t in tasks {
            if let Err(e) = t.await.map_err(|e| e.to_string()).and_then(|r| r) {
                failures += 1;
                first.get_or_insert(e);
            }
        }
        let wall = start.elapsed();
        check_failures("reqwest", fetches, failures, first)?;
        Ok(wall)
    })
}

/// The eventlet+reqwest round: a shared reqwest client, `GreenPool::imap`
/// over the fetches, each one `eventlet::block_on` of the request.
fn green_reqwest_round(url: &str, fetches: usize) -> Result<Duration> {
    let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().context("reqwest client")?;
    let url: std::rc::Rc<str> = url.into();
    let fetch = move |_: usize| -> Result<(), String> {
        let (status, body) = eventlet::block_on(async {
            let resp = client.get(&*url).send().await?;
            let status = resp.status().as_u16();
            Ok::<_, reqwest::Error>((status, resp.bytes().await?))
        })
        .map_err(|e| e.to_string())?;
        check_page(status, body.len())
    };
    let pool = eventlet::GreenPool::new(CONCURRENCY);
    let start = Instant::now();
    let (mut failures, mut first) = (0, None);
    for r in pool.imap(fetch, 0..fetches) {
        if let Err(e) = r {
            failures += 1;
            first.get_or_insert(e);
        }
    }
    let wall = start.elapsed();
    check_failures("eventlet+reqwest", fetches, failures, first)?;
    Ok(wall)
}

/// Whether an answer is the page: status 200 and 1 KiB.
fn check_page(status: u16, len: usize) -> Result<(), String> {
    if status != 200 || len != PAGE_LEN {
        return Err(format!("status {status} with {len} bytes, expected 200 with {PAGE_LEN}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The server

/// The server process; killed (by its PID) when dropped.
struct Server(Option<Child>);

impl Server {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            util::stop(child);
        }
    }
}

/// A loopback address with a port free right now.
fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?)
}

/// Waits until the server at `addr` answers `/stats`.
fn wait_listening(addr: SocketAddr, pid: u32) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if server_accepted(addr).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the {TARGET} server (pid {pid}) did not answer on {addr} within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many connections the server has accepted so far (this one
/// included), from its `/stats`.
fn server_accepted(addr: SocketAddr) -> Result<u64> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let body = reply.split("\r\n\r\n").nth(1).with_context(|| format!("bad /stats reply {reply:?}"))?;
    body.trim().parse().with_context(|| format!("bad /stats reply {reply:?}"))
}

/// Whether `kind` names a peer of this module.
pub(crate) fn is_peer(kind: &str) -> bool {
    kind == TARGET
}

/// Runs one of this module's peer servers until killed: `client-target`,
/// hyper on a tokio current-thread runtime, the 1 KiB page at every path
/// but `/stats` (the count of connections accepted).
pub(crate) fn peer(kind: &str, addr: &str) -> Result<()> {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    if !is_peer(kind) {
        bail!("unknown peer {kind:?}");
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        loop {
            let sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    // Out of descriptors and the like: back off and go on.
                    eprintln!("{TARGET}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            accepted.fetch_add(1, Ordering::Relaxed);
            let _ = sock.set_nodelay(true);
            let accepted = accepted.clone();
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let body = if req.uri().path() == "/stats" {
                    Bytes::from(accepted.load(Ordering::Relaxed).to_string())
                } else {
                    Bytes::from_static(&PAGE)
                };
                async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body))) }
            });
            tokio::spawn(async move {
                // A reset or closed connection ends here; nothing to report.
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(sock), service).await;
            });
        }
    })
}
