//! The console survives running out of file descriptors (a flood of
//! clients): it backs off and answers once descriptors are free again.
//!
//! Its own test binary: it lowers this process's descriptor limit.

use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn console_backs_off_on_emfile_and_recovers() {
    let listener = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A client waits in the backlog before the console accepts anything.
    let first = eventlet::connect(addr).unwrap();

    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let saved = lim;
    lim.rlim_cur = (open_fds() + 16) as libc::rlim_t;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut hog = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        hog.push(f);
    }

    let console = eventlet::spawn(move || eventlet::backdoor::serve(listener));
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(100) {
        eventlet::sleep(Duration::from_millis(5));
    }
    assert!(!console.is_finished(), "the console gave up on EMFILE: {:?}", console.join());

    drop(hog);
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut prompt = [0u8; 8];
    (&first).read_exact(&mut prompt).expect("the console answers once descriptors are free");
    assert_eq!(&prompt, b"eventlet");
    console.kill();
}
