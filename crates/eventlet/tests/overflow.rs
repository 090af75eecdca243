//! A green thread that overflows its stack kills the process with a message
//! naming it and its stack size (run in a child process); a pool's stack
//! size is the one its green threads get.

mod util;

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
    let (status, stderr) = util::run_child_test("overflow_child", &[("EVENTLET_OVERFLOW_CHILD", "1")]);
    assert!(!status.success(), "the child survived: {stderr}");
    assert!(
        stderr.contains("green thread deep-recursion") && stderr.contains("overflowed its stack"),
        "stderr: {stderr}"
    );
}

/// Recurses until `bytes` of stack below `top` are in use.
fn use_stack(top: usize, bytes: usize) -> u8 {
    let buf = std::hint::black_box([1u8; 256]);
    if top - buf.as_ptr() as usize >= bytes {
        return buf[0];
    }
    use_stack(top, bytes).wrapping_add(buf[1])
}

/// Uses 128 KiB of the running green thread's stack.
fn use_128_kib() -> u8 {
    let top = std::hint::black_box(0u8);
    use_stack(&top as *const u8 as usize, 128 * 1024)
}

#[test]
fn pool_overflow_child() {
    if std::env::var_os("EVENTLET_POOL_OVERFLOW_CHILD").is_none() {
        return; // only runs as the child of the test below
    }
    let big = eventlet::GreenPool::new(2).with_stack_size(256 * 1024);
    big.spawn(use_128_kib).join().unwrap();
    eprintln!("128 KiB fit in the 256 KiB pool");
    let small = eventlet::GreenPool::new(2).with_stack_size(64 * 1024);
    let _ = small
        .spawn(|| {
            eprintln!("small pool green thread id {}", eventlet::current().id());
            use_128_kib()
        })
        .join();
    unreachable!("the overflow aborts the process");
}

#[test]
fn a_pool_with_a_small_stack_size_runs_on_small_stacks() {
    let (status, stderr) = util::run_child_test("pool_overflow_child", &[("EVENTLET_POOL_OVERFLOW_CHILD", "1")]);
    assert!(!status.success(), "the child survived: {stderr}");
    assert!(stderr.contains("128 KiB fit in the 256 KiB pool"), "stderr: {stderr}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("small pool green thread id "))
        .unwrap_or_else(|| panic!("no id in stderr: {stderr}"));
    assert!(stderr.contains(&format!("(id {id}) overflowed its stack of {} bytes", 64 * 1024)), "stderr: {stderr}");
}
