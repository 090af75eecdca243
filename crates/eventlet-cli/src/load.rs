//! `eventlet load`: a load generator on green threads, what locust does
//! with gevent. Each connection is a green thread that sends a request,
//! waits for the answer, records the latency in an HDR histogram, and goes
//! again until the duration is over (or Ctrl-C): `echo` sends fixed-size
//! messages over TCP and checks they come back, `http` sends keep-alive
//! GETs and reads each body to its end. A failed connection is counted as
//! an error and opened again after a short pause.
//!
//! While it runs, a progress bar on stderr (only when stderr is a
//! terminal); at the end, requests/s and the latency percentiles, or with
//! `--json` one JSON object on stdout.

use std::cell::RefCell;
use std::io::{self, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use eventlet::GreenPool;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::signal;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Round trips of --size bytes to an echo server at ADDR (HOST:PORT).
    Echo,
    /// GET requests on keep-alive connections to the URL.
    Http,
}

#[derive(clap::Args)]
pub(crate) struct Args {
    /// What to load.
    #[arg(value_enum)]
    mode: Mode,
    /// HOST:PORT for echo, a URL for http.
    #[arg(value_name = "ADDR|URL")]
    target: String,
    /// Connections, each its own green thread with one request in flight.
    #[arg(short, long, value_name = "N", default_value_t = 50)]
    connections: usize,
    /// How long to run: 10, 2.5, 500ms, 10s, 1m.
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = crate::parse_positive_duration)]
    duration: Duration,
    /// Bytes per echo message.
    #[arg(short, long, value_name = "BYTES", default_value_t = 64)]
    size: usize,
    /// How long one request may take before it counts as an error.
    #[arg(long, value_name = "S", default_value = "5s", value_parser = crate::parse_positive_duration)]
    timeout: Duration,
    /// Print the results as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Trust the CA certificates of this PEM file for https:// instead of the system's.
    #[arg(long, value_name = "F")]
    cacert: Option<std::path::PathBuf>,
}

/// What the connections record, shared on the one OS thread.
struct Stats {
    latency_us: Histogram<u64>,
    errors: u64,
    non_2xx: u64,
    bytes: u64,
    first_error: Option<String>,
}

impl Stats {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// Where the load goes, checked once before the run.
#[derive(Clone)]
enum Target {
    Echo(SocketAddr),
    Http(String),
}

pub(crate) fn run(args: Args) -> Result<()> {
    crate::at_least_one(args.connections, "--connections")?;
    crate::at_least_one(args.size, "--size")?;
    // First, so that a Ctrl-C during the preflight still ends with a summary.
    signal::install()?;
    let client = http_client(&args)?;
    let target = preflight(&args, &client)?;
    let stats = Rc::new(RefCell::new(Stats {
        latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| anyhow!("histogram: {e}"))?,
        errors: 0,
        non_2xx: 0,
        bytes: 0,
        first_error: None,
    }));

    let started = Instant::now();
    let deadline = started + args.duration;
    let progress = Progress::start(args.duration, started, stats.clone());
    let pool = GreenPool::new(args.connections);
    for _ in 0..args.connections {
        let (stats, target, client) = (stats.clone(), target.clone(), client.clone());
        let (size, timeout) = (args.size, args.timeout);
        pool.spawn_n(move || connection(&target, &client, size, timeout, deadline, &stats));
    }
    pool.waitall();
    let elapsed = started.elapsed();
    progress.finish();

    let stats = stats.borrow();
    let h = &stats.latency_us;
    let requests = h.len();
    if requests == 0 {
        bail!("no request succeeded: {}", stats.first_error.as_deref().unwrap_or("no time to send one"));
    }
    let rate = requests as f64 / elapsed.as_secs_f64();
    let (mode, what) = match args.mode {
        Mode::Echo => ("echo", format!("{}-byte messages", args.size)),
        Mode::Http => ("http", "GET requests".to_string()),
    };
    if args.json {
        let json = serde_json::json!({
            "mode": mode,
            "target": args.target,
            "connections": args.connections,
            "duration_s": elapsed.as_secs_f64(),
            "requests": requests,
            "errors": stats.errors,
            "non_2xx": stats.non_2xx,
            "bytes": stats.bytes,
            "requests_per_s": rate,
            "latency_us": {
                "p50": h.value_at_quantile(0.50),
                "p90": h.value_at_quantile(0.90),
                "p99": h.value_at_quantile(0.99),
                "max": h.max(),
                "mean": h.mean(),
            },
            "first_error": stats.first_error,
            "interrupted": signal::interrupted(),
        });
        println!("{json}");
    } else {
        let us = |v: u64| format!("{:.2?}", Duration::from_micros(v));
        println!("load {mode} {}: {} connections, {what}, {elapsed:.2?}", args.target, args.connections);
        println!("  requests:  {requests} ({rate:.1}/s), {} bytes received", stats.bytes);
        let mut errors = format!("  errors:    {}", stats.errors);
        if let Some(e) = &stats.first_error {
            errors.push_str(&format!(" (first: {e})"));
        }
        println!("{errors}");
        if args.mode == Mode::Http {
            println!("  non-2xx:   {}", stats.non_2xx);
        }
        println!(
            "  latency:   p50 {}  p90 {}  p99 {}  max {}  (mean {})",
            us(h.value_at_quantile(0.50)),
            us(h.value_at_quantile(0.90)),
            us(h.value_at_quantile(0.99)),
            us(h.max()),
            us(h.mean() as u64)
        );
        if signal::interrupted() {
            println!("  (stopped early by Ctrl-C)");
        }
    }
    if signal::interrupted() {
        return Err(crate::Interrupted.into());
    }
    Ok(())
}

/// The HTTP client's settings: the request timeout, the CA file.
fn http_client(args: &Args) -> Result<eventlet_http::ClientBuilder> {
    let mut builder = eventlet_http::Client::builder().timeout(args.timeout);
    if let Some(ca) = &args.cacert {
        builder = builder.ca_file(ca).map_err(|e| anyhow!("cannot use --cacert {}: {e}", ca.display()))?;
    }
    Ok(builder)
}

/// Checks the target answers once, so that a typo is one clear error
/// rather than a run of failures.
fn preflight(args: &Args, client: &eventlet_http::ClientBuilder) -> Result<Target> {
    match args.mode {
        Mode::Echo => {
            let mut s = eventlet::connect(args.target.as_str())
                .map_err(|e| anyhow!("cannot connect: {}", crate::about(&args.target, &e)))?;
            let addr = s.peer_addr()?;
            echo_once(&mut s, &vec![b'x'; args.size], &mut vec![0; args.size], args.timeout)
                .map_err(|e| anyhow!("{} does not echo: {e}", args.target))?;
            Ok(Target::Echo(addr))
        }
        Mode::Http => {
            crate::crawl::Url::parse(&args.target).map_err(|e| anyhow!("{}: {e}", args.target))?;
            let client = client.clone().build();
            let resp = client.get(&args.target).map_err(|e| anyhow!("cannot fetch {}: {e}", args.target))?;
            io::copy(&mut resp.into_body(), &mut io::sink())
                .map_err(|e| anyhow!("cannot fetch {}: {e}", args.target))?;
            Ok(Target::Http(args.target.clone()))
        }
    }
}

/// One connection's green thread: requests until the deadline, opening
/// the connection again after an error.
fn connection(
    target: &Target,
    client: &eventlet_http::ClientBuilder,
    size: usize,
    timeout: Duration,
    deadline: Instant,
    stats: &RefCell<Stats>,
) {
    let done = || signal::interrupted() || Instant::now() >= deadline;
    while !done() {
        let result = match target {
            Target::Echo(addr) => echo_session(*addr, size, timeout, &done, stats),
            Target::Http(url) => http_session(url, client, &done, stats),
        };
        if let Err(e) = result {
            stats.borrow_mut().error(e);
            eventlet::sleep(Duration::from_millis(50));
        }
    }
}

fn record(stats: &RefCell<Stats>, t: Instant, bytes: usize) {
    let mut s = stats.borrow_mut();
    s.latency_us.saturating_record(t.elapsed().as_micros().max(1) as u64);
    s.bytes += bytes as u64;
}

fn echo_session(
    addr: SocketAddr,
    size: usize,
    timeout: Duration,
    done: &dyn Fn() -> bool,
    stats: &RefCell<Stats>,
) -> io::Result<()> {
    let mut s = eventlet::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    let mut msg = vec![0u8; size];
    let mut back = vec![0u8; size];
    let mut n = 0u8;
    while !done() {
        n = n.wrapping_add(1);
        msg.iter_mut().enumerate().for_each(|(k, b)| *b = n.wrapping_add(k as u8));
        let t = Instant::now();
        echo_once(&mut s, &msg, &mut back, timeout)?;
        record(stats, t, size);
    }
    Ok(())
}

fn echo_once(s: &mut eventlet::net::TcpStream, msg: &[u8], back: &mut [u8], timeout: Duration) -> io::Result<()> {
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(msg)?;
    s.read_exact(back).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(e.kind(), "the server closed the connection"),
        _ => e,
    })?;
    if back != msg {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the echo differs from the message"));
    }
    Ok(())
}

fn http_session(
    url: &str,
    client: &eventlet_http::ClientBuilder,
    done: &dyn Fn() -> bool,
    stats: &RefCell<Stats>,
) -> io::Result<()> {
    // A client per connection: its pool keeps this green thread's one
    // connection alive between requests.
    let client = client.clone().build();
    while !done() {
        let t = Instant::now();
        let resp = client.get(url)?;
        let ok = resp.status().is_success() || resp.status().is_redirection();
        let n = io::copy(&mut resp.into_body(), &mut io::sink())?;
        record(stats, t, n as usize);
        if !ok {
            stats.borrow_mut().non_2xx += 1;
        }
    }
    Ok(())
}

/// The progress bar: a green thread redraws it ten times a second, when
/// stderr is a terminal.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn start(duration: Duration, started: Instant, stats: Rc<RefCell<Stats>>) -> Progress {
        if !io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(duration.as_millis() as u64);
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        let b = bar.clone();
        eventlet::spawn_n(move || {
            while !b.is_finished() {
                let elapsed = started.elapsed();
                b.set_position((elapsed.as_millis() as u64).min(b.length().unwrap_or(0)));
                let s = stats.borrow();
                let n = s.latency_us.len();
                b.set_message(format!(
                    "{n} requests, {:.0}/s, {} errors",
                    n as f64 / elapsed.as_secs_f64().max(1e-3),
                    s.errors
                ));
                drop(s);
                eventlet::sleep(Duration::from_millis(100));
            }
        });
        Progress { bar: Some(bar) }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
