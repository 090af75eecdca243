//! The tour: `eventlet` with no arguments, and `--help` everywhere.

mod util;

use std::time::Duration;

use util::run;

fn check_summary(stdout: &str, round_trips: usize) {
    assert!(stdout.starts_with("eventlet tour\n"), "{stdout}");
    assert!(stdout.contains("200 pages, "), "{stdout}");
    assert!(stdout.contains(&format!("   round trips:      {round_trips}\n")), "{stdout}");
    for want in ["throughput:", "latency p50/p99:", "green threads at peak:", "all bytes checked; tour finished in"] {
        assert!(stdout.contains(want), "{want:?} missing: {stdout}");
    }
}

#[test]
fn no_arguments_runs_the_tour() {
    let out = run(&[], Duration::from_secs(120));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr, "");
    check_summary(&out.stdout, 5000 * 20);
}

#[test]
fn a_smaller_tour() {
    let out = run(&["tour", "--clients", "500", "--rounds", "5"], Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    check_summary(&out.stdout, 500 * 5);
    let out = run(&["tour", "--clients", "0"], Duration::from_secs(60));
    assert_eq!(out.one_line_error(), "eventlet: --clients and --rounds must be at least 1");
}

#[test]
fn help_everywhere() {
    let out = run(&["--help"], Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    for cmd in ["tour", "crawl", "serve", "echo", "forward", "load"] {
        assert!(out.stdout.contains(&format!("  {cmd} ")), "{cmd} not in the help: {}", out.stdout);
        let sub = run(&[cmd, "--help"], Duration::from_secs(30));
        assert!(sub.status.success(), "{sub:?}");
        assert!(sub.stdout.contains(&format!("Usage: eventlet {cmd}")), "{}", sub.stdout);
    }
    let out = run(&["nonsense"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.starts_with("error: unrecognized subcommand"), "{out:?}");
}
