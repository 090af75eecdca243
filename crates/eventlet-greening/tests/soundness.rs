//! Regression tests for the patcher's soundness review: what a program
//! with the patch on could do to it through std and libc calls alone (an
//! abort inside a patched call, a green thread switched to inside a signal
//! handler, a panic in `println!`, a hub blocked by a descriptor number
//! remembered wrong). Each case runs in a child process, so a regression
//! shows as a failed test, not a dead test binary; an alarm ends a child
//! that hangs.

mod util;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Runs the child case `case` of this binary's `child` test and returns its
/// stderr, asserting that it exited with success.
fn child_ok(case: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("EVENTLET_GREENING_CHILD", case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child case {case} failed ({}): {stderr}", out.status);
    assert!(stderr.contains(&format!("case {case} done")), "child case {case} did not finish: {stderr}");
    stderr
}

/// The child cases: each ends by printing `case NAME done`. An alarm
/// (SIGALRM ends the process) stops one that hangs.
#[test]
fn child() {
    let Ok(case) = std::env::var("EVENTLET_GREENING_CHILD") else { return };
    // SAFETY: alarm has no preconditions.
    unsafe { libc::alarm(10) };
    match case.as_str() {
        "wait-in-tls-destructor" => wait_in_tls_destructor(),
        other => panic!("unknown child case {other}"),
    }
    eprintln!("case {case} done");
}

/// Reads one byte when dropped (a goodbye the peer sends).
struct ReadsOnDrop(UnixStream);

impl Drop for ReadsOnDrop {
    fn drop(&mut self) {
        let mut b = [0u8; 1];
        let r = self.0.read(&mut b);
        assert_eq!(r.unwrap(), 1);
        eprintln!("the thread-local's destructor read its byte");
    }
}

thread_local! {
    static LAST: RefCell<Option<ReadsOnDrop>> = const { RefCell::new(None) };
}

/// A thread-local whose destructor makes a patched call that waits, on a
/// thread with a hub: it used to find the hub's table of raw waits (a
/// thread-local of its own, destroyed first because first used later)
/// gone, and panic inside `recv`: an abort.
fn wait_in_tls_destructor() {
    eventlet::monkey_patch();
    std::thread::spawn(|| {
        eventlet::yield_now(); // this thread's hub, first
        let (mine, theirs) = UnixStream::pair().unwrap();
        LAST.with(|l| *l.borrow_mut() = Some(ReadsOnDrop(mine)));
        // A patched wait after that: the table of raw waits is first
        // used now, after the thread-local above.
        let (mut a, b) = UnixStream::pair().unwrap();
        let writer = eventlet::spawn(move || {
            eventlet::sleep(Duration::from_millis(5));
            (&b).write_all(b"x").unwrap();
            b
        });
        a.read_exact(&mut [0u8; 1]).unwrap();
        drop(writer.join().unwrap());
        // The goodbye comes from a plain thread once this one is exiting.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            (&theirs).write_all(b"y").unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
    })
    .join()
    .unwrap();
}

#[test]
fn a_patched_wait_in_a_thread_local_destructor_does_not_abort() {
    let stderr = child_ok("wait-in-tls-destructor");
    assert!(stderr.contains("the thread-local's destructor read its byte"), "{stderr}");
}
