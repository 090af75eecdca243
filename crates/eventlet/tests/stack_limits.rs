//! How stacks are guarded, and when the kernel refuses more stacks, the
//! error names the limit that was hit and how to raise it. Each limit case
//! runs in a child process, which lowers its own limits.

mod util;

/// Spawns parked green threads until spawning fails; prints the error.
fn spawn_until_refused(max: usize) {
    let mut handles = Vec::new();
    for i in 0..max {
        match eventlet::Builder::new().spawn(eventlet::park) {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("refused after {i}: kind={:?}: {e}", e.kind());
                std::process::exit(3);
            }
        }
    }
    eprintln!("never refused");
    std::process::exit(4);
}

#[test]
fn child() {
    match std::env::var("EVENTLET_LIMIT_CHILD").as_deref() {
        Ok("address-space") => {
            let lim = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
            // SAFETY: setrlimit only reads `lim`.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
            spawn_until_refused(1_000_000);
        }
        Ok("map-count") => spawn_until_refused(200_000),
        Ok("guard-mode") => {
            eventlet::spawn(|| ()).join().unwrap();
            eprintln!("guard mode: {:?}", eventlet::hub::guard_mode());
        }
        _ => {} // only runs as a child of the tests below
    }
}

fn run_child(case: &str, extra_env: &[(&str, &str)]) -> String {
    let env: Vec<_> = [("EVENTLET_LIMIT_CHILD", case)].into_iter().chain(extra_env.iter().copied()).collect();
    let (status, stderr) = util::run_child_test("child", &env);
    assert_eq!(status.code(), Some(3), "child did not hit a limit: {stderr}");
    stderr
}

#[test]
fn address_space_exhaustion_is_explained() {
    let err = run_child("address-space", &[]);
    assert!(err.contains("kind=OutOfMemory"), "{err}");
    assert!(err.contains("out of memory or address space") && err.contains("RLIMIT_AS"), "{err}");
}

#[test]
fn map_count_exhaustion_with_mprotect_guards_is_explained() {
    let max: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap().trim().parse().unwrap();
    if max > 150_000 {
        eprintln!("vm.max_map_count is {max}: too high to reach in this test; skipped");
        return;
    }
    let err = run_child("map-count", &[("EVENTLET_STACK_GUARD", "mprotect")]);
    assert!(err.contains("kind=OutOfMemory"), "{err}");
    assert!(err.contains("vm.max_map_count") && err.contains("sysctl -w vm.max_map_count="), "{err}");
}

/// The running kernel's (major, minor) version.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn guard_pages_use_madvise_on_linux_6_13_and_later() {
    if std::env::var_os("EVENTLET_STACK_GUARD").is_some() {
        eprintln!("EVENTLET_STACK_GUARD is set for this process; skipped");
        return;
    }
    eventlet::spawn(|| ()).join().unwrap(); // a stack, so the kernel was asked
    let (major, minor) = kernel_version();
    let mode = eventlet::hub::guard_mode();
    if (major, minor) >= (6, 13) {
        assert_eq!(mode, eventlet::hub::GuardMode::Madvise, "kernel {major}.{minor}");
    } else {
        // Mprotect, unless the kernel has the feature backported.
        assert_ne!(mode, eventlet::hub::GuardMode::Unknown, "kernel {major}.{minor}");
    }
}

#[test]
fn eventlet_stack_guard_mprotect_forces_mprotect_guards() {
    let env = [("EVENTLET_LIMIT_CHILD", "guard-mode"), ("EVENTLET_STACK_GUARD", "mprotect")];
    let (status, stderr) = util::run_child_test("child", &env);
    assert!(status.success(), "child failed: {stderr}");
    assert!(stderr.contains("guard mode: Mprotect"), "{stderr}");
}
