//! The guide's caveat, shown: a std `Mutex` held across a patched blocking
//! call. The holder parks (the patch works); another green thread that
//! then locks the same mutex blocks the whole OS thread in the kernel, so
//! the holder never runs again to unlock it. The watchdog names the green
//! thread that holds the hub: the one stuck in `lock`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The deadlock, in a child process that an alarm ends after 2 s.
#[test]
#[ignore = "run in a child process by a_std_mutex_held_across_a_patched_call_blocks_the_hub_and_the_watchdog_says_who"]
fn deadlock_on_a_std_mutex() {
    eventlet::monkey_patch();
    eventlet::hub::watchdog(Duration::from_millis(100), None);
    // SAFETY: alarm has no preconditions; SIGALRM ends the process.
    unsafe { libc::alarm(2) };
    let m = Arc::new(Mutex::new(0));
    let m1 = m.clone();
    let holder = eventlet::spawn(move || {
        let mut g = m1.lock().unwrap();
        std::thread::sleep(Duration::from_millis(200)); // patched: parks, holding the lock
        *g += 1;
    });
    let m2 = m.clone();
    let locker = eventlet::spawn(move || {
        *m2.lock().unwrap() += 1; // blocks the OS thread: the holder cannot run
    });
    eprintln!("the locker is green thread {}", locker.thread().id());
    holder.join().unwrap();
    locker.join().unwrap();
    eprintln!("not reached: the hub is deadlocked");
}

#[test]
fn a_std_mutex_held_across_a_patched_call_blocks_the_hub_and_the_watchdog_says_who() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "deadlock_on_a_std_mutex", "--nocapture", "--test-threads=1", "--include-ignored"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGALRM), "deadlocked until the alarm: {stderr}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("the locker is green thread "))
        .unwrap_or_else(|| panic!("{stderr}"))
        .trim()
        .to_string();
    assert!(stderr.contains(&format!("green thread {id} has held its hub")), "the watchdog names the locker: {stderr}");
    assert!(!stderr.contains("not reached"));
}
