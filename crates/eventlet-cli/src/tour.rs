//! The tour (the default command): both patterns from eventlet's design
//! page in one process, offline. A green HTTP server with a generated site
//! is crawled through `GreenPool::imap` (the client-side pattern), then an
//! echo server is driven by thousands of green clients (the server-side
//! pattern); then it prints what happened.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use eventlet::GreenPool;

use crate::echo::handle_chunks;

pub(crate) fn run(clients: usize, rounds: usize) -> Result<()> {
    if clients == 0 || rounds == 0 {
        bail!("--clients and --rounds must be at least 1");
    }
    if clients > 9000 {
        bail!("--clients above 9000 would need more than the 20,000 files one process may hold here");
    }
    let t0 = Instant::now();

    // Client-side pattern: the crawler, against a site served in-process.
    let (urls, site) = serve_site(200).context("cannot start the tour's HTTP server")?;
    println!("eventlet tour\n");
    println!("1. client-side pattern: pool.imap(fetch, urls) over {} pages of a local site", urls.len());
    let crawl_start = Instant::now();
    let pool = GreenPool::new(1000);
    let (mut pages, mut bytes) = (0usize, 0usize);
    for (i, body) in pool.imap(fetch_page, urls.clone()).enumerate() {
        let body = body.with_context(|| format!("fetching {}", urls[i]))?;
        let expected = page_len(i);
        if body.len() != expected || !body.iter().all(|&b| b == b'a' + (i % 26) as u8) {
            bail!("page {i}: got {} bytes, expected {expected} of {:?}", body.len(), (b'a' + (i % 26) as u8) as char);
        }
        if i < 3 {
            println!("   got body {}", body.len());
        }
        pages += 1;
        bytes += body.len();
    }
    let crawl = crawl_start.elapsed();
    site.shutdown();
    println!(
        "   ... {pages} pages, {bytes} bytes, in input order, in {crawl:.2?} ({:.0} pages/s)\n",
        pages as f64 / crawl.as_secs_f64()
    );

    let listener = eventlet::listen("127.0.0.1:0").context("cannot open the tour's echo server")?;
    let addr = listener.local_addr()?;
    let server = eventlet::Server::new(listener, clients + 100);
    let stop = server.stop_handle();
    let server = eventlet::spawn(move || server.serve(|sock, _| handle_chunks(sock)));

    // Server-side pattern: thousands of concurrent green clients.
    println!(
        "2. server-side pattern: echo server on {addr}, {clients} green clients x {rounds} round trips of 64 bytes"
    );
    let latencies = Rc::new(RefCell::new(Vec::with_capacity(clients * rounds)));
    let peak = Rc::new(Cell::new(0usize));
    let pool = GreenPool::new(clients);
    let started = Instant::now();
    for i in 0..clients {
        let (latencies, peak) = (latencies.clone(), peak.clone());
        pool.spawn_n(move || {
            if let Err(e) = client(addr, i, rounds, &latencies) {
                eprintln!("eventlet: client {i}: {e}");
            }
            peak.set(peak.get().max(eventlet::hub::stats().green_threads));
        });
    }
    pool.waitall();
    let elapsed = started.elapsed();
    stop.stop();
    server.join().map_err(|_| anyhow::anyhow!("the echo server panicked"))??;

    let mut lat = latencies.take();
    if lat.len() != clients * rounds {
        bail!("only {} of {} round trips completed", lat.len(), clients * rounds);
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!("   round trips:      {}", lat.len());
    println!("   throughput:       {:.0} round trips/s", lat.len() as f64 / elapsed.as_secs_f64());
    println!("   latency p50/p99:  {:?} / {:?}", pct(0.50), pct(0.99));
    println!("   green threads at peak: {} (clients and their server-side handlers)", peak.get());
    println!("\nall bytes checked; tour finished in {:.2?}", t0.elapsed());
    Ok(())
}

/// The size of page `i` of the tour's site: 1 to 32 KiB.
fn page_len(i: usize) -> usize {
    1024 * (1 + i % 32)
}

/// Serves `n` pages (`/page/I`, `page_len(I)` bytes each) on loopback.
fn serve_site(n: usize) -> std::io::Result<(Vec<String>, eventlet_http::ShutdownHandle)> {
    let server = eventlet_http::Server::bind("127.0.0.1:0")?;
    let addr = server.local_addr()?;
    let stop = server.shutdown_handle();
    eventlet::spawn_n(move || {
        let served = server.serve(|req| {
            let i: Option<usize> = req.uri().path().strip_prefix("/page/").and_then(|s| s.parse().ok());
            match i {
                Some(i) => eventlet_http::http::Response::new(vec![b'a' + (i % 26) as u8; page_len(i)].into()),
                None => {
                    let mut r = eventlet_http::http::Response::new("not found\n".into());
                    *r.status_mut() = eventlet_http::http::StatusCode::NOT_FOUND;
                    r
                }
            }
        });
        if let Err(e) = served {
            eprintln!("eventlet: the tour's HTTP server failed: {e}");
        }
    });
    Ok(((0..n).map(|i| format!("http://{addr}/page/{i}")).collect(), stop))
}

/// The crawler's `fetch`: a green HTTP GET.
fn fetch_page(url: String) -> std::io::Result<Vec<u8>> {
    eventlet_http::get(&url)?.into_body().into_bytes()
}

fn client(addr: SocketAddr, i: usize, rounds: usize, lat: &RefCell<Vec<Duration>>) -> std::io::Result<()> {
    let mut sock = eventlet::connect(addr)?;
    sock.set_nodelay(true)?;
    let mut msg = [0u8; 64];
    let mut back = [0u8; 64];
    for r in 0..rounds {
        msg.iter_mut().enumerate().for_each(|(k, b)| *b = (i + r + k) as u8);
        let t = Instant::now();
        sock.write_all(&msg)?;
        sock.read_exact(&mut back)?;
        lat.borrow_mut().push(t.elapsed());
        if back != msg {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "echo mismatch"));
        }
    }
    Ok(())
}
