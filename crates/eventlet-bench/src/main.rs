//! `eventlet-bench`: eventlet measured against its peers side by side.
//!
//! Each scenario runs every contender it can in one run: servers in their
//! own processes pinned to CPU 0 (`taskset`; CPUs 0 to N-1 with
//! `--cores N`), the load on CPU 1 (the CPUs left), rounds alternating
//! between contenders, medians of at least three rounds. It prints a
//! table; with `--json` its last line is one JSON object (`{"scenario",
//! "unit", "results", "ratios"}`, and `"cpu_ratios"` where the server's
//! CPU per operation was measured).
//!
//! ```text
//! cargo run --release -p eventlet-bench -- echo
//! cargo run --release -p eventlet-bench -- plaintext --cores 2
//! cargo run --release -p eventlet-bench -- all --quick --json
//! cargo run --release -p eventlet-bench -- setup   # Go, wrk, Python eventlet and gevent
//! ```

mod client;
mod micro;
mod net;
mod report;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

use report::Report;

#[derive(Parser)]
#[command(name = "eventlet-bench", about = "eventlet against tokio, may, mio, Go and Python, side by side")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Options every scenario takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Opts {
    /// A short run that only proves the scenario works (CI): fewer rounds, shorter, smaller.
    #[arg(long)]
    pub quick: bool,
    /// Print the result as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Rounds per contender (the median is reported); at least 3 unless --quick.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Run only these contenders (comma separated, e.g. eventlet,tokio).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Network scenarios: CPUs (and threads) for each server: eventlet N hubs, tokio N workers, may N, Go GOMAXPROCS=N.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cores: usize,
    /// Network scenarios: the CPUs of the load generator, e.g. 8-15 [default: the CPUs after the server's].
    #[arg(long, value_name = "LIST")]
    pub load_cpus: Option<String>,
    /// Network scenarios: load generator threads [default: one per load CPU].
    #[arg(long, value_name = "N")]
    pub load_threads: Option<usize>,
}

impl Opts {
    /// Rounds to run.
    pub fn rounds(&self) -> usize {
        self.rounds_or(3)
    }

    /// Rounds to run where a full run takes `full` (`--quick`: 1).
    pub fn rounds_or(&self, full: usize) -> usize {
        self.rounds.unwrap_or(if self.quick { 1 } else { full }).max(1)
    }

    /// Whether `name` takes part.
    pub fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// 64-byte echo ping-pong at 100 and 1,000 connections: msgs/s, p99, server CPU per message.
    Echo(Opts),
    /// HTTP hello (13-byte body, keep-alive) at 100 and 1,000 connections: req/s.
    Http(Opts),
    /// TechEmpower plaintext: its request, pipelined 16 deep, at 256 and 1,024 connections: req/s.
    Plaintext(Opts),
    /// 1,000 echo connections of unequal weight over --cores hubs: how evenly the server threads share the work.
    Balance(Opts),
    /// spawn + run + join of one green thread / task / thread: ns.
    Spawn(Opts),
    /// Ping-pong round trip through the lightest queue or channel: ns.
    Switch(Opts),
    /// Many green threads / tasks / threads blocked at once: RSS per thread.
    Memory(Opts),
    /// 1,000 concurrent fetches from a local HTTP server: the eventlet-http client against reqwest.
    Client(Opts),
    /// Every scenario, one after the other.
    All(Opts),
    /// Install the optional peers: Go, wrk, Python eventlet and gevent.
    Setup,
    /// (internal) Run one peer server: `peer KIND ADDR [--threads N]`.
    #[command(hide = true)]
    Peer {
        /// Which server, e.g. `tokio-echo`, `hyper-http`.
        kind: String,
        /// Address to listen on.
        addr: String,
        /// Threads (hubs, workers) to serve on.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// eventlet peers: also serve the inspection console here (the `balance` scenario reads each hub's
        /// counters from it).
        #[arg(long)]
        console: Option<String>,
    },
    /// (internal) Drive load at a running server for profiling:
    /// `load ADDR PID CONNS SECS [--proto echo|http|plaintext]` (PID: the
    /// server's, for its CPU time).
    #[command(hide = true)]
    Load {
        /// The server's address.
        addr: String,
        /// The server's process id.
        pid: u32,
        /// Connections.
        conns: usize,
        /// Measured seconds (after a 0.5 s warm-up).
        secs: u64,
        /// What to speak: echo, http or plaintext (pipelined 16 deep).
        #[arg(long, default_value = "echo")]
        proto: String,
    },
    /// (internal) Hold N blocked green threads / tasks and report RSS: `hold KIND N`.
    #[command(hide = true)]
    Hold {
        /// Which runtime.
        kind: String,
        /// How many.
        n: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Echo(o) => run(&o, &[net::echo]),
        Cmd::Http(o) => run(&o, &[net::http]),
        Cmd::Plaintext(o) => run(&o, &[net::plaintext]),
        Cmd::Balance(o) => run(&o, &[net::balance]),
        Cmd::Spawn(o) => run(&o, &[micro::spawn]),
        Cmd::Switch(o) => run(&o, &[micro::switch]),
        Cmd::Memory(o) => run(&o, &[micro::memory]),
        Cmd::Client(o) => run(&o, &[client::client]),
        Cmd::All(o) => run(
            &o,
            &[
                micro::spawn,
                micro::switch,
                micro::memory,
                net::echo,
                net::http,
                net::plaintext,
                net::balance,
                client::client,
            ],
        ),
        Cmd::Setup => net::setup(),
        Cmd::Peer { kind, addr, .. } if client::is_peer(&kind) => client::peer(&kind, &addr),
        Cmd::Peer { kind, addr, threads, console } => net::peer(&kind, &addr, threads, console.as_deref()),
        Cmd::Hold { kind, n } => micro::hold(&kind, n),
        Cmd::Load { addr, pid, conns, secs, proto } => net::load_only(&addr, pid, conns, secs, &proto),
    };
    if let Err(e) = result {
        eprintln!("eventlet-bench: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

type Scenario = fn(&Opts) -> Result<Report>;

fn run(opts: &Opts, scenarios: &[Scenario]) -> Result<()> {
    let mut all = Vec::new();
    for s in scenarios {
        let report = s(opts)?;
        println!("{}", report.table());
        all.push(report.json());
    }
    if opts.json {
        let last = if all.len() == 1 { all.pop().unwrap_or_default() } else { serde_json::Value::Array(all) };
        println!("{last}");
    }
    Ok(())
}
