//! `eventlet`: a tour of green threads, and the seed's echo server.
//!
//! With no arguments it runs the tour offline: an echo server and thousands
//! of green clients in one process, both patterns from eventlet's design
//! page, and prints what happened.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use eventlet::net::TcpStream;
use eventlet::GreenPool;

#[derive(Parser)]
#[command(name = "eventlet", version, about = "Green threads for Rust: a tour and network tools")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the tour (the default): an echo server and thousands of green clients.
    Tour {
        /// Concurrent green clients.
        #[arg(short, long, default_value_t = 5000)]
        clients: usize,
        /// Round trips per client.
        #[arg(short, long, default_value_t = 20)]
        rounds: usize,
    },
    /// The seed's echo server: one green thread per client.
    Echo {
        /// Address to listen on.
        #[arg(short, long, default_value = "0.0.0.0:6000")]
        listen: String,
        /// Most clients served at once.
        #[arg(short, long, default_value_t = 10_000)]
        max_clients: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Cmd::Tour { clients: 5000, rounds: 20 }) {
        Cmd::Tour { clients, rounds } => tour(clients, rounds),
        Cmd::Echo { listen, max_clients } => echo(&listen, max_clients),
    };
    if let Err(e) = result {
        eprintln!("eventlet: {e:#}");
        std::process::exit(1);
    }
}

/// The seed's echo handler: a byte at a time.
fn handle(mut client: TcpStream) {
    loop {
        let mut c = [0; 1];
        if client.read(&mut c).unwrap_or(0) == 0 {
            break;
        }
        if client.write_all(&c).is_err() {
            break;
        }
    }
}

/// A faster echo handler for the tour's load: whatever arrives goes back.
fn handle_chunks(mut client: TcpStream) {
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = client.read(&mut buf) {
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn echo(listen: &str, max_clients: usize) -> Result<()> {
    if max_clients == 0 {
        bail!("--max-clients must be at least 1");
    }
    let server = eventlet::listen(listen).with_context(|| format!("cannot listen on {listen}"))?;
    println!("echo server listening on {}", server.local_addr()?);
    let pool = GreenPool::new(max_clients);
    loop {
        let (new_sock, _address) = server.accept()?;
        pool.spawn_n(move || handle(new_sock));
    }
}

fn tour(clients: usize, rounds: usize) -> Result<()> {
    if clients == 0 || rounds == 0 {
        bail!("--clients and --rounds must be at least 1");
    }
    if clients > 9000 {
        bail!("--clients above 9000 would need more than the 20,000 files one process may hold here");
    }
    let t0 = Instant::now();
    let listener = eventlet::listen("127.0.0.1:0").context("cannot open the tour's echo server")?;
    let addr = listener.local_addr()?;
    let server = eventlet::Server::new(listener, clients + 100);
    let stop = server.stop_handle();
    let server = eventlet::spawn(move || server.serve(|sock, _| handle_chunks(sock)));
    println!("eventlet tour: echo server on {addr} (one green thread per connection)\n");

    // Client-side pattern: imap over a list of jobs, results in input order.
    println!("1. client-side pattern: pool.imap(fetch, words) through the echo server");
    let words = ["green", "threads", "in", "plain", "blocking", "Rust", "no", "async"];
    let pool = GreenPool::new(1000);
    let mut echoed = Vec::new();
    for body in pool.imap(move |w: &'static str| fetch(addr, w), words) {
        echoed.push(body?);
    }
    println!("   got back, in order: {}\n", echoed.join(" "));

    // Server-side pattern: thousands of concurrent green clients.
    println!("2. server-side pattern: {clients} green clients x {rounds} round trips of 64 bytes");
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

/// Sends `word` to the echo server and returns what comes back.
fn fetch(addr: SocketAddr, word: &str) -> std::io::Result<String> {
    let mut sock = eventlet::connect(addr)?;
    sock.write_all(word.as_bytes())?;
    let mut back = vec![0; word.len()];
    sock.read_exact(&mut back)?;
    String::from_utf8(back).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
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
