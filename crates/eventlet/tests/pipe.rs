//! Green pipes: reads and writes park only their green thread; a pipe
//! closes one end at a time; a descriptor taken over (a child's standard
//! stream, an `eventfd`) is made non-blocking and waits through the hub;
//! timeouts, kills and moves between OS threads leave nothing behind.

mod util;

use std::cell::Cell;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::pipe::{pipe, GreenPipe};
use eventlet::Killed;
use util::{assert_clean, ms};

/// Whether `fd` has `O_NONBLOCK` set.
fn nonblocking(fd: &impl AsRawFd) -> bool {
    // SAFETY: F_GETFL on an open descriptor; no argument.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0);
    flags & libc::O_NONBLOCK != 0
}

/// A green thread that counts ticks every millisecond until killed: it
/// runs only if the hub is not blocked.
fn ticker() -> (eventlet::JoinHandle<()>, Rc<Cell<u32>>) {
    let ticks = Rc::new(Cell::new(0));
    let t = ticks.clone();
    let h = eventlet::spawn(move || loop {
        eventlet::sleep(ms(1));
        t.set(t.get() + 1);
    });
    (h, ticks)
}

#[test]
fn a_read_waits_for_the_writer_without_blocking_the_hub() {
    let (mut r, w) = pipe().unwrap();
    assert!(nonblocking(&r) && nonblocking(&w));
    let (tick, ticks) = ticker();
    // The writer writes once the ticker has ticked five times (not after a
    // fixed sleep: on a stalled machine its sleep and the ticker's came due
    // in one turn, and the read ended after one tick). It runs, and the
    // ticker ticks, only if the waiting read lets the hub run others; what
    // it saw says the read was parked in the hub.
    let t = ticks.clone();
    let writer = eventlet::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.get() < 5 && Instant::now() < deadline {
            eventlet::sleep(ms(1));
        }
        let io_waiters = eventlet::hub::stats().io_waiters;
        (&w).write_all(b"late").unwrap();
        (w, io_waiters)
    });
    let mut buf = [0; 4];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"late");
    assert!(ticks.get() >= 5, "the hub ran others while the read waited ({} ticks)", ticks.get());
    let (w, io_waiters) = writer.join().unwrap();
    assert_eq!(io_waiters, 1, "the read waited in the hub");
    drop(w);
    tick.kill();
    assert_clean();
}

#[test]
fn closing_the_writer_gives_the_reader_what_is_left_then_end_of_file() {
    let (r, mut w) = pipe().unwrap();
    w.write_all(b"last words").unwrap();
    drop(w);
    let mut s = String::new();
    BufReader::new(&r).read_to_string(&mut s).unwrap();
    assert_eq!(s, "last words");
    assert_eq!((&r).read(&mut [0; 8]).unwrap(), 0, "end of file, again");
    assert_clean();
}

#[test]
fn closing_the_reader_breaks_the_pipe_for_the_writer_even_one_waiting() {
    // A writer that waits (the pipe is full) when the reader goes away.
    let (r, w) = pipe().unwrap();
    let writer = eventlet::spawn(move || {
        let chunk = [7u8; 4096];
        loop {
            if let Err(e) = (&w).write_all(&chunk) {
                return e.kind();
            }
        }
    });
    eventlet::sleep(ms(5));
    assert!(!writer.is_finished(), "the writer waits on the full pipe");
    assert_eq!(eventlet::hub::stats().io_waiters, 1);
    drop(r);
    assert_eq!(writer.join().unwrap(), ErrorKind::BrokenPipe);
    assert_clean();
}

#[test]
fn buffered_lines_split_on_newlines_whatever_the_chunks() {
    let (r, w) = pipe().unwrap();
    let writer = eventlet::spawn(move || {
        for chunk in [&b"li"[..], b"ne 1\nline", b" 2\r\n", b"\nlast"] {
            (&w).write_all(chunk).unwrap();
            eventlet::sleep(ms(2));
        }
    });
    let mut lines = Vec::new();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line);
    }
    assert_eq!(lines, ["line 1\n", "line 2\r\n", "\n", "last"]);
    writer.join().unwrap();
    assert_clean();
}

#[test]
fn a_child_process_pipe_taken_over_is_made_non_blocking_and_waits_green() {
    let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let stdin = OwnedFd::from(child.stdin.take().unwrap());
    let stdout = OwnedFd::from(child.stdout.take().unwrap());
    assert!(!nonblocking(&stdin), "std's pipes block");
    let (mut to_cat, from_cat) = (GreenPipe::from(stdin), GreenPipe::from(stdout));
    assert!(nonblocking(&to_cat) && nonblocking(&from_cat));
    // A green thread that counts its turns: it runs each time the writes
    // below wait green (a sleeping ticker may see no tick come due if the
    // whole transfer is fast).
    let turns = Rc::new(Cell::new(0u32));
    let t = turns.clone();
    let tick = eventlet::spawn(move || loop {
        t.set(t.get() + 1);
        eventlet::yield_now();
    });
    let reader = eventlet::spawn(move || {
        let mut out = Vec::new();
        BufReader::new(from_cat).read_to_end(&mut out).unwrap();
        out
    });
    // 1 MiB through cat: far more than a pipe holds, so both sides wait.
    let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    to_cat.write_all(&data).unwrap();
    drop(to_cat);
    assert_eq!(reader.join().unwrap(), data);
    assert!(child.wait().unwrap().success());
    assert!(turns.get() > 0, "nothing else ran while the pipes waited");
    tick.kill();
    assert_clean();
}

#[test]
fn a_descriptor_goes_out_and_comes_back() {
    let (r, w) = pipe().unwrap();
    let raw = r.into_raw_fd();
    // SAFETY: `raw` was just given up by the pipe end and is owned by no one.
    let r = unsafe { GreenPipe::from_raw_fd(raw) };
    assert_eq!(r.as_raw_fd(), raw);
    let owned = OwnedFd::from(w);
    let mut w = GreenPipe::from(owned);
    let reader = eventlet::spawn(move || {
        let mut buf = [0; 5];
        (&r).read_exact(&mut buf).unwrap();
        (buf, r)
    });
    eventlet::yield_now(); // it waits in the reactor
    w.write_all(b"again").unwrap();
    let (buf, r) = reader.join().unwrap();
    assert_eq!(&buf, b"again");
    // A clone is a second handle: the pipe's end closes with the last.
    let w2 = w.try_clone().unwrap();
    drop(w);
    (&w2).write_all(b"!").unwrap();
    drop(w2);
    let mut rest = Vec::new();
    (&r).read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"!");
    assert_clean();
}

#[test]
fn read_and_write_timeouts_fail_with_timed_out_and_leave_nothing() {
    let (r, w) = pipe().unwrap();
    r.set_read_timeout(Some(ms(10))).unwrap();
    assert_eq!(r.read_timeout().unwrap(), Some(ms(10)));
    let started = Instant::now();
    assert_eq!((&r).read(&mut [0; 1]).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(started.elapsed() >= ms(10));
    assert!(r.set_read_timeout(Some(Duration::ZERO)).is_err(), "std's rule");
    w.set_write_timeout(Some(ms(10))).unwrap();
    let e = loop {
        if let Err(e) = (&w).write_all(&[0; 4096]) {
            break e;
        }
    };
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let s = eventlet::hub::stats();
    assert_eq!((s.io_waiters, s.timers), (0, 0));
    assert_clean();
}

#[test]
fn a_killed_reader_leaves_no_waiter_and_the_data_for_the_next() {
    let (r, mut w) = pipe().unwrap();
    let r = Rc::new(r);
    let r2 = r.clone();
    let doomed = eventlet::spawn(move || (&*r2).read(&mut [0; 4]).map(|_| ()));
    eventlet::yield_now();
    assert_eq!(eventlet::hub::stats().io_waiters, 1);
    doomed.kill();
    assert!(doomed.join().unwrap_err().is::<Killed>());
    assert_eq!(eventlet::hub::stats().io_waiters, 0);
    w.write_all(b"data").unwrap();
    let mut buf = [0; 4];
    (&*r).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"data");
    assert_clean();
}

#[test]
fn a_reader_and_a_writer_share_one_descriptor() {
    // A FIFO opened for reading and writing: one descriptor, two green
    // threads using `&GreenPipe` at once.
    let dir = std::env::temp_dir().join(format!("eventlet-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let fifo = std::fs::OpenOptions::new().read(true).write(true).open(&dir).unwrap();
    std::fs::remove_file(&dir).unwrap();
    let p = Rc::new(GreenPipe::from(fifo));
    let p2 = p.clone();
    let reader = eventlet::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0; 100];
        while got.len() < 300_000 {
            let n = (&*p2).read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        got.len()
    });
    for _ in 0..3000 {
        (&*p).write_all(&[1; 100]).unwrap();
    }
    assert_eq!(reader.join().unwrap(), 300_000);
    assert_clean();
}

#[test]
fn a_descriptor_whose_reads_stop_short_is_tried_before_waiting() {
    // An eventfd in semaphore mode: each read takes 1 and returns 8 bytes
    // however many remain (not a byte stream), waiting through the hub
    // while the count is 0.
    // SAFETY: eventfd takes an initial count and flags.
    let fd = unsafe { libc::eventfd(0, libc::EFD_SEMAPHORE | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` is new and owned by nothing else.
    let mut efd = unsafe { GreenPipe::from_raw_fd(fd) };
    assert!(nonblocking(&efd));
    let waiter = {
        let efd = efd.try_clone().unwrap();
        eventlet::spawn(move || {
            let mut got = 0;
            for _ in 0..3 {
                let mut buf = [0u8; 64];
                assert_eq!((&efd).read(&mut buf).unwrap(), 8);
                got += u64::from_ne_bytes(buf[..8].try_into().unwrap());
            }
            got
        })
    };
    eventlet::yield_now(); // it waits: the count is 0
    efd.write_all(&3u64.to_ne_bytes()).unwrap();
    assert_eq!(waiter.join().unwrap(), 3, "three reads of 1, none waiting for an edge that never comes");
    efd.set_read_timeout(Some(ms(5))).unwrap();
    assert_eq!(efd.read(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_clean();
}

#[test]
fn a_pipe_moved_to_another_os_thread_waits_through_that_threads_hub() {
    let (r, w) = pipe().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        BufReader::new(r).read_line(&mut s).unwrap();
        s
    });
    std::thread::sleep(ms(20));
    (&w).write_all(b"across\n").unwrap();
    assert_eq!(t.join().unwrap(), "across\n");
}

#[test]
fn a_terminal_that_returns_a_line_per_read_is_tried_before_waiting() {
    // A pseudo-terminal in canonical mode returns one line per read, however
    // many are waiting: a short read does not mean there is nothing left.
    // SAFETY: posix_openpt with flags; grantpt/unlockpt/ptsname_r on the
    // master it returned, with a buffer of the size given.
    let (master, slave_path) = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            let e = std::io::Error::last_os_error();
            eprintln!("SKIPPED a_terminal_that_returns_a_line_per_read_is_tried_before_waiting: no pseudo-terminal here ({e})");
            return;
        }
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        (OwnedFd::from_raw_fd(m), std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_owned())
    };
    let slave = std::fs::OpenOptions::new().read(true).write(true).open(&slave_path).unwrap();
    let mut master = GreenPipe::from(master);
    let slave = GreenPipe::from(slave);
    let reader = eventlet::spawn(move || {
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut buf = [0u8; 64];
            let n = (&slave).read(&mut buf).unwrap();
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        lines
    });
    eventlet::yield_now(); // the reader waits in the reactor
    master.write_all(b"one\ntwo\nthree\n").unwrap();
    let lines = eventlet::with_timeout(Duration::from_secs(5), || reader.join().unwrap());
    assert_eq!(lines.expect("a read waited for an edge that never comes"), ["one\n", "two\n", "three\n"]);
    assert_clean();
}
