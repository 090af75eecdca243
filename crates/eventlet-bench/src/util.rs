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
    spawn_on(&[cpu], program, args, &[], quiet)
}

/// Starts `program args...` with `env` set, allowed on the CPUs `cpus`
/// only (unpinned when `taskset` is missing), stdout and stderr inherited
/// unless `quiet`.
pub(crate) fn spawn_on(
    cpus: &[usize],
    program: &str,
    args: &[&str],
    env: &[(&str, String)],
    quiet: bool,
) -> Result<Child> {
    let mut cmd = if can_pin() {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu_list(cpus)).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.args(args).stdin(Stdio::null());
    if quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    cmd.spawn().with_context(|| format!("cannot start {program}"))
}

/// The CPUs this process may run on (its affinity mask), in order.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid set to read the mask into.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        return (0..n).collect();
    }
    // SAFETY: CPU_ISSET reads the set filled in above.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// A CPU list as `taskset -c` and the kernel write it: `0-3,6`.
pub(crate) fn cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// Parses a CPU list (`1`, `0-3,6`).
pub(crate) fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {s:?} (expected e.g. 1 or 2-3,6)");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => {
                (a.trim().parse::<usize>().map_err(|_| bad())?, b.trim().parse::<usize>().map_err(|_| bad())?)
            }
            None => {
                let a = part.parse::<usize>().map_err(|_| bad())?;
                (a, a)
            }
        };
        if a > b {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(format!("empty CPU list {s:?}"));
    }
    Ok(out)
}

/// CPU time of each thread of a process, by thread id, in nanoseconds
/// (`/proc/PID/task/TID/schedstat`: finer than `stat`'s clock ticks).
pub(crate) fn thread_cpu_times(pid: u32) -> Vec<(u32, Duration)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    dir.filter_map(|e| {
        let tid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
        let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
        Some((tid, Duration::from_nanos(ns)))
    })
    .collect()
}

/// Fields 14 and 15 (user and system ticks) of a `stat` line (the command
/// name, field 2, may hold spaces: the fields after it follow the last `)`).
fn stat_cpu(stat: &str) -> Option<Duration> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
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
    stat_cpu(&stat).context("bad /proc stat")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_both_ways() {
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(parse_cpu_list("0-3,6, 8-9").unwrap(), vec![0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(!allowed_cpus().is_empty());
    }

    #[test]
    fn thread_times_list_this_process() {
        let times = thread_cpu_times(std::process::id());
        assert!(times.iter().any(|(tid, _)| *tid == std::process::id()), "{times:?}");
    }
}
