//! A green thread that overflows its stack kills the process with a message
//! naming it (run in a child process).

use std::process::Command;

fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n; 64]);
    if n == u64::MAX {
        return 0;
    }
    recurse(n + 1) + buf[3]
}

#[test]
fn overflow_child() {
    if std::env::var_os("EVENTLET_OVERFLOW_CHILD").is_none() {
        return; // only runs as the child of the test below
    }
    let h = eventlet::Builder::new().name("deep-recursion").stack_size(64 * 1024).spawn(|| recurse(0)).unwrap();
    let _ = h.join();
    unreachable!("the overflow aborts the process");
}

#[test]
fn stack_overflow_names_the_green_thread() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "overflow_child", "--nocapture", "--test-threads=1"])
        .env("EVENTLET_OVERFLOW_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child survived: {stderr}");
    assert!(
        stderr.contains("green thread deep-recursion") && stderr.contains("overflowed its stack"),
        "stderr: {stderr}"
    );
}
