//! Instruction and system-call counts behind the "patched std::net at most
//! 1.1x eventlet::net on a ready socket" goal: `N` rounds of a 64-byte
//! write and a 64-byte read over a loopback TCP pair, on a green thread,
//! with eventlet's sockets or with std's under the patch.
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=cg.out BINARY eventlet 100000
//! valgrind --tool=callgrind --callgrind-out-file=cg.out BINARY std 100000
//! strace -c -f BINARY std 100000
//! ```
//!
//! It prints the wall-clock time per round too (noisy on a shared machine).

use std::io::{Read, Write};
use std::time::Instant;

fn rounds(mut a: impl Write, mut b: impl Read, n: u64) {
    let out = [7u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..n {
        a.write_all(&out).unwrap();
        b.read_exact(&mut back).unwrap();
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "std".into());
    let n: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    eventlet::monkey_patch();
    let took = eventlet::spawn(move || {
        let start;
        if mode == "eventlet" {
            let l = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let a = eventlet::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (b, _) = l.accept().unwrap();
            a.set_nodelay(true).unwrap();
            start = Instant::now();
            rounds(&a, &b, n);
        } else {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (b, _) = l.accept().unwrap();
            a.set_nodelay(true).unwrap();
            start = Instant::now();
            rounds(&a, &b, n);
        }
        start.elapsed()
    })
    .join()
    .unwrap();
    println!("{:.1} ns per round", took.as_nanos() as f64 / n as f64);
}
