//! Spawns a million parked green threads and reports what each one costs.
//!
//! ```text
//! cargo run --release --example million [N] [--stack-size BYTES]
//! ```
//!
//! Every green thread parks right after it starts. Once all of them are
//! parked, the process's resident memory is compared with what it was before
//! spawning, and the difference per green thread is printed together with
//! the stack size, how guard pages are installed, the number of kernel
//! mappings and the page-table size. Then all of them are killed (each one
//! unwinds from its `park`), and the program exits.
//!
//! The default stack size is 256 KiB of address space; only the pages a green
//! thread touches cost memory.

use std::cell::Cell;
use std::fs;
use std::rc::Rc;
use std::time::Instant;

/// Memory figures of this process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    /// Resident set size (`VmRSS`).
    rss: u64,
    /// Anonymous resident memory (`RssAnon`): heap and stacks.
    anon: u64,
    /// Page tables (`VmPTE`); not part of RSS, but paid for all the same.
    pte: u64,
}

fn mem() -> Mem {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Mem { rss: field("VmRSS:"), anon: field("RssAnon:"), pte: field("VmPTE:") }
}

fn map_count() -> usize {
    fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

fn usage() -> ! {
    eprintln!("usage: million [N] [--stack-size BYTES]");
    std::process::exit(2);
}

fn main() {
    let mut n: usize = 1_000_000;
    let mut stack_size: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--stack-size" => {
                stack_size = Some(args.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()));
            }
            "-h" | "--help" => usage(),
            s => n = s.parse().unwrap_or_else(|_| usage()),
        }
    }

    // Start the hub and fill the handle table before the baseline, so the
    // difference counts only what the green threads themselves cost.
    let _ = eventlet::hub::stats();
    let mut handles: Vec<Option<eventlet::JoinHandle<()>>> = Vec::new();
    handles.resize_with(n, || None);
    let parked = Rc::new(Cell::new(0usize));

    let before = mem();
    let maps_before = map_count();
    let t0 = Instant::now();
    for slot in handles.iter_mut() {
        let p = parked.clone();
        let b = eventlet::Builder::new();
        let b = match stack_size {
            Some(s) => b.stack_size(s),
            None => b,
        };
        let h = b
            .spawn(move || {
                p.set(p.get() + 1);
                loop {
                    eventlet::park();
                }
            })
            .unwrap_or_else(|e| {
                eprintln!("million: spawn failed: {e}");
                std::process::exit(1);
            });
        *slot = Some(h);
    }
    let spawned = t0.elapsed();
    // The run queue is FIFO: after one yield every green thread spawned above
    // has run up to its `park`. Loop anyway in case a batch boundary splits it.
    while parked.get() < n {
        eventlet::yield_now();
    }
    let all_parked = t0.elapsed();
    let after = mem();
    let maps_after = map_count();
    let stats = eventlet::hub::stats();

    let per = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / n.max(1) as f64;
    println!(
        "green_threads={n} rss_per_green_thread_bytes={:.0} stack_size={} guard_mode={:?}",
        per(after.rss, before.rss),
        stack_size.unwrap_or(eventlet::DEFAULT_STACK_SIZE),
        eventlet::hub::guard_mode(),
    );
    println!(
        "rss_before={} rss_after={} anon_per_green_thread_bytes={:.0} page_tables_per_green_thread_bytes={:.0}",
        before.rss,
        after.rss,
        per(after.anon, before.anon),
        per(after.pte, before.pte),
    );
    println!(
        "maps_before={maps_before} maps_after={maps_after} stacks_in_use={} stacks_pooled={}",
        stats.stacks_in_use, stats.stacks_pooled
    );
    println!(
        "spawn_s={:.3} spawn_and_park_s={:.3} ns_per_green_thread={:.0}",
        spawned.as_secs_f64(),
        all_parked.as_secs_f64(),
        all_parked.as_nanos() as f64 / n.max(1) as f64
    );

    let t1 = Instant::now();
    for h in handles.iter().flatten() {
        h.kill();
    }
    let mut killed = 0usize;
    for h in handles.into_iter().flatten() {
        if h.join().is_err() {
            killed += 1;
        }
    }
    let left = eventlet::hub::stats().green_threads;
    println!("killed={killed} kill_s={:.3} green_threads_left={left}", t1.elapsed().as_secs_f64());
    if killed != n || left != 0 {
        eprintln!("million: not every green thread was killed");
        std::process::exit(1);
    }
}
