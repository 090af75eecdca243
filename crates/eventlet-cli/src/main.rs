//! `eventlet`: a tour of green threads, and network tools built on them.
//!
//! With no arguments it runs the tour offline (see [`tour`]). The
//! subcommands are small tools, each one of eventlet's patterns put to
//! work: `crawl` (the client-side pattern, `GreenPool::imap`), `serve` and
//! `echo` (the server-side pattern), `forward` (both at once), and `load`
//! (thousands of green clients measuring a server).
//!
//! Conventions, the same for every command:
//!
//! - Every error ends the program with one line, `eventlet: ...`, and exit
//!   status 1 (clap's usage errors: 2).
//! - Ctrl-C stops a command cleanly: a handler sets a flag that the
//!   long-running loops check; a second Ctrl-C exits at once. A server
//!   (`serve`, `echo`, `forward`) stopped so exits 0: that is how it is
//!   meant to end. A command cut short so (`crawl`, `load`, the tour)
//!   prints what it has, then `eventlet: interrupted`, and exits 130.
//! - Servers listen on `127.0.0.1` unless told otherwise (`--listen
//!   0.0.0.0:PORT` to serve other machines).
//! - Clients trust what curl trusts (the system's CA certificates, or the
//!   file `SSL_CERT_FILE` names); `--cacert FILE` trusts that file's
//!   instead.

mod crawl;
mod echo;
mod forward;
mod load;
mod serve;
mod tour;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "eventlet", version, about = "Green threads for Rust: a tour and network tools")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the tour (the default): crawl a local site, then drive an echo server with thousands of green clients.
    Tour {
        /// Concurrent green clients.
        #[arg(short, long, default_value_t = 5000)]
        clients: usize,
        /// Round trips per client.
        #[arg(short, long, default_value_t = 20)]
        rounds: usize,
    },
    /// Fetch URLs concurrently, print status, bytes and URL in input order, optionally following links.
    Crawl(crawl::Args),
    /// Serve static files from a directory (or a hello page), with an access log on stderr.
    Serve(serve::Args),
    /// An echo server: one green thread per client.
    Echo {
        /// Address to listen on.
        #[arg(short, long, default_value = "127.0.0.1:6000")]
        listen: String,
        /// Most clients served at once (on all hubs together).
        #[arg(short, long, default_value_t = 10_000)]
        max_clients: usize,
        /// Hubs (OS threads) serving clients [default: every core this process may use].
        #[arg(short, long, value_name = "N")]
        workers: Option<usize>,
        /// Also open an inspection console on this address (`nc ADDR`, then `threads`).
        #[arg(long, value_name = "ADDR")]
        console: Option<String>,
    },
    /// A port forwarder: accepts on LISTEN and relays each connection to TARGET.
    Forward(forward::Args),
    /// A load generator: green clients hammer an echo or HTTP server for a while, then latency percentiles.
    Load(load::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Cmd::Tour { clients: 5000, rounds: 20 }) {
        Cmd::Tour { clients, rounds } => tour::run(clients, rounds),
        Cmd::Crawl(args) => crawl::run(args),
        Cmd::Serve(args) => serve::run(args),
        Cmd::Echo { listen, max_clients, workers, console } => {
            echo::run(&listen, max_clients, workers, console.as_deref())
        }
        Cmd::Forward(args) => forward::run(args),
        Cmd::Load(args) => load::run(args),
    };
    if let Err(e) = result {
        let line = format!("{e:#}").replace('\n', " ");
        eprintln!("eventlet: {line}");
        std::process::exit(if e.is::<Interrupted>() { 130 } else { 1 });
    }
}

/// The error of a command cut short by Ctrl-C (after printing what it
/// had): exit status 130, 128 + SIGINT, as shells report it.
#[derive(Debug)]
pub(crate) struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Opens a listening socket with an error that says what went wrong.
pub(crate) fn listen(addr: &str) -> Result<eventlet::net::TcpListener> {
    eventlet::listen(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!("cannot listen on {addr}: the address is already in use"),
        std::io::ErrorKind::AddrNotAvailable => anyhow!("cannot listen on {addr}: no such local address"),
        std::io::ErrorKind::PermissionDenied => anyhow!("cannot listen on {addr}: permission denied"),
        _ => anyhow!("cannot listen on {addr}: {e}"),
    })
}

/// Opens the inspection console ([`eventlet::backdoor`]) on `addr`, if given,
/// on this thread's hub.
pub(crate) fn console(addr: Option<&str>) -> Result<()> {
    let Some(addr) = addr else { return Ok(()) };
    let listener = listen(addr)?;
    println!("inspection console on {} (nc, then `threads`)", listener.local_addr()?);
    eventlet::spawn_n(move || {
        if let Err(e) = eventlet::backdoor::serve(listener) {
            eprintln!("eventlet: the inspection console stopped: {e}");
        }
    });
    Ok(())
}

/// An I/O error about `target` as one line, the target named once.
pub(crate) fn about(target: &str, e: &std::io::Error) -> String {
    let msg = e.to_string();
    if msg.contains(target) {
        msg
    } else {
        format!("{target}: {msg}")
    }
}

/// Parses a duration: `10` or `1.5` (seconds), `250ms`, `10s`, `2m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (examples: 10, 1.5, 250ms, 10s, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown unit {u:?} in {s:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

/// A positive duration (see [`parse_duration`]).
pub(crate) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than zero".to_string()),
        d => Ok(d),
    }
}

/// Ctrl-C: a flag for the long-running loops.
pub(crate) mod signal {
    use super::*;

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    /// Installs the SIGINT handler: the first Ctrl-C sets the flag, a
    /// second one exits at once with status 130 (on a terminal, over the
    /// line a progress bar may be drawing, so none is left behind).
    pub(crate) fn install() -> Result<()> {
        ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                use std::io::{IsTerminal, Write};
                let mut err = std::io::stderr().lock();
                let clear = if err.is_terminal() { "\r\x1b[2K" } else { "" };
                let _ = writeln!(err, "{clear}eventlet: interrupted again, exiting");
                std::process::exit(130);
            }
        })
        .map_err(|e| anyhow!("cannot install the Ctrl-C handler: {e}"))
    }

    /// Whether Ctrl-C was pressed.
    pub(crate) fn interrupted() -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    /// Installs the handler and spawns a green thread that calls `stop`
    /// once Ctrl-C is pressed (it looks ten times a second): the way to
    /// stop an accept loop.
    pub(crate) fn on_interrupt<F: FnOnce() + 'static>(stop: F) -> Result<()> {
        install()?;
        eventlet::spawn_n(move || {
            while !interrupted() {
                eventlet::sleep(Duration::from_millis(100));
            }
            stop();
        });
        Ok(())
    }
}

/// The number of hubs to serve on: `--workers N`, by default every core
/// this process may use.
pub(crate) fn workers(n: Option<usize>) -> Result<usize> {
    match n {
        Some(n) => {
            at_least_one(n, "--workers")?;
            Ok(n)
        }
        None => Ok(eventlet::hub::cores()),
    }
}

/// Fails unless `n` is at least 1.
pub(crate) fn at_least_one(n: usize, what: &str) -> Result<()> {
    if n == 0 {
        bail!("{what} must be at least 1");
    }
    Ok(())
}
