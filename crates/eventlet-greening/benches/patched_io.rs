//! What the patch costs. Two goals:
//!
//! - a patched `std::net` write and read on a ready socket, on a green
//!   thread, costs at most 1.1x the same with `eventlet::net`;
//! - a patched call made off any green thread costs at most 5 ns more than
//!   the unpatched (libc's own) call.
//!
//! `cargo bench -p eventlet-greening`; the instruction counts behind the
//! second goal come from `examples/hook_cost.rs` under callgrind.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

const MSG: usize = 64;

/// A connected pair of std TCP streams on loopback.
fn std_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// The same with eventlet's green sockets.
fn green_pair() -> (eventlet::net::TcpStream, eventlet::net::TcpStream) {
    let l = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = eventlet::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// `iters` rounds of a 64-byte write on `a` and a 64-byte read on `b`.
fn rounds(mut a: impl Write, mut b: impl Read, iters: u64) -> Duration {
    let out = [7u8; MSG];
    let mut back = [0u8; MSG];
    let start = Instant::now();
    for _ in 0..iters {
        a.write_all(&out).unwrap();
        b.read_exact(&mut back).unwrap();
    }
    start.elapsed()
}

fn ready_socket(c: &mut Criterion) {
    eventlet::monkey_patch();
    let mut g = c.benchmark_group("ready_socket_write_read_64B");
    g.bench_function("eventlet::net on a green thread", |b| {
        b.iter_custom(|iters| {
            eventlet::spawn(move || {
                let (x, y) = green_pair();
                rounds(&x, &y, iters)
            })
            .join()
            .unwrap()
        })
    });
    g.bench_function("std::net patched on a green thread", |b| {
        b.iter_custom(|iters| {
            eventlet::spawn(move || {
                let (x, y) = std_pair();
                rounds(&x, &y, iters)
            })
            .join()
            .unwrap()
        })
    });
    g.bench_function("std::net on a plain thread (patch passes through)", |b| {
        b.iter_custom(|iters| {
            std::thread::spawn(move || {
                let (x, y) = std_pair();
                rounds(&x, &y, iters)
            })
            .join()
            .unwrap()
        })
    });
    g.finish();
}

type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, libc::c_int) -> libc::c_int;
type RecvFn = unsafe extern "C" fn(libc::c_int, *mut libc::c_void, libc::size_t, libc::c_int) -> libc::ssize_t;

fn original<F>(name: &str) -> F {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: dlsym with a valid name; the next definition after this
    // binary's is libc's.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    assert!(!p.is_null());
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut libc::c_void>());
    // SAFETY: `F` is the function's C signature (checked by the callers'
    // types), and pointers and function pointers have one size here.
    unsafe { std::mem::transmute_copy(&p) }
}

fn off_green_threads(c: &mut Criterion) {
    eventlet::monkey_patch();
    let orig_poll: PollFn = original("poll");
    let orig_recv: RecvFn = original("recv");
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    use std::os::fd::AsRawFd;
    let fd = a.as_raw_fd();
    let mut g = c.benchmark_group("one_call_off_green_threads");
    // poll with nothing to wait for: the cheapest real system call here.
    g.bench_function("poll(0 fds): libc's", |b| {
        // SAFETY: no descriptors, no wait.
        b.iter(|| unsafe { orig_poll(std::ptr::null_mut(), 0, 0) })
    });
    g.bench_function("poll(0 fds): patched", |b| {
        // SAFETY: as above, through the binary's patched poll.
        b.iter(|| unsafe { libc::poll(std::ptr::null_mut(), 0, 0) })
    });
    // recv on a socket with nothing to read, MSG_DONTWAIT: EAGAIN.
    let mut buf = [0u8; 16];
    g.bench_function("recv(EAGAIN): libc's", |b| {
        // SAFETY: a valid buffer.
        b.iter(|| unsafe { orig_recv(fd, buf.as_mut_ptr().cast(), 16, libc::MSG_DONTWAIT) })
    });
    g.bench_function("recv(EAGAIN): patched", |b| {
        // SAFETY: a valid buffer.
        b.iter(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), 16, libc::MSG_DONTWAIT) })
    });
    g.finish();
}

criterion_group!(benches, ready_socket, off_green_threads);
criterion_main!(benches);
