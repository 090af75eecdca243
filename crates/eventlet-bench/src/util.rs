//! Process plumbing shared by the scenarios: pinned child processes, CPU
//! time from `/proc`, tool lookup.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// The CPU the servers run on.
pub(crate) const SERVER_CPU: usize = 0;
/// The CPU the load generator runs on.
pub(crate) const LOAD_CPU: usize = 1;

/// Whether `taskset` can pin (present, and the machine has two CPUs).
pub(crate) fn can_pin() -> bool {
    have("taskset") && std::thread::available_parallelism().map(|n| n.get() >= 2).unwrap_or(false)
}

/// Whether `tool` is on `PATH`.
pub(crate) fn have(tool: &str) -> bool {
    which(tool).is_some()
}

/// The full path of `tool` on `PATH`.
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Starts `program args...` pinned to `cpu` (unpinned when `taskset` is
/// missing), stdout and stderr inherited unless `quiet`.
pub(crate) fn spawn_pinned(cpu: usize, program: &str, args: &[&str], quiet: bool) -> Result<Child> {
    let mut cmd = if can_pin() {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).stdin(Stdio::null());
    if quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    cmd.spawn().with_context(|| format!("cannot start {program}"))
}

/// This program's own path, to start peers as `eventlet-bench peer ...`.
pub(crate) fn self_exe() -> Result<String> {
    Ok(std::env::current_exe().context("cannot find this program's path")?.to_string_lossy().into_owned())
}

/// Pins the calling OS thread to `cpu` (best effort).
pub(crate) fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// User + system CPU time a process has used so far (`/proc/PID/stat`,
/// fields 14 and 15), including its threads.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    // The command name (field 2) may hold spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')').context("bad /proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

/// CPU time this process has used so far.
pub(crate) fn own_cpu_time() -> Duration {
    cpu_time(std::process::id()).unwrap_or_default()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident set size of a process, in bytes (`/proc/PID/statm`).
pub(crate) fn rss(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = s.split_whitespace().nth(1).context("bad statm")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    Ok(pages * page)
}

/// Kills and reaps a child we started (by its PID, never by name).
pub(crate) fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}
