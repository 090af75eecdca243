//! The network scenarios, `echo`, `http`, `plaintext` and `balance`,
//! their peer servers, and `setup`.
//!
//! Each measurement starts one server alone in its own process allowed on
//! the server CPUs only (`taskset -c 0 eventlet-bench peer KIND ADDR`, or
//! the Go binary, or Python), waits until its port accepts, checks one
//! exchange, then drives it from this process with the mio load generator
//! ([`load`]) on the load CPUs: warm-up, then a measured window. The
//! server is killed by its PID afterwards. Rounds alternate between the
//! contenders (round 1 of each, then round 2 of each, ...) so a slow
//! spell of the shared machine spreads over all of them, and each row
//! reports the median round.
//!
//! `--cores N` gives the server N CPUs (the first N this process may use)
//! and every contender N threads: eventlet N hubs (`Server::workers`),
//! tokio and hyper its multi-thread runtime with N workers, may and
//! may_minihttp N workers, Go `GOMAXPROCS=N`; the single-threaded peers
//! (mio, Python) sit out. The load takes the CPUs left over (`--load-cpus`
//! to choose, `--load-threads` for how many threads); with none left it
//! shares the server's last CPU, and a note says so. `--cores 1` (the
//! default) is the one-core comparison on CPU 0 with the load on CPU 1.
//!
//! With one request in flight per connection, the sender's `write` does
//! the receiver's TCP work on loopback, so each side pays for much of the
//! other's, and on a small machine the load generator is often the limit.
//! Beside throughput the rows therefore give the server's CPU time per
//! exchange (from `/proc/PID/stat`), which does not depend on who
//! saturates first, and the CPU shares of both sides; a note names the
//! rows where the load generator was the bottleneck, and another the rows
//! where other processes took a share of the CPUs (`/proc/stat` against
//! our own CPU times), which makes any figure noisy.

mod external;
mod load;
mod servers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::report::{median, Report, Row};
use crate::util;
use crate::Opts;
use external::Scratch;
use load::{Outcome, Pace, Proto};

/// How long to wait for a started server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A load generator above this share of its core, with the server below
/// [`SERVER_NOT_BUSY`], was the bottleneck.
const LOAD_BUSY: f64 = 0.9;
/// See [`LOAD_BUSY`].
const SERVER_NOT_BUSY: f64 = 0.85;
/// When other processes took more than this share of the server's or the
/// load's CPU in a window (`/proc/stat` against our own CPU times), the
/// figures are noisy and a note says so.
const OTHERS_BUSY: f64 = 0.15;

/// The `echo` scenario: 64-byte ping-pong at 100 and 1,000 connections.
pub(crate) fn echo(opts: &Opts) -> Result<Report> {
    let peers = [
        ("eventlet", Peer::Builtin("eventlet-echo")),
        ("eventlet-1hub", Peer::Builtin("eventlet-echo-1hub")),
        ("tokio", Peer::Builtin("tokio-echo")),
        ("may", Peer::Builtin("may-echo")),
        ("mio", Peer::Builtin("mio-echo")),
        ("go", Peer::Go("echo.go", external::ECHO_GO)),
        ("python-eventlet", Peer::Python("eventlet", "echo_eventlet.py", external::ECHO_EVENTLET_PY)),
        ("gevent", Peer::Python("gevent", "echo_gevent.py", external::ECHO_GEVENT_PY)),
    ];
    let s = Scenario {
        name: "echo",
        unit: "msgs/s",
        per_op: "server cpu us/msg",
        proto: Proto::Echo,
        depth: 1,
        configs: &[100, 1000],
    };
    run_scenario(opts, &s, &peers)
}

/// The `http` scenario: "Hello, World!" over keep-alive HTTP/1.1 at 100 and
/// 1,000 connections.
pub(crate) fn http(opts: &Opts) -> Result<Report> {
    let peers = [
        ("eventlet", Peer::Builtin("eventlet-http")),
        ("eventlet-raw", Peer::Builtin("eventlet-raw-http")),
        ("hyper", Peer::Builtin("hyper-http")),
        ("may_minihttp", Peer::Builtin("may-http")),
        ("go", Peer::Go("http.go", external::HTTP_GO)),
        ("python-eventlet", Peer::Python("eventlet", "http_eventlet.py", external::HTTP_EVENTLET_PY)),
        ("gevent", Peer::Python("gevent", "http_gevent.py", external::HTTP_GEVENT_PY)),
    ];
    let s = Scenario {
        name: "http",
        unit: "req/s",
        per_op: "server cpu us/req",
        proto: Proto::Http,
        depth: 1,
        configs: &[100, 1000],
    };
    run_scenario(opts, &s, &peers)
}

/// The `plaintext` scenario: TechEmpower's plaintext test, its request and
/// headers, pipelined 16 deep on keep-alive connections, at 256 and 1,024
/// connections (its first two levels).
pub(crate) fn plaintext(opts: &Opts) -> Result<Report> {
    let peers = [
        ("eventlet", Peer::Builtin("eventlet-plaintext")),
        ("eventlet-raw", Peer::Builtin("eventlet-raw-plaintext")),
        ("hyper", Peer::Builtin("hyper-plaintext")),
        ("may_minihttp", Peer::Builtin("may-http")),
        ("go", Peer::Go("http.go", external::HTTP_GO)),
    ];
    let s = Scenario {
        name: "plaintext",
        unit: "req/s",
        per_op: "server cpu us/req",
        proto: Proto::Plaintext,
        depth: PIPELINE,
        configs: &[256, 1024],
    };
    run_scenario(opts, &s, &peers)
}

/// Requests pipelined per connection in the `plaintext` scenario.
const PIPELINE: usize = 16;

/// The `balance` scenario: 1,000 echo connections of unequal weight (a
/// tenth of them, picked at random, send ten times as often), paced well
/// below saturation; how evenly the server's threads share the work: the
/// busiest thread's CPU time against the mean of the `--cores` busiest.
pub(crate) fn balance(opts: &Opts) -> Result<Report> {
    let mut report = Report::new(&scenario_name("balance", opts.cores), "busiest/mean thread cpu", false);
    if opts.cores < 2 {
        report.notes.push("needs --cores 2 or more (one hub has nothing to balance); not run".into());
        return Ok(report);
    }
    let peers = [
        ("eventlet", Peer::Builtin("eventlet-echo")),
        ("eventlet-reuseport", Peer::Builtin("eventlet-echo-reuseport")),
        ("eventlet-shared-only", Peer::Builtin("eventlet-echo-shared-only")),
        ("eventlet-reuseport-only", Peer::Builtin("eventlet-echo-reuseport-only")),
        ("tokio", Peer::Builtin("tokio-echo")),
    ];
    let layout = Layout::new(opts)?;
    raise_nofile();
    let scratch = Scratch::new()?;
    let contenders = resolve(&peers, opts, &scratch, &mut report, opts.cores)?;
    let conns = if opts.quick { 200 } else { 1000 };
    let timing = timing(opts);
    let rounds = opts.rounds();
    let pace = Pace {
        light_interval: Duration::from_millis(50),
        heavy_interval: Duration::from_millis(5),
        heavy: heavy_tenth(conns),
    };
    let mut results: Vec<Vec<Outcome>> = contenders.iter().map(|_| Vec::new()).collect();
    // The row's figure: each hub's messages (switches) where the console
    // tells them, else each thread's CPU time.
    let load_of = |o: &Outcome| o.hub_imbalance().or_else(|| o.imbalance(opts.cores)).unwrap_or(f64::NAN);
    for round in 1..=rounds {
        for (i, c) in contenders.iter().enumerate() {
            let out = measure(c, &layout, Proto::Echo, 1, Some(pace.clone()), conns, timing)
                .with_context(|| format!("{} in the balance scenario", c.name))?;
            eprintln!(
                "balance {} round {round}/{rounds}: busiest/mean {:.3} (hubs: switches {:?}, green threads {:?}; \
                 threads' cpu {:?} ms, busiest/mean {:.3}), {:.0} msgs/s, p99 {:.0} us",
                c.name,
                load_of(&out),
                out.hubs.iter().map(|h| h.switches).collect::<Vec<_>>(),
                out.hubs.iter().map(|h| h.green_threads).collect::<Vec<_>>(),
                out.server_threads.iter().take(opts.cores).map(|d| d.as_millis()).collect::<Vec<_>>(),
                out.imbalance(opts.cores).unwrap_or(f64::NAN),
                out.rate(),
                out.p99.as_secs_f64() * 1e6,
            );
            results[i].push(out);
        }
    }
    for (i, c) in contenders.iter().enumerate() {
        let outs = &results[i];
        let med = |f: &dyn Fn(&Outcome) -> f64| median(&outs.iter().map(f).collect::<Vec<_>>());
        let by = if outs.iter().all(|o| !o.hubs.is_empty()) { "messages per hub" } else { "cpu per thread" };
        let split = outs
            .iter()
            .map(|o| o.hubs.iter().map(|h| h.green_threads.to_string()).collect::<Vec<_>>().join("/"))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        report.rows.push(
            Row::new(c.name, &format!("{conns} conns"), outs.iter().map(load_of).collect())
                .with("measured by", by)
                .with("green threads per hub", if split.is_empty() { "-".to_owned() } else { split })
                .with("cpu busiest/mean", format!("{:.2}", med(&|o| o.imbalance(opts.cores).unwrap_or(f64::NAN))))
                .with("msgs/s", format!("{:.0}", med(&|o| o.rate())))
                .with("p99 us", format!("{:.0}", med(&|o| o.p99.as_secs_f64() * 1e6)))
                .with("server cpu us/msg", format!("{:.2}", med(&|o| o.server_us_per_op()))),
        );
        let broken: usize = outs.iter().map(|o| o.failed).sum();
        if let Some(why) = outs.iter().find_map(|o| o.first_error.as_deref()) {
            report.notes.push(format!("{}: {broken} connection(s) failed in the runs (first: {why})", c.name));
        }
    }
    report.notes.push(format!(
        "{conns} echo connections, {} of them (picked at random, the same each run) sending every 5 ms, the rest every \
         50 ms: about {:.0} msgs/s, paced; a row is the busiest hub's share over the mean (1.00: even): for eventlet, \
         the messages each hub served (green thread switches, from its console); for tokio, the CPU time of the {} \
         busiest threads (this shows CPU placement too: a thread that shares a CPU with the load generator is \
         charged for some of its loopback TCP work); green threads per hub: each round's, at the window's start (its \
         connections and two of the server's own: its accept loop and its inbox)",
        conns / 10,
        (conns - conns / 10) as f64 * 20.0 + (conns / 10) as f64 * 200.0,
        opts.cores
    ));
    report.notes.push(
        "eventlet: one shared listener, new connections to the hub with the fewest (the default); -reuseport: one \
         SO_REUSEPORT listener per hub, the same rebalancing; -only: without rebalancing (each hub serves what it \
         accepts); tokio: work stealing, for reference"
            .into(),
    );
    report.notes.push(layout.describe(timing));
    Ok(report)
}

/// A tenth of `n` connections, picked at random with a fixed seed.
fn heavy_tenth(n: usize) -> Vec<bool> {
    let mut heavy = vec![false; n];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut picked = 0;
    while picked < n / 10 {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let i = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize;
        if !heavy[i] {
            heavy[i] = true;
            picked += 1;
        }
    }
    heavy
}

/// Runs one of this module's peer servers until killed, with `threads`
/// threads: `eventlet-echo` (and its variants), `tokio-echo`, `may-echo`,
/// `mio-echo`, `eventlet-http`, `eventlet-raw-http`, `hyper-http`,
/// `may-http`, `eventlet-plaintext`, `eventlet-raw-plaintext`,
/// `hyper-plaintext`.
pub(crate) fn peer(kind: &str, addr: &str, threads: usize, console: Option<&str>) -> Result<()> {
    use eventlet::net::Balance;

    raise_nofile();
    die_with_parent();
    if let Some(console) = console {
        // On this thread's hub, which runs while the server waits.
        let listener = eventlet::listen(console).with_context(|| format!("cannot listen on {console}"))?;
        eventlet::spawn_n(move || {
            let _ = eventlet::backdoor::serve(listener);
        });
    }
    let threads = threads.max(1);
    match kind {
        "eventlet-echo" => servers::eventlet_echo(addr, threads, Balance::Shared, true),
        "eventlet-echo-1hub" => servers::eventlet_echo(addr, 1, Balance::Shared, true),
        "eventlet-echo-reuseport" => servers::eventlet_echo(addr, threads, Balance::ReusePort, true),
        "eventlet-echo-shared-only" => servers::eventlet_echo(addr, threads, Balance::Shared, false),
        "eventlet-echo-reuseport-only" => servers::eventlet_echo(addr, threads, Balance::ReusePort, false),
        "tokio-echo" => servers::tokio_echo(addr, threads),
        "may-echo" => servers::may_echo(addr, threads),
        "mio-echo" => servers::mio_echo(addr),
        "eventlet-http" => servers::eventlet_http(addr, threads, false),
        "eventlet-plaintext" => servers::eventlet_http(addr, threads, true),
        "eventlet-raw-http" => servers::eventlet_raw(addr, threads, false),
        "eventlet-raw-plaintext" => servers::eventlet_raw(addr, threads, true),
        "hyper-http" => servers::hyper_http(addr, threads, false),
        "hyper-plaintext" => servers::hyper_http(addr, threads, true),
        "may-http" => servers::may_http(addr, threads),
        _ => bail!("unknown peer {kind:?}"),
    }
}

/// Drives load at a server started by hand (under strace or perf) and
/// prints what the load saw, including the server's CPU per message.
pub(crate) fn load_only(addr: &str, pid: u32, conns: usize, secs: u64, proto: &str) -> Result<()> {
    raise_nofile();
    let addr: SocketAddr = addr.parse().with_context(|| format!("bad address {addr}"))?;
    let (proto, depth) = match proto {
        "echo" => (Proto::Echo, 1),
        "http" => (Proto::Http, 1),
        "plaintext" => (Proto::Plaintext, PIPELINE),
        other => bail!("unknown protocol {other:?} (echo, http or plaintext)"),
    };
    let spec = load::Spec {
        addr,
        server_pid: pid,
        server_cpus: vec![util::SERVER_CPU],
        conns,
        proto,
        depth,
        pace: None,
        threads: 1,
        load_cpus: vec![util::LOAD_CPU],
        warmup: Duration::from_millis(500),
        window: Duration::from_secs(secs),
        console: None,
    };
    let out = load::run(&spec)?;
    println!(
        "{} msgs in {:.2} s: {:.0} msgs/s, server {:.2} us/msg, server {:.0}% cpu, load {:.0}%, failed {}",
        out.done,
        out.elapsed.as_secs_f64(),
        out.rate(),
        out.server_us_per_op(),
        out.server_share() * 100.0,
        out.load_share() * 100.0,
        out.failed
    );
    Ok(())
}

/// Installs the optional peers: Go and wrk (apt-get), Python eventlet and
/// gevent (pip).
pub(crate) fn setup() -> Result<()> {
    external::setup()
}

/// What a scenario measures.
struct Scenario {
    name: &'static str,
    unit: &'static str,
    /// The heading of the server-CPU-per-exchange column.
    per_op: &'static str,
    proto: Proto,
    /// Requests in flight per connection.
    depth: usize,
    /// Connection counts (`--quick`: the first only).
    configs: &'static [usize],
}

/// The scenario's name in the report: `echo`, or `echo-2cores` at
/// `--cores 2`.
fn scenario_name(name: &str, cores: usize) -> String {
    if cores == 1 {
        name.to_owned()
    } else {
        format!("{name}-{cores}cores")
    }
}

/// Where the server and the load run.
struct Layout {
    server: Vec<usize>,
    load: Vec<usize>,
    threads: usize,
}

impl Layout {
    fn new(opts: &Opts) -> Result<Layout> {
        Layout::on(opts, &util::allowed_cpus())
    }

    /// The layout on a machine whose usable CPUs are `all`.
    fn on(opts: &Opts, all: &[usize]) -> Result<Layout> {
        if opts.cores == 0 {
            bail!("--cores must be at least 1");
        }
        if opts.cores > all.len() {
            bail!("--cores {}: this process may use only {} CPUs ({})", opts.cores, all.len(), util::cpu_list(all));
        }
        let server = all[..opts.cores].to_vec();
        let load = match &opts.load_cpus {
            Some(list) => util::parse_cpu_list(list).map_err(anyhow::Error::msg)?,
            None if all.len() > opts.cores => all[opts.cores..].to_vec(),
            // Nothing left: share the server's last CPU.
            None => vec![all[all.len() - 1]],
        };
        let threads = opts.load_threads.unwrap_or(load.len()).max(1);
        Ok(Layout { server, load, threads })
    }

    /// Whether the load runs on CPUs the server has too.
    fn shared(&self) -> bool {
        self.load.iter().any(|c| self.server.contains(c))
    }

    /// The note that says where things ran.
    fn describe(&self, timing: Timing) -> String {
        let mut s = format!(
            "server on CPU{} {}, load generator (mio, {} thread{}) on CPU{} {}; {} s measured per round after {} s \
             warm-up",
            if self.server.len() == 1 { "" } else { "s" },
            util::cpu_list(&self.server),
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            if self.load.len() == 1 { "" } else { "s" },
            util::cpu_list(&self.load),
            timing.window.as_secs_f64(),
            timing.warmup.as_secs_f64(),
        );
        if self.shared() {
            s.push_str(
                "; the load shares CPUs with the server, so throughput is not the server's alone: compare the \
                 server CPU per request",
            );
        }
        s
    }
}

fn timing(opts: &Opts) -> Timing {
    if opts.quick {
        Timing { warmup: Duration::from_millis(200), window: Duration::from_millis(500) }
    } else {
        Timing { warmup: Duration::from_millis(500), window: Duration::from_secs(3) }
    }
}

/// Where a contender's server comes from.
enum Peer {
    /// `eventlet-bench peer KIND`.
    Builtin(&'static str),
    /// A Go program: file name and source.
    Go(&'static str, &'static str),
    /// A Python script: the module it needs, file name and source.
    Python(&'static str, &'static str, &'static str),
}

/// A contender ready to start: program, arguments (`{addr}` is replaced
/// by the address) and environment.
struct Contender {
    name: &'static str,
    program: String,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// Whether it serves eventlet's inspection console (`--console`) for
    /// its hubs' counters.
    console: bool,
}

/// Timings of one measurement.
#[derive(Clone, Copy)]
struct Timing {
    warmup: Duration,
    window: Duration,
}

fn run_scenario(opts: &Opts, s: &Scenario, peers: &[(&'static str, Peer)]) -> Result<Report> {
    raise_nofile();
    let layout = Layout::new(opts)?;
    let mut report = Report::new(&scenario_name(s.name, opts.cores), s.unit, true);
    if peers.iter().any(|(name, _)| *name == "eventlet-raw") {
        report.compared.push("eventlet-raw".into());
    }
    let scratch = Scratch::new()?;
    let contenders = resolve(peers, opts, &scratch, &mut report, opts.cores)?;
    let configs: &[usize] = if opts.quick { &s.configs[..1] } else { s.configs };
    let timing = timing(opts);
    let rounds = opts.rounds();
    if !util::can_pin() {
        report.notes.push("taskset is missing or the machine has one CPU: server and load were not pinned".into());
    }
    let what = if s.proto == Proto::Echo { "message" } else { "request" };
    let (mut bottlenecked, mut both_busy, mut starved) = (Vec::new(), Vec::new(), Vec::new());
    for &conns in configs {
        let config = format!("{conns} conns");
        let mut results: Vec<Vec<Outcome>> = contenders.iter().map(|_| Vec::new()).collect();
        let mut failed: Vec<bool> = contenders.iter().map(|_| false).collect();
        for round in 1..=rounds {
            for (i, c) in contenders.iter().enumerate() {
                if failed[i] {
                    continue;
                }
                match measure(c, &layout, s.proto, s.depth, None, conns, timing) {
                    Ok(out) => {
                        eprintln!(
                            "{} {} {config} round {round}/{rounds}: {:.0} {} (p99 {:.0} us, server {:.2} us/{what}, \
                             server {:.0}% of its cpus, load {:.0}%, others {:.0}%)",
                            report.scenario,
                            c.name,
                            out.rate(),
                            s.unit,
                            out.p99.as_secs_f64() * 1e6,
                            out.server_us_per_op(),
                            out.server_share() * 100.0,
                            out.load_share() * 100.0,
                            out.others_share() * 100.0,
                        );
                        results[i].push(out);
                    }
                    Err(e) if c.name == "eventlet" => return Err(e.context(format!("eventlet at {config}"))),
                    Err(e) => {
                        eprintln!("{} {} {config}: failed: {e:#}", report.scenario, c.name);
                        report.skipped.push(format!("{}@{conns}: failed: {e:#}", c.name));
                        failed[i] = true;
                    }
                }
            }
        }
        for (i, c) in contenders.iter().enumerate() {
            if failed[i] {
                continue;
            }
            let outs = &results[i];
            let med = |f: &dyn Fn(&Outcome) -> f64| median(&outs.iter().map(f).collect::<Vec<_>>());
            let (server, load) = (med(&|o| o.server_share()), med(&|o| o.load_share()));
            let per_op: Vec<f64> = outs.iter().map(Outcome::server_us_per_op).collect();
            report.rows.push(
                Row::new(c.name, &config, outs.iter().map(Outcome::rate).collect())
                    .with("p99 us", format!("{:.0}", med(&|o| o.p99.as_secs_f64() * 1e6)))
                    .with(s.per_op, format!("{:.2}", median(&per_op)))
                    .with("cpu/op rounds", per_op.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" "))
                    .with("server cpu %", format!("{:.0}", server * 100.0))
                    .with("load cpu %", format!("{:.0}", load * 100.0))
                    .per_op(median(&per_op)),
            );
            if load >= LOAD_BUSY && server <= SERVER_NOT_BUSY {
                bottlenecked.push(format!("{}@{conns}", c.name));
            } else if load >= LOAD_BUSY {
                both_busy.push(format!("{}@{conns}", c.name));
            }
            let others = med(&|o| o.others_share());
            if others > OTHERS_BUSY {
                starved.push(format!("{}@{conns} ({:.0}%)", c.name, others * 100.0));
            }
            let broken: usize = outs.iter().map(|o| o.failed).sum();
            if let Some(why) = outs.iter().find_map(|o| o.first_error.as_deref()) {
                report
                    .notes
                    .push(format!("{}@{conns}: {broken} connection(s) failed in the runs (first: {why})", c.name));
            }
        }
    }
    if !bottlenecked.is_empty() {
        report.notes.push(format!(
            "the load generator was the bottleneck for {} (its CPUs {:.0}%+ busy, the server's below {:.0}%): \
             their throughput is a floor; compare the server CPU per {what} instead",
            bottlenecked.join(", "),
            LOAD_BUSY * 100.0,
            SERVER_NOT_BUSY * 100.0,
        ));
    }
    if !both_busy.is_empty() {
        report.notes.push(format!(
            "the load generator's CPUs were as busy as the server's ({:.0}%+) for {}: their throughput is limited \
             by both sides; the server CPU per {what} tells the servers apart",
            LOAD_BUSY * 100.0,
            both_busy.join(", "),
        ));
    }
    if !starved.is_empty() {
        report.notes.push(format!(
            "other processes took a share of the CPUs in use during {}: those figures are noisy; rerun on a quiet \
             machine",
            starved.join(", "),
        ));
    }
    if s.depth > 1 {
        report.notes.push(format!(
            "TechEmpower's plaintext request (its Host, Accept and Connection headers), {} pipelined per connection \
             and sent in one write; a connection sends the next {} once all are answered; p99 is of a batch",
            s.depth, s.depth
        ));
    }
    if opts.cores > 1 {
        report.notes.push(format!(
            "{} threads each: eventlet {} hubs (Server::workers; eventlet-1hub: one hub, the --cores 1 server); \
             tokio and hyper a multi-thread runtime with {} workers; may and may_minihttp {} workers; go \
             GOMAXPROCS={}",
            opts.cores, opts.cores, opts.cores, opts.cores, opts.cores
        ));
    }
    report.notes.push(layout.describe(timing));
    Ok(report)
}

/// Turns the wanted peers into contenders for `cores` server threads;
/// those whose runtime is missing, that do not build, or that have one
/// thread only when `cores` > 1 go to `report.skipped`.
fn resolve(
    peers: &[(&'static str, Peer)],
    opts: &Opts,
    scratch: &Scratch,
    report: &mut Report,
    cores: usize,
) -> Result<Vec<Contender>> {
    let me = util::self_exe()?;
    let mut out = Vec::new();
    for (name, peer) in peers {
        if !opts.wants(name) {
            continue;
        }
        let threads = cores.to_string();
        let launch: Result<Contender, String> = match peer {
            Peer::Builtin("mio-echo") if cores > 1 => Err("one thread only (the floor of one core)".into()),
            Peer::Builtin("eventlet-echo-1hub") if cores == 1 => continue,
            Peer::Builtin(kind) => Ok(Contender {
                name,
                program: me.clone(),
                args: vec!["peer".into(), (*kind).into(), "{addr}".into(), "--threads".into(), threads],
                env: Vec::new(),
                console: kind.starts_with("eventlet-echo") && cores > 1,
            }),
            Peer::Go(file, source) => external::go_build(scratch, file, source).map(|exe| Contender {
                name,
                program: exe.to_string_lossy().into_owned(),
                args: vec!["{addr}".into(), threads.clone()],
                env: vec![("GOMAXPROCS", threads)],
                console: false,
            }),
            Peer::Python(..) if cores > 1 => Err("one thread only".into()),
            Peer::Python(module, file, source) => external::python_with(module).and_then(|python| {
                let script: PathBuf = scratch.write(file, source).map_err(|e| format!("{e:#}"))?;
                Ok(Contender {
                    name,
                    program: python.to_string_lossy().into_owned(),
                    args: vec![script.to_string_lossy().into_owned(), "{addr}".into()],
                    env: Vec::new(),
                    console: false,
                })
            }),
        };
        match launch {
            Ok(c) => out.push(c),
            Err(why) => report.skipped.push(format!("{name}: {why}")),
        }
    }
    if out.is_empty() {
        bail!("no contender to run (check --only)");
    }
    Ok(out)
}

/// Kills the server when the measurement ends, however it ends.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            util::stop(child);
        }
    }
}

/// Starts `c`'s server on a free port on the server CPUs, waits for it,
/// checks one exchange, and measures it under `conns` connections.
fn measure(
    c: &Contender,
    layout: &Layout,
    proto: Proto,
    depth: usize,
    pace: Option<Pace>,
    conns: usize,
    timing: Timing,
) -> Result<Outcome> {
    let addr = free_addr()?;
    let addr_arg = addr.to_string();
    let mut args: Vec<&str> =
        c.args.iter().map(|a| if a == "{addr}" { addr_arg.as_str() } else { a.as_str() }).collect();
    let console = if c.console { Some(free_addr()?) } else { None };
    let console_arg = console.map(|a| a.to_string()).unwrap_or_default();
    if console.is_some() {
        args.extend(["--console", console_arg.as_str()]);
    }
    let mut server = Server(Some(util::spawn_on(&layout.server, &c.program, &args, &c.env, false)?));
    let child = server.0.as_mut().context("server not started")?;
    let pid = child.id();
    wait_ready(child, addr)?;
    load::probe(addr, proto).context("the first exchange")?;
    let spec = load::Spec {
        addr,
        server_pid: pid,
        server_cpus: layout.server.clone(),
        conns,
        proto,
        depth,
        pace,
        threads: layout.threads,
        load_cpus: if util::can_pin() { layout.load.clone() } else { Vec::new() },
        warmup: timing.warmup,
        window: timing.window,
        console,
    };
    let out = load::run(&spec)?;
    drop(server);
    Ok(out)
}

/// A free loopback port: bound by the harness, read, and let go for the
/// child to take.
fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?)
}

/// Waits until `addr` accepts a connection, or fails when the child exits
/// or [`START_TIMEOUT`] passes.
fn wait_ready(child: &mut Child, addr: SocketAddr) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited at start ({status})");
        }
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            bail!("the server did not listen on {addr} within {} s", START_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks the kernel to kill this peer when the harness that started it dies
/// (best effort), so that no orphaned server stays on the server CPU and
/// skews the next run.
fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Raises the soft limit on open files to the hard limit (best effort):
/// 1,000 connections need more than the common soft limit of 1,024.
fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit to read into and, after, to pass back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(cores: usize, load_cpus: Option<&str>, load_threads: Option<usize>) -> Opts {
        Opts {
            quick: false,
            json: false,
            rounds: None,
            only: Vec::new(),
            cores,
            load_cpus: load_cpus.map(str::to_owned),
            load_threads,
        }
    }

    /// The same command on bigger machines: the server takes the first N
    /// CPUs, the load the rest, one thread per load CPU.
    #[test]
    fn layouts_at_n_cores() {
        let two: Vec<usize> = (0..2).collect();
        let sixteen: Vec<usize> = (0..16).collect();
        let l = Layout::on(&opts(1, None, None), &two).unwrap();
        assert_eq!((l.server, l.load, l.threads), (vec![0], vec![1], 1));
        let l = Layout::on(&opts(2, None, None), &two).unwrap();
        assert_eq!((l.server.clone(), l.load.clone(), l.shared()), (vec![0, 1], vec![1], true));
        for n in [4, 8] {
            let l = Layout::on(&opts(n, None, None), &sixteen).unwrap();
            assert_eq!(l.server, (0..n).collect::<Vec<_>>());
            assert_eq!(l.load, (n..16).collect::<Vec<_>>());
            assert_eq!((l.threads, l.shared()), (16 - n, false));
        }
        let l = Layout::on(&opts(16, None, None), &sixteen).unwrap();
        assert_eq!((l.load.clone(), l.shared()), (vec![15], true));
        let l = Layout::on(&opts(8, Some("8-11"), Some(2)), &sixteen).unwrap();
        assert_eq!((l.load, l.threads), (vec![8, 9, 10, 11], 2));
        let err = Layout::on(&opts(4, None, None), &two).err().unwrap().to_string();
        assert_eq!(err, "--cores 4: this process may use only 2 CPUs (0-1)");
        assert!(Layout::on(&opts(0, None, None), &two).is_err());
        assert!(Layout::on(&opts(1, Some("x"), None), &two).is_err());
    }
}
