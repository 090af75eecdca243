//! The console survives running out of file descriptors (a flood of
//! clients): it backs off and answers once descriptors are free again.
//!
//! Its own test binary: it lowers this process's descriptor limit.

use std::io::Read;
use std::time::{Duration, Instant};

mod util;

#[test]
fn console_backs_off_on_emfile_and_recovers() {
    let listener = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A client waits in the backlog before the console accepts anything.
    let first = eventlet::connect(addr).unwrap();

    // Lower the limit and use up every descriptor left.
    let hog = util::FdsUsedUp::now();

    let console = eventlet::spawn(move || eventlet::backdoor::serve(listener));
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(100) {
        eventlet::sleep(Duration::from_millis(5));
    }
    assert!(!console.is_finished(), "the console gave up on EMFILE: {:?}", console.join());

    hog.give_back();
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut prompt = [0u8; 8];
    (&first).read_exact(&mut prompt).expect("the console answers once descriptors are free");
    assert_eq!(&prompt, b"eventlet");
    console.kill();
}
