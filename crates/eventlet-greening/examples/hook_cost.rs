//! Instruction counts behind the "at most 5 ns more off green threads"
//! goal: `N` calls of `poll` with no descriptors, through the binary's
//! patched `poll` or straight to libc's, on a thread without a hub.
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=cg.%p cargo-built-binary patched 1000000
//! valgrind --tool=callgrind ... libc 1000000
//! valgrind --tool=callgrind ... off 1000000      # the feature linked, monkey_patch() not called
//! ```
//!
//! The difference of the totals, divided by N, is what the patch adds per
//! call (the kernel's share is not counted by callgrind, and is the same).

type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, libc::c_int) -> libc::c_int;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "patched".into());
    let n: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    if mode != "off" {
        eventlet::monkey_patch();
    }
    let name = c"poll";
    // SAFETY: dlsym with a valid name: libc's poll.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    // SAFETY: poll's C signature.
    let orig: PollFn = unsafe { std::mem::transmute::<*mut libc::c_void, PollFn>(p) };
    // A plain thread: no hub, as "off any green thread" means.
    let t = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut sum = 0;
        for _ in 0..n {
            // SAFETY: no descriptors, no wait.
            sum += unsafe {
                if mode == "libc" {
                    orig(std::ptr::null_mut(), 0, 0)
                } else {
                    libc::poll(std::ptr::null_mut(), 0, 0)
                }
            };
        }
        if n > 0 {
            println!("{:.2} ns per call", start.elapsed().as_nanos() as f64 / n as f64);
        }
        sum
    });
    assert_eq!(t.join().unwrap(), 0);
}
