//! The micro scenarios: `spawn`, `switch` and `memory`.
//!
//! | scenario | one operation | contenders |
//! | --- | --- | --- |
//! | `spawn` | spawn + run + join of an empty green thread / task / thread, ns | eventlet (`spawn` + `join` from the root), tokio (current-thread, `tokio::spawn` + await of the `JoinHandle` from inside a task), may (one worker, `go!` + `join` from inside a coroutine), `std::thread`, Go (`go` + an unbuffered channel), Python eventlet (`spawn` + `wait`) |
//! | `switch` | a ping-pong round trip between two green threads / tasks, ns | eventlet `Queue` (row `eventlet`), eventlet `park`/`unpark` (`eventlet-park`) and `eventlet::channel` (`eventlet-channel`), tokio unbounded `mpsc` (current-thread), may `mpsc` (one worker), Go unbuffered channels (`GOMAXPROCS=1`), Python eventlet `Queue` |
//! | `memory` | N green threads / tasks / threads blocked at once: RSS per thread, bytes | eventlet (`park`), tokio (await of one shared `Notify`), may (`park`), Go (receive from a channel), OS threads (`park`, 64 KiB stacks) |
//!
//! # How they run
//!
//! Every contender runs in a fresh child process pinned to
//! [`util::LOAD_CPU`] with `taskset`, round after round: round 1 runs every
//! contender once, then round 2, and so on; the median of the rounds is
//! reported. A child prints one number as the last line of its stdout.
//!
//! - The Rust runtimes (eventlet, tokio, may, std) are this program again,
//!   as the hidden subcommand `eventlet-bench hold KIND N`:
//!   - `hold spawn:NAME MILLIS` / `hold switch:NAME MILLIS` measures for
//!     MILLIS ms after a warm-up of a tenth of that and prints ns per
//!     operation;
//!   - `hold NAME N` (`eventlet`, `tokio`, `may`, `std-thread`) blocks N
//!     green threads / tasks / threads, prints its own RSS in bytes and
//!     exits at once.
//! - Go peers are built once per scenario from `peers/*.go` (embedded in
//!   this program) into a temporary directory with `go build`, and run with
//!   `GOMAXPROCS=1`; they take the same argument and print the same number.
//! - Python eventlet peers are `peers/*_eventlet.py` (embedded), run with
//!   `python3`.
//!
//! Child processes rather than threads of this one because may's runtime is
//! global and configured once per process (we want one worker), because a
//! fresh process gives each contender a clean heap and stack pool, and
//! because `memory` has to read one runtime's RSS alone. A child is stopped
//! by its PID when it overruns its time limit.
//!
//! Go and Python eventlet are used only when installed (`go` on `PATH`;
//! `python3` that can `import eventlet`); otherwise the report says they
//! were skipped. `eventlet-bench setup` installs them.
//!
//! # memory
//!
//! For each runtime, one child holds a small number ([`BASE_N`]) and one
//! holds N; a thread costs `(RSS(N) - RSS(BASE_N)) / (N - BASE_N)`. Each
//! runtime uses its default stack size (eventlet 256 KiB, may 32 KiB, both
//! committed lazily; goroutine stacks start at 2 KiB and grow); OS threads
//! get 64 KiB. N is 1,000,000 (OS threads 10,000); `--quick` uses 10,000
//! (OS threads 1,000).
//!
//! may puts an `mprotect` guard page under every coroutine stack, two
//! kernel mappings each, so with `vm.max_map_count` = 65530 it runs out
//! near 32,700 coroutines, panics in its worker and hangs. The child's
//! watchdog ends it once no coroutine has started for 10 s; the harness
//! then measures may again at [`MAY_FALLBACK_N`] and says so in a note.

mod child;
mod meter;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::report::{Report, Row};
use crate::util;
use crate::Opts;

/// The Go peer of `spawn` and `switch` (the scenario is its first argument).
const MICRO_GO: &str = include_str!("../../peers/micro.go");
/// The Go peer of `memory`.
const MEMORY_GO: &str = include_str!("../../peers/memory.go");
/// The Python eventlet peer of `spawn` and `switch` (likewise).
const MICRO_PY: &str = include_str!("../../peers/micro_eventlet.py");

/// Green threads held by the baseline child of `memory`.
pub(crate) const BASE_N: usize = 100;

/// Rounds of `spawn` and `switch` when `--rounds` is not given (more than
/// the other scenarios' 3: see `timed`).
const MICRO_ROUNDS: usize = 5;

/// may's N in `memory` when its full N fails (below the ~32,000 coroutines
/// that `vm.max_map_count` = 65530 allows).
pub(crate) const MAY_FALLBACK_N: usize = 30_000;
/// The target of `memory`: this many blocked green threads fit...
const MEMORY_TARGET_N: usize = 1_000_000;
/// ...at no more than this many bytes each (4.5 KiB).
const MEMORY_TARGET_BYTES: f64 = 4.5 * 1024.0;

/// The `spawn` scenario.
pub(crate) fn spawn(opts: &Opts) -> Result<Report> {
    let mut report = timed(opts, "spawn", &["eventlet", "tokio", "may", "std-thread"])?;
    report.notes.push(
        "eventlet spawns from the root context; tokio from inside a task (current-thread runtime); \
         may from inside a coroutine (1 worker); go: `go` + unbuffered channel, GOMAXPROCS=1"
            .into(),
    );
    Ok(report)
}

/// The `switch` scenario.
pub(crate) fn switch(opts: &Opts) -> Result<Report> {
    let rust = ["eventlet", "eventlet-park", "eventlet-channel", "tokio", "may"];
    let mut report = timed(opts, "switch", &rust)?;
    report.notes.push(
        "one round trip = two hand-offs; eventlet = unbounded Queue, eventlet-park = park/unpark, \
         eventlet-channel = channel::unbounded; tokio = mpsc::unbounded_channel (current-thread); \
         may = sync::mpsc (1 worker); go = unbuffered channels, GOMAXPROCS=1; python-eventlet = eventlet.queue.Queue"
            .into(),
    );
    Ok(report)
}

/// The `memory` scenario.
pub(crate) fn memory(opts: &Opts) -> Result<Report> {
    let mut report = Report::new("memory", "bytes/thread", false);
    let (green_n, os_n) = if opts.quick { (10_000, 1_000) } else { (MEMORY_TARGET_N, 10_000) };
    let exe = util::self_exe()?;
    let tmp = TempDir::new()?;
    let mut holders = Vec::new();
    for (name, n) in [("eventlet", green_n), ("tokio", green_n), ("may", green_n), ("std-thread", os_n)] {
        if opts.wants(name) {
            let fallback = (name == "may" && MAY_FALLBACK_N < n).then_some(MAY_FALLBACK_N);
            holders.push(Holder::new(Contender::new(name, &exe, &["hold", name]), n, fallback));
        }
    }
    if opts.wants("go") {
        match go_peer(&tmp, "memory", MEMORY_GO, &[]) {
            Ok(c) => holders.push(Holder::new(c, green_n, None)),
            Err(reason) => report.skipped.push(format!("go: {reason}")),
        }
    }
    // A million green threads take seconds to start and gigabytes to hold.
    let timeout = Duration::from_secs(if opts.quick { 60 } else { 300 });
    let results = alternate(opts.rounds(), &mut holders, |h| h.measure(timeout, &mut report.notes));
    for (h, result) in holders.iter().zip(results) {
        match result {
            Ok(bytes) => report.rows.push(
                Row::new(&h.contender.name, "", bytes)
                    .with("N", h.n)
                    .with("RSS at N", format!("{:.0} MiB", median_u64(&h.rss) as f64 / (1024.0 * 1024.0))),
            ),
            Err(e) => report.skipped.push(format!("{}: failed: {}", h.contender.name, one_line(&e))),
        }
    }
    if report.rows.iter().all(|r| r.name != "eventlet") && opts.wants("eventlet") {
        bail!("eventlet did not run: {}", report.skipped.join("; "));
    }
    report.notes.push(format!(
        "bytes/thread = (RSS(N) - RSS({BASE_N})) / (N - {BASE_N}), each in its own process {}; default stack \
         sizes (eventlet {} KiB, may 32 KiB, lazily committed), OS threads {} KiB",
        placement(),
        eventlet::DEFAULT_STACK_SIZE / 1024,
        child::OS_THREAD_STACK / 1024
    ));
    report.notes.push(memory_target(&report, opts.quick));
    Ok(report)
}

/// Holds the hidden subcommand `hold KIND N`: see the module docs.
pub(crate) fn hold(kind: &str, n: usize) -> Result<()> {
    child::run(kind, n)
}

/// One contender: a program that takes one number (milliseconds to run, or
/// green threads to hold) as its last argument and prints one number.
#[derive(Debug, Clone)]
struct Contender {
    /// Row name.
    name: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Contender {
    fn new(name: &str, program: &str, args: &[&str]) -> Contender {
        Contender {
            name: name.into(),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
        }
    }

    /// Runs it pinned to the load CPU with `arg` and returns the number it
    /// printed; a run longer than `timeout` is stopped (by PID) and fails.
    fn run(&self, arg: u64, timeout: Duration) -> Result<f64> {
        let mut cmd = if util::can_pin() {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(util::LOAD_CPU.to_string()).arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        cmd.args(&self.args).arg(arg.to_string()).envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = run_with_timeout(cmd, timeout).with_context(|| format!("{} {}", self.name, arg))?;
        last_number(&out)
    }
}

/// A Python script embedded in this program.
#[derive(Debug, Clone, Copy)]
struct Script {
    file: &'static str,
    source: &'static str,
}

/// Runs `cmd` with stdout and stderr captured; fails on a non-zero exit
/// (with the end of stderr) or after `timeout` (the child is stopped by
/// its PID). Returns stdout.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<String> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Drain both pipes on their own threads so that a chatty child never
    // blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            util::stop(child);
            bail!("timed out after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(2)..].join(" ");
        bail!("{status}: {}", if tail.is_empty() { "no message" } else { tail.as_str() });
    }
    Ok(out)
}

/// The number on the last non-empty line of a child's output.
fn last_number(out: &str) -> Result<f64> {
    let line = out.lines().rev().find(|l| !l.trim().is_empty()).context("printed nothing")?;
    let x: f64 = line.trim().parse().with_context(|| format!("printed {line:?}, not a number"))?;
    if !x.is_finite() || x < 0.0 {
        bail!("printed {x}");
    }
    Ok(x)
}

/// `e` and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// A scratch directory for the Go and Python peers, removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("eventlet-bench-micro-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the Go peer `name` from `source` and returns it as a contender,
/// or why it cannot run.
fn go_peer(tmp: &TempDir, name: &str, source: &str, args: &[&str]) -> std::result::Result<Contender, String> {
    let Some(go) = util::which("go") else {
        return Err("not installed (run `eventlet-bench setup`)".into());
    };
    let src = tmp.path().join(format!("{name}.go"));
    let bin = tmp.path().join(name);
    std::fs::write(&src, source).map_err(|e| format!("cannot write {}: {e}", src.display()))?;
    let mut cmd = Command::new(go);
    // `GOTOOLCHAIN=local`: never download another Go to build this.
    cmd.arg("build").arg("-o").arg(&bin).arg(&src).env("GOTOOLCHAIN", "local").env("GO111MODULE", "off");
    run_with_timeout(cmd, Duration::from_secs(300)).map_err(|e| format!("go build failed: {}", one_line(&e)))?;
    let mut c = Contender::new("go", &bin.to_string_lossy(), args);
    c.env.push(("GOMAXPROCS".into(), "1".into()));
    Ok(c)
}

/// Writes the Python eventlet peer and returns it as a contender, or why it
/// cannot run.
fn python_peer(tmp: &TempDir, script: Script, args: &[&str]) -> std::result::Result<Contender, String> {
    const MISSING: &str = "not installed (run `eventlet-bench setup`)";
    let Some(python) = util::which("python3") else {
        return Err(MISSING.into());
    };
    let mut probe = Command::new(&python);
    probe.args(["-W", "ignore", "-c", "import eventlet"]);
    if run_with_timeout(probe, Duration::from_secs(60)).is_err() {
        return Err(MISSING.into());
    }
    let path = tmp.path().join(script.file);
    std::fs::write(&path, script.source).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let path = path.to_string_lossy();
    let args: Vec<&str> = ["-W", "ignore", &*path].into_iter().chain(args.iter().copied()).collect();
    Ok(Contender::new("python-eventlet", &python.to_string_lossy(), &args))
}

/// A timed scenario (`spawn`, `switch`): every contender for about a second
/// (0.2 s with `--quick`) per round, rounds alternating.
fn timed(opts: &Opts, scenario: &str, rust: &[&str]) -> Result<Report> {
    let mut report = Report::new(scenario, "ns", false);
    let budget_ms: u64 = if opts.quick { 200 } else { 1000 };
    let exe = util::self_exe()?;
    let tmp = TempDir::new()?;
    let mut contenders: Vec<Contender> = rust
        .iter()
        .filter(|n| opts.wants(n))
        .map(|n| Contender::new(n, &exe, &["hold", &format!("{scenario}:{n}")]))
        .collect();
    if opts.wants("go") {
        match go_peer(&tmp, "micro", MICRO_GO, &[scenario]) {
            Ok(c) => contenders.push(c),
            Err(reason) => report.skipped.push(format!("go: {reason}")),
        }
    }
    if opts.wants("python-eventlet") {
        let script = Script { file: "micro_eventlet.py", source: MICRO_PY };
        match python_peer(&tmp, script, &[scenario]) {
            Ok(c) => contenders.push(c),
            Err(reason) => report.skipped.push(format!("python-eventlet: {reason}")),
        }
    }
    // Warm-up, measurement, process start (Python's is slow), and slack.
    let timeout = Duration::from_millis(budget_ms * 5 + 30_000);
    // Each round is a new process, laid out anew by ASLR, and a result this
    // small moves with the layout (eventlet's Queue round trip is ~54 ns in
    // most processes and ~75 ns in some): more rounds keep the median honest.
    let results = alternate(opts.rounds_or(MICRO_ROUNDS), &mut contenders, |c| c.run(budget_ms, timeout));
    for (c, result) in contenders.iter().zip(results) {
        match result {
            Ok(rounds) => report.rows.push(Row::new(&c.name, "", rounds)),
            Err(e) if c.name == "eventlet" => return Err(e.context("eventlet did not run")),
            Err(e) => report.skipped.push(format!("{}: failed: {}", c.name, one_line(&e))),
        }
    }
    report.notes.push(format!(
        "each contender in its own process {}; {budget_ms} ms per round after a {} ms warm-up",
        placement(),
        budget_ms / 10
    ));
    report.notes.push(speed_target(&report));
    Ok(report)
}

/// Where the children run, for the notes.
fn placement() -> String {
    if util::can_pin() {
        format!("pinned to CPU {}", util::LOAD_CPU)
    } else {
        "unpinned (no `taskset`, or one CPU)".into()
    }
}

/// Runs `f` for every item, `rounds` times, round by round (round 1 for
/// every item, then round 2, ...). An item that fails once is not run again;
/// its result is that error.
fn alternate<T>(rounds: usize, items: &mut [T], mut f: impl FnMut(&mut T) -> Result<f64>) -> Vec<Result<Vec<f64>>> {
    let mut out: Vec<Result<Vec<f64>>> = items.iter().map(|_| Ok(Vec::new())).collect();
    for _ in 0..rounds {
        for (item, slot) in items.iter_mut().zip(out.iter_mut()) {
            if let Ok(xs) = slot {
                match f(item) {
                    Ok(x) => xs.push(x),
                    Err(e) => *slot = Err(e),
                }
            }
        }
    }
    out
}

/// One runtime of `memory` and what it measured.
#[derive(Debug)]
struct Holder {
    contender: Contender,
    /// Green threads held; lowered to `fallback` if that fails.
    n: usize,
    fallback: Option<usize>,
    /// RSS at N, one per round.
    rss: Vec<u64>,
}

impl Holder {
    fn new(contender: Contender, n: usize, fallback: Option<usize>) -> Holder {
        Holder { contender, n, fallback, rss: Vec::new() }
    }

    /// One round: the baseline child and the child holding N (falling back
    /// to the smaller N once, with a note, if N fails). Returns bytes per
    /// thread.
    fn measure(&mut self, timeout: Duration, notes: &mut Vec<String>) -> Result<f64> {
        let base = self.contender.run(BASE_N as u64, timeout)?;
        let full = match self.contender.run(self.n as u64, timeout) {
            Ok(x) => x,
            Err(e) => {
                let Some(smaller) = self.fallback.take() else { return Err(e) };
                notes.push(format!(
                    "{}: {} failed ({}; vm.max_map_count = {}), measured at N = {smaller}",
                    self.contender.name,
                    self.n,
                    one_line(&e),
                    max_map_count().map_or("unknown".into(), |m| m.to_string()),
                ));
                self.n = smaller;
                self.contender.run(self.n as u64, timeout)?
            }
        };
        // No more retries at a smaller N after the first success.
        self.fallback = None;
        self.rss.push(full as u64);
        Ok(per_thread(base, full, BASE_N, self.n))
    }
}

/// Bytes per thread from the RSS of a child holding `base_n` and of one
/// holding `n` (0 if RSS did not grow).
fn per_thread(rss_base: f64, rss_n: f64, base_n: usize, n: usize) -> f64 {
    if n <= base_n {
        return 0.0;
    }
    ((rss_n - rss_base) / (n - base_n) as f64).max(0.0)
}

/// `vm.max_map_count`, the kernel's limit on mappings per process.
fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()
}

/// Whether the `spawn`/`switch` target (eventlet faster than every peer)
/// is met, as a note. eventlet's own extra rows (`eventlet-*`) are not
/// peers.
fn speed_target(report: &Report) -> String {
    let Some(ours) = report.rows.iter().find(|r| r.name == "eventlet") else {
        return "target (faster than every peer): not checked, eventlet did not run".into();
    };
    let slower_than: Vec<String> = report
        .rows
        .iter()
        .filter(|r| !r.name.starts_with("eventlet") && r.median <= ours.median)
        .map(|r| format!("{} ({:.1}x)", r.name, ours.median / r.median.max(f64::MIN_POSITIVE)))
        .collect();
    if slower_than.is_empty() {
        "target (faster than every peer): met".into()
    } else {
        format!("target (faster than every peer): NOT met, eventlet is slower than {}", slower_than.join(", "))
    }
}

/// Whether the `memory` target (1,000,000 blocked green threads at no more
/// than 4.5 KiB each) is met, as a note.
fn memory_target(report: &Report, quick: bool) -> String {
    let head = format!("target ({MEMORY_TARGET_N} blocked green threads at <= {MEMORY_TARGET_BYTES:.0} bytes each)");
    let Some(ours) = report.rows.iter().find(|r| r.name == "eventlet") else {
        return format!("{head}: not checked, eventlet did not run");
    };
    let n: usize = ours.extra.iter().find(|(k, _)| k == "N").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    if quick || n < MEMORY_TARGET_N {
        return format!("{head}: not checked at N = {n}, {:.0} bytes each", ours.median);
    }
    if ours.median <= MEMORY_TARGET_BYTES {
        format!("{head}: met, {:.0} bytes each", ours.median)
    } else {
        format!("{head}: NOT met, {:.0} bytes each", ours.median)
    }
}

/// The median of whole numbers (the lower middle for an even count).
fn median_u64(xs: &[u64]) -> u64 {
    let mut v = xs.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_number_reads_the_last_line() {
        assert_eq!(last_number("warming up\n123.5\n\n").unwrap(), 123.5);
        assert!(last_number("").is_err());
        assert!(last_number("oops\n").is_err());
        assert!(last_number("NaN\n").is_err());
        assert!(last_number("-1\n").is_err());
    }

    #[test]
    fn alternate_runs_round_by_round_and_drops_failures() {
        let mut order = Vec::new();
        let out = alternate(3, &mut ["a", "b", "c"], |x| {
            order.push(*x);
            if *x == "b" && order.len() > 3 {
                bail!("b broke")
            }
            Ok(order.len() as f64)
        });
        assert_eq!(order, ["a", "b", "c", "a", "b", "c", "a", "c"]);
        assert_eq!(out[0].as_ref().unwrap(), &[1.0, 4.0, 7.0]);
        assert!(out[1].is_err());
        assert_eq!(out[2].as_ref().unwrap(), &[3.0, 6.0, 8.0]);
    }

    #[test]
    fn per_thread_subtracts_the_baseline() {
        assert_eq!(per_thread(1000.0, 1000.0 + 4096.0 * 900.0, 100, 1000), 4096.0);
        assert_eq!(per_thread(2000.0, 1000.0, 100, 1000), 0.0);
        assert_eq!(per_thread(1000.0, 5000.0, 100, 100), 0.0);
    }

    #[test]
    fn median_of_whole_numbers() {
        assert_eq!(median_u64(&[3, 1, 2]), 2);
        assert_eq!(median_u64(&[]), 0);
    }

    #[test]
    fn speed_target_names_the_faster_peers() {
        let mut r = Report::new("spawn", "ns", false);
        r.rows.push(Row::new("eventlet", "", vec![100.0]));
        r.rows.push(Row::new("eventlet-park", "", vec![10.0]));
        r.rows.push(Row::new("tokio", "", vec![200.0]));
        assert_eq!(speed_target(&r), "target (faster than every peer): met");
        r.rows.push(Row::new("go", "", vec![50.0]));
        assert!(speed_target(&r).contains("NOT met, eventlet is slower than go (2.0x)"));
    }

    #[test]
    fn memory_target_needs_the_full_n() {
        let mut r = Report::new("memory", "bytes/thread", false);
        r.rows.push(Row::new("eventlet", "", vec![4200.0]).with("N", 1_000_000));
        assert!(memory_target(&r, false).ends_with(": met, 4200 bytes each"));
        assert!(memory_target(&r, true).contains("not checked"));
        r.rows[0] = Row::new("eventlet", "", vec![5000.0]).with("N", 1_000_000);
        assert!(memory_target(&r, false).contains("NOT met"));
        r.rows[0] = Row::new("eventlet", "", vec![4000.0]).with("N", 10_000);
        assert!(memory_target(&r, false).contains("not checked at N = 10000"));
    }
}
