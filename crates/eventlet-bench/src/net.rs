//! The network scenarios, `echo` and `http`, their peer servers, and `setup`.
//!
//! Each measurement starts one server alone in its own process pinned to
//! the server CPU (`taskset -c 0 eventlet-bench peer KIND ADDR`, or the Go
//! binary, or Python), waits until its port accepts, checks one exchange,
//! then drives it from this process with the mio load generator
//! ([`load`]) pinned to the load CPU: warm-up, then a measured window. The
//! server is killed by its PID afterwards. Rounds alternate between the
//! contenders (round 1 of each, then round 2 of each, ...) so a slow
//! spell of the shared machine spreads over all of them, and each row
//! reports the median round.
//!
//! On two cores the load generator is often the limit: with one request in
//! flight per connection, the sender's `write` does the receiver's TCP work
//! on loopback, so each side pays for much of the other's. Beside
//! throughput the rows therefore give the server's CPU time per exchange
//! (from `/proc/PID/stat`), which does not depend on who saturates first,
//! and the CPU shares of both sides; a note names the rows where the load
//! generator was the bottleneck, and another the rows where other
//! processes took a share of the two CPUs (`/proc/stat` against our own
//! CPU times), which makes any figure noisy.

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
use load::{Outcome, Proto};

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
        ("tokio", Peer::Builtin("tokio-echo")),
        ("may", Peer::Builtin("may-echo")),
        ("mio", Peer::Builtin("mio-echo")),
        ("go", Peer::Go("echo.go", external::ECHO_GO)),
        ("python-eventlet", Peer::Python("eventlet", "echo_eventlet.py", external::ECHO_EVENTLET_PY)),
        ("gevent", Peer::Python("gevent", "echo_gevent.py", external::ECHO_GEVENT_PY)),
    ];
    let s = Scenario { name: "echo", unit: "msgs/s", per_op: "server cpu us/msg", proto: Proto::Echo };
    run_scenario(opts, &s, &peers)
}

/// The `http` scenario: "Hello, World!" over keep-alive HTTP/1.1 at 100 and
/// 1,000 connections.
pub(crate) fn http(opts: &Opts) -> Result<Report> {
    let peers = [
        ("eventlet", Peer::Builtin("eventlet-http")),
        ("hyper", Peer::Builtin("hyper-http")),
        ("may_minihttp", Peer::Builtin("may-http")),
        ("go", Peer::Go("http.go", external::HTTP_GO)),
        ("python-eventlet", Peer::Python("eventlet", "http_eventlet.py", external::HTTP_EVENTLET_PY)),
        ("gevent", Peer::Python("gevent", "http_gevent.py", external::HTTP_GEVENT_PY)),
    ];
    let s = Scenario { name: "http", unit: "req/s", per_op: "server cpu us/req", proto: Proto::Http };
    run_scenario(opts, &s, &peers)
}

/// Runs one of this module's peer servers until killed: `eventlet-echo`,
/// `tokio-echo`, `may-echo`, `mio-echo`, `eventlet-http`, `hyper-http`,
/// `may-http`.
pub(crate) fn peer(kind: &str, addr: &str) -> Result<()> {
    raise_nofile();
    die_with_parent();
    match kind {
        "eventlet-echo" => servers::eventlet_echo(addr),
        "tokio-echo" => servers::tokio_echo(addr),
        "may-echo" => servers::may_echo(addr),
        "mio-echo" => servers::mio_echo(addr),
        "eventlet-http" => servers::eventlet_http(addr),
        "hyper-http" => servers::hyper_http(addr),
        "may-http" => servers::may_http(addr),
        _ => bail!("unknown peer {kind:?}"),
    }
}

/// Drives the echo load at a server started by hand (under strace or perf)
/// and prints what the load saw, including the server's CPU per message.
pub(crate) fn load_only(addr: &str, pid: u32, conns: usize, secs: u64) -> Result<()> {
    raise_nofile();
    let addr: SocketAddr = addr.parse().with_context(|| format!("bad address {addr}"))?;
    let spec = load::Spec {
        addr,
        server_pid: pid,
        conns,
        proto: Proto::Echo,
        warmup: Duration::from_millis(500),
        window: Duration::from_secs(secs),
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

/// A contender ready to start: program and leading arguments (the address
/// follows).
struct Contender {
    name: &'static str,
    program: String,
    args: Vec<String>,
}

/// Timings of one measurement.
#[derive(Clone, Copy)]
struct Timing {
    warmup: Duration,
    window: Duration,
}

fn run_scenario(opts: &Opts, s: &Scenario, peers: &[(&'static str, Peer)]) -> Result<Report> {
    raise_nofile();
    let mut report = Report::new(s.name, s.unit, true);
    let scratch = Scratch::new()?;
    let contenders = resolve(peers, opts, &scratch, &mut report)?;
    let configs: &[usize] = if opts.quick { &[100] } else { &[100, 1000] };
    let timing = if opts.quick {
        Timing { warmup: Duration::from_millis(200), window: Duration::from_millis(500) }
    } else {
        Timing { warmup: Duration::from_millis(500), window: Duration::from_secs(3) }
    };
    let rounds = opts.rounds();
    if !util::can_pin() {
        report.notes.push("taskset is missing or the machine has one CPU: server and load were not pinned".into());
    }
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
                match measure(c, s.proto, conns, timing) {
                    Ok(out) => {
                        eprintln!(
                            "{} {} {config} round {round}/{rounds}: {:.0} {} (p99 {:.0} us, server {:.0}% cpu, load {:.0}%, \
                             cpus busy {:.0}%/{:.0}%)",
                            s.name,
                            c.name,
                            out.rate(),
                            s.unit,
                            out.p99.as_secs_f64() * 1e6,
                            out.server_share() * 100.0,
                            out.load_share() * 100.0,
                            out.busy[0] * 100.0,
                            out.busy[1] * 100.0,
                        );
                        results[i].push(out);
                    }
                    Err(e) if c.name == "eventlet" => return Err(e.context(format!("eventlet at {config}"))),
                    Err(e) => {
                        eprintln!("{} {} {config}: failed: {e:#}", s.name, c.name);
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
            report.rows.push(
                Row::new(c.name, &config, outs.iter().map(Outcome::rate).collect())
                    .with("p99 us", format!("{:.0}", med(&|o| o.p99.as_secs_f64() * 1e6)))
                    .with(s.per_op, format!("{:.2}", med(&|o| o.server_us_per_op())))
                    .with("server cpu %", format!("{:.0}", server * 100.0))
                    .with("load cpu %", format!("{:.0}", load * 100.0)),
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
            "the load generator was the bottleneck for {} (its core {:.0}%+ busy, the server's below {:.0}%): \
             their throughput is a floor; compare the server CPU per {} instead",
            bottlenecked.join(", "),
            LOAD_BUSY * 100.0,
            SERVER_NOT_BUSY * 100.0,
            if s.proto == Proto::Echo { "message" } else { "request" },
        ));
    }
    if !both_busy.is_empty() {
        report.notes.push(format!(
            "the load generator's core was as busy as the server's ({:.0}%+) for {}: their throughput is limited \
             by both sides; the server CPU per {} tells the servers apart",
            LOAD_BUSY * 100.0,
            both_busy.join(", "),
            if s.proto == Proto::Echo { "message" } else { "request" },
        ));
    }
    if !starved.is_empty() {
        report.notes.push(format!(
            "other processes took a share of CPU {} or {} during {}: those figures are noisy; \
             rerun on a quiet machine",
            util::SERVER_CPU,
            util::LOAD_CPU,
            starved.join(", "),
        ));
    }
    report.notes.push(format!(
        "server on CPU {}, load generator (mio, one thread) on CPU {}; {} s measured per round after {} s warm-up",
        util::SERVER_CPU,
        util::LOAD_CPU,
        timing.window.as_secs_f64(),
        timing.warmup.as_secs_f64(),
    ));
    Ok(report)
}

/// Turns the wanted peers into contenders; those whose runtime is missing
/// or does not build go to `report.skipped`.
fn resolve(
    peers: &[(&'static str, Peer)],
    opts: &Opts,
    scratch: &Scratch,
    report: &mut Report,
) -> Result<Vec<Contender>> {
    let me = util::self_exe()?;
    let mut out = Vec::new();
    for (name, peer) in peers {
        if !opts.wants(name) {
            continue;
        }
        let launch: Result<(String, Vec<String>), String> = match peer {
            Peer::Builtin(kind) => Ok((me.clone(), vec!["peer".into(), (*kind).into()])),
            Peer::Go(file, source) => {
                external::go_build(scratch, file, source).map(|exe| (exe.to_string_lossy().into_owned(), Vec::new()))
            }
            Peer::Python(module, file, source) => external::python_with(module).and_then(|python| {
                let script: PathBuf = scratch.write(file, source).map_err(|e| format!("{e:#}"))?;
                Ok((python.to_string_lossy().into_owned(), vec![script.to_string_lossy().into_owned()]))
            }),
        };
        match launch {
            Ok((program, args)) => out.push(Contender { name, program, args }),
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

/// Starts `c`'s server on a free port, waits for it, checks one exchange,
/// and measures it under `conns` connections.
fn measure(c: &Contender, proto: Proto, conns: usize, timing: Timing) -> Result<Outcome> {
    let addr = free_addr()?;
    let addr_arg = addr.to_string();
    let mut args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    args.push(&addr_arg);
    let mut server = Server(Some(util::spawn_pinned(util::SERVER_CPU, &c.program, &args, false)?));
    let child = server.0.as_mut().context("server not started")?;
    let pid = child.id();
    wait_ready(child, addr)?;
    load::probe(addr, proto).context("the first exchange")?;
    let spec = load::Spec { addr, server_pid: pid, conns, proto, warmup: timing.warmup, window: timing.window };
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
