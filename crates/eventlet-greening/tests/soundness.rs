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
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

/// Runs the child case `case` of this binary's `child` test; how it ended
/// and its stderr.
fn child_run(case: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("EVENTLET_GREENING_CHILD", case)
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs the child case `case` and returns its stderr, asserting that it
/// exited with success.
fn child_ok(case: &str) -> String {
    let (status, stderr) = child_run(case);
    assert!(status.success(), "child case {case} failed ({status}): {stderr}");
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
        "signal-handler-installed-after" => signal_handler(false),
        "signal-handler-installed-before" => signal_handler(true),
        "print-from-two-green-threads" => print_from_two_green_threads(),
        "number-of-a-closed-eventlet-socket" => number_of_a_closed_eventlet_socket(),
        "errno-across-a-budget-yield" => errno_across_a_budget_yield(),
        "select-on-a-short-bitmap" => select_on_a_short_bitmap(),
        "sendmsg-iovlen-beyond-32-bits" => sendmsg_iovlen_beyond_32_bits(),
        "errno-after-closing-calls" => errno_after_closing_calls(),
        "stale-pipe-kind-on-an-uncached-file" => stale_pipe_kind_on_an_uncached_file(),
        "stale-pipe-kind-on-a-non-blocking-file" => stale_pipe_kind_on_a_non_blocking_file(),
        "stale-pipe-kind-on-a-proc-file" => stale_pipe_kind_on_a_proc_file(),
        "number-of-a-pclosed-pipe" => number_of_a_pclosed_pipe(),
        "number-replaced-by-freopen" => number_replaced_by_freopen(),
        "named-fifo-leaves-pipes-green" => named_fifo_leaves_pipes_green(),
        "accept-on-what-does-not-listen" => accept_on_what_does_not_listen(),
        "green-overflow" => overflow(true),
        "thread-overflow" => overflow(false),
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

/// A pipe: its read and write ends.
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills in two new descriptors, which we then own.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1]))
    }
}

/// Spends this green thread's whole I/O budget with patched socket I/O
/// that never blocks: its next patched socket or pipe call yields.
fn spend_the_budget() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    for _ in 0..eventlet::hub::BUDGET / 2 {
        a.write_all(b"x").unwrap();
        b.read_exact(&mut [0u8; 1]).unwrap();
    }
}

static OTHER_RAN: AtomicUsize = AtomicUsize::new(0);
static SWITCHED_IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
static HANDLED: AtomicUsize = AtomicUsize::new(0);
static SELF_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The self-pipe idiom (ctrlc's handler, signal-hook's for a pipe): one
/// `write` to a non-blocking pipe. It notes whether another green thread
/// ran meanwhile.
extern "C" fn self_pipe_handler(_: libc::c_int) {
    let before = OTHER_RAN.load(Ordering::SeqCst);
    // SAFETY: write(2) of a static byte: async-signal-safe.
    unsafe { libc::write(SELF_PIPE.load(Ordering::SeqCst), b"!".as_ptr().cast(), 1) };
    if OTHER_RAN.load(Ordering::SeqCst) != before {
        SWITCHED_IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    }
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// The same, in the three-argument form.
extern "C" fn self_pipe_handler_info(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    self_pipe_handler(sig);
}

/// The action installed for SIGUSR1 now, as `sigaction` reports it.
fn current_action() -> libc::sigaction {
    // SAFETY: a query into a zeroed action.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut old), 0);
        old
    }
}

/// A signal handler that calls a patched function while a green thread
/// runs: the patched `write` of a green thread with no budget left yielded,
/// and other green threads ran inside the handler, on top of the code it
/// interrupted (which may hold the hub's state half changed, or `malloc`'s
/// lock). Handlers run with the patch off on their thread now, whether
/// they were installed before `monkey_patch` or after, and `sigaction`
/// still reports the user's handler.
fn signal_handler(installed_before: bool) {
    let (r, w) = pipe();
    // SAFETY: fcntl on our own pipe.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    SELF_PIPE.store(w.as_raw_fd(), Ordering::SeqCst);
    let expected = if installed_before {
        // SAFETY: a handler that only writes a byte (async-signal-safe).
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = self_pipe_handler_info as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            assert_eq!(libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut()), 0);
        }
        eventlet::monkey_patch();
        self_pipe_handler_info as *const () as libc::sighandler_t
    } else {
        eventlet::monkey_patch();
        let h = self_pipe_handler as *const () as libc::sighandler_t;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::signal(libc::SIGUSR1, h) }, libc::SIG_DFL);
        h
    };
    let a = eventlet::spawn(|| {
        spend_the_budget();
        // SAFETY: raise runs the handler on this thread before it returns.
        unsafe { libc::raise(libc::SIGUSR1) };
    });
    let b = eventlet::spawn(|| OTHER_RAN.fetch_add(1, Ordering::SeqCst));
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(HANDLED.load(Ordering::SeqCst), 1);
    assert_eq!(SWITCHED_IN_HANDLER.load(Ordering::SeqCst), 0, "a green thread ran inside the signal handler");
    let mut byte = [0u8; 1];
    (&r).read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"!");
    // The handler is reported, not the patch's wrapper, with its form.
    let old = current_action();
    assert_eq!(old.sa_sigaction, expected);
    assert_eq!(old.sa_flags & libc::SA_SIGINFO != 0, installed_before);
    // SAFETY: back to the default action.
    assert_eq!(unsafe { libc::signal(libc::SIGUSR1, libc::SIG_DFL) }, expected);
    assert_eq!(current_action().sa_sigaction, libc::SIG_DFL);
}

#[test]
fn a_signal_handler_installed_after_the_patch_runs_with_it_off() {
    child_ok("signal-handler-installed-after");
}

#[test]
fn a_signal_handler_installed_before_the_patch_runs_with_it_off() {
    child_ok("signal-handler-installed-before");
}

fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n; 64]);
    if n == u64::MAX {
        return 0;
    }
    recurse(n + 1) + buf[3]
}

/// A stack overflow with the patch on: the SIGSEGV handlers (eventlet's
/// for green threads, std's for OS threads) run behind the patch's
/// wrapper, on the alternate stack, and still report it.
fn overflow(green: bool) {
    eventlet::monkey_patch();
    if green {
        let h = eventlet::Builder::new().name("deep").stack_size(64 * 1024).spawn(|| recurse(0)).unwrap();
        let _ = h.join();
    } else {
        let t = std::thread::Builder::new().name("deep-os-thread".into()).stack_size(256 * 1024);
        let _ = t.spawn(|| recurse(0)).unwrap().join();
    }
    unreachable!("the overflow aborts the process");
}

#[test]
fn stack_overflows_are_still_reported_with_the_patch_on() {
    let (status, stderr) = child_run("green-overflow");
    assert!(!status.success(), "the child survived: {stderr}");
    assert!(stderr.contains("green thread deep") && stderr.contains("overflowed its stack"), "{stderr}");
    let (status, stderr) = child_run("thread-overflow");
    assert!(!status.success(), "the child survived: {stderr}");
    assert!(stderr.contains("'deep-os-thread'") && stderr.contains("has overflowed its stack"), "{stderr}");
}

/// Two green threads printing while standard output and error are pipes
/// (as under a supervisor, `| tee`, or journald's socket): the first one's
/// patched `write` yielded inside `println!` (its I/O budget was spent),
/// the second one's `println!` entered std's reentrant stdout lock on the
/// same OS thread and panicked ("RefCell already borrowed"). Writes to
/// descriptors 1 and 2 are the originals now.
fn print_from_two_green_threads() {
    eventlet::monkey_patch();
    for (out, err) in [(true, false), (false, true)] {
        let first = eventlet::spawn(move || {
            spend_the_budget();
            if out {
                println!("the first green thread prints");
            }
            if err {
                eprintln!("the first green thread prints");
            }
        });
        let second = eventlet::spawn(move || {
            if out {
                println!("the second green thread prints");
            }
            if err {
                eprintln!("the second green thread prints");
            }
        });
        first.join().unwrap();
        second.join().unwrap();
    }
}

#[test]
fn green_threads_print_to_piped_stdout_and_stderr_without_panicking() {
    let stderr = child_ok("print-from-two-green-threads");
    assert!(stderr.contains("the second green thread prints"), "{stderr}");
}

/// An eventlet socket closed before `monkey_patch`: its number stayed
/// marked as eventlet's own (the closing calls forgot kinds only with the
/// patch on), so a blocking std socket that got the number later had its
/// patched calls go straight to the originals: its read blocked the hub,
/// and the green thread that would have written never ran (a deadlock,
/// ended here by the alarm).
fn number_of_a_closed_eventlet_socket() {
    eventlet::yield_now(); // the hub first: its descriptors are not reused
    let l = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let number = l.as_raw_fd();
    drop(l);
    eventlet::monkey_patch();
    let (mut a, mut b) = UnixStream::pair().unwrap();
    assert_eq!(a.as_raw_fd(), number, "the lowest free number is reused");
    let reader = eventlet::spawn(move || a.read_exact(&mut [0u8; 1]).unwrap());
    let writer = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(10));
        b.write_all(b"x").unwrap();
    });
    reader.join().unwrap();
    writer.join().unwrap();
}

#[test]
fn a_socket_reusing_the_number_of_an_eventlet_socket_closed_before_the_patch_is_green() {
    child_ok("number-of-a-closed-eventlet-socket");
}

fn errno() -> i32 {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: i32) {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = e }
}

/// A patched call that succeeds leaves `errno` as it was, also when it
/// yielded for the I/O budget first: `errno` belongs to the OS thread, and
/// the green threads that ran during the yield left theirs in it (a
/// successful `read` then came back with another green thread's errno).
fn errno_across_a_budget_yield() {
    eventlet::monkey_patch();
    let (a, b) = UnixStream::pair().unwrap();
    (&b).write_all(b"xy").unwrap();
    let first = eventlet::spawn(move || {
        spend_the_budget();
        set_errno(libc::EXDEV);
        let mut buf = [0u8; 1];
        // SAFETY: a read into our buffer.
        let n = unsafe { libc::read(a.as_raw_fd(), buf.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 1);
        assert_eq!(errno(), libc::EXDEV, "errno after a read that yielded and succeeded");
        set_errno(libc::EXDEV);
        // SAFETY: as above.
        let n = unsafe { libc::recv(a.as_raw_fd(), buf.as_mut_ptr().cast(), 1, 0) };
        assert_eq!(n, 1);
        assert_eq!(errno(), libc::EXDEV, "errno after a recv that succeeded");
    });
    let other = eventlet::spawn(|| set_errno(libc::ENOENT));
    first.join().unwrap();
    other.join().unwrap();
}

#[test]
fn errno_is_kept_across_the_yield_of_a_spent_budget() {
    child_ok("errno-across-a-budget-yield");
}

/// `select` on a bitmap as short as its `n` needs (one word for
/// descriptors below 64), as the kernel allows: the patched `select`
/// copied and wrote back a whole 128-byte `fd_set`, reading and writing
/// past the caller's bitmap. Here the bitmap ends where a page without
/// access begins, so that showed as a segmentation fault.
fn select_on_a_short_bitmap() {
    eventlet::monkey_patch();
    let (a, b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    assert!(fd < 64, "{fd}");
    let page = 4096;
    // SAFETY: a fresh anonymous mapping of two pages, the second made
    // inaccessible; the bitmap is the last 8 bytes of the first.
    let bits = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(libc::mprotect(p.cast::<u8>().add(page).cast(), page, libc::PROT_NONE), 0);
        p.cast::<u8>().add(page - 8).cast::<u64>()
    };
    let writer = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(10));
        (&b).write_all(b"x").unwrap();
        b
    });
    let reader = eventlet::spawn(move || {
        // SAFETY: the bitmap has a bit for every descriptor below `fd + 1`.
        unsafe {
            bits.write(1 << fd);
            let mut tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
            let got = libc::select(fd + 1, bits.cast(), std::ptr::null_mut(), std::ptr::null_mut(), &mut tv);
            assert_eq!(got, 1);
            assert_eq!(bits.read(), 1 << fd);
        }
        a
    });
    drop(reader.join().unwrap());
    drop(writer.join().unwrap());
}

#[test]
fn select_touches_no_more_of_the_sets_than_the_kernel() {
    child_ok("select-on-a-short-bitmap");
}

/// A `sendmsg` whose `msg_iovlen` (a `size_t`) is 2^32 + 1: the kernel
/// refuses it (`EMSGSIZE`, more than `UIO_MAXIOV` buffers); the patched
/// call cast it to an `int`, saw 1, and sent the first buffer.
fn sendmsg_iovlen_beyond_32_bits() {
    eventlet::monkey_patch();
    let (a, b) = UnixStream::pair().unwrap();
    eventlet::spawn(move || {
        let mut byte = *b"x";
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
        // SAFETY: a zeroed msghdr pointing to one iovec, with a length
        // the kernel refuses before it reads any iovec.
        let r = unsafe {
            let mut m: libc::msghdr = std::mem::zeroed();
            m.msg_iov = &mut iov;
            m.msg_iovlen = (1usize << 32) + 1;
            libc::sendmsg(a.as_raw_fd(), &m, 0)
        };
        assert_eq!(r, -1);
        assert_eq!(errno(), libc::EMSGSIZE);
        b.set_nonblocking(true).unwrap();
        let nothing = (&b).read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock, "nothing was sent");
    })
    .join()
    .unwrap();
}

#[test]
fn sendmsg_with_more_buffers_than_an_int_holds_is_refused_as_by_the_kernel() {
    child_ok("sendmsg-iovlen-beyond-32-bits");
}

/// The closing calls leave `errno` as it was when they succeed, with the
/// patch off or on: `fclose` of a stream without a descriptor (fmemopen's)
/// came back with `EBADF`, set by the hook's own `fileno`.
fn errno_after_closing_calls() {
    for on in [false, true] {
        if on {
            eventlet::monkey_patch();
        }
        let mut buf = [0u8; 16];
        // SAFETY: a memory stream over our buffer, closed at once.
        unsafe {
            let f = libc::fmemopen(buf.as_mut_ptr().cast(), buf.len(), c"w".as_ptr());
            assert!(!f.is_null());
            set_errno(libc::EXDEV);
            assert_eq!(libc::fclose(f), 0);
        }
        assert_eq!(errno(), libc::EXDEV, "errno after a successful fclose (patch on: {on})");
        let (a, _b) = UnixStream::pair().unwrap();
        set_errno(libc::EXDEV);
        drop(a); // close(2), through the hook
        assert_eq!(errno(), libc::EXDEV, "errno after a successful close (patch on: {on})");
    }
}

#[test]
fn the_closing_calls_keep_errno_when_they_succeed() {
    child_ok("errno-after-closing-calls");
}

/// A file of `len` bytes `a` beside this test binary (not under /tmp,
/// which may be a tmpfs: its data must be on disk, so that it can leave
/// the page cache), written through to the disk.
fn data_file(name: &str, len: usize) -> std::path::PathBuf {
    let path = std::env::current_exe().unwrap().with_extension(format!("{name}.dat"));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&vec![b'a'; len]).unwrap();
    f.sync_all().unwrap();
    path
}

/// Drops the data of the file open as `fd` from the page cache.
fn evict(fd: i32) {
    // SAFETY: advice on an open descriptor; no memory is involved.
    assert_eq!(unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
}

/// Closes `fd` around the patched closing calls, as a raw system call (or
/// a C library's own close, or glibc inside libc) does: its number keeps
/// whatever kind the patch last saw for it.
fn raw_close(fd: i32) {
    // SAFETY: closes a descriptor this test owns and no longer uses.
    assert_eq!(unsafe { libc::syscall(libc::SYS_close, fd) }, 0);
}

/// A pipe whose read end's number is known to the patch as a pipe (a
/// patched read went through it), then closed around the patched calls;
/// the number is free again. The write end stays open (returned).
fn stale_pipe_number() -> (i32, std::fs::File) {
    let (mut r, mut w) = pipe();
    eventlet::spawn(move || {
        w.write_all(b"x").unwrap();
        r.read_exact(&mut [0u8; 1]).unwrap(); // a patched read: known as a pipe
        (r, w)
    })
    .join()
    .map(|(r, w)| {
        let number = std::os::fd::IntoRawFd::into_raw_fd(r);
        raw_close(number);
        (number, w)
    })
    .unwrap()
}

/// A regular file on the number of a pipe closed around the patched calls:
/// the number's stale kind said pipe, the read asked for `RWF_NOWAIT`, got
/// `EAGAIN`, and waited for a readiness a regular file never signals
/// (epoll refuses it; the wait looked again every millisecond). A buffered
/// read that says `EAGAIN` (its data not in the page cache) is read again
/// a millisecond later, once the read-ahead it started has landed, unless
/// the pages left the cache meanwhile (memory pressure); a direct
/// (`O_DIRECT`) read says `EAGAIN` for as long as part of its range waits
/// to be written back, here up to 30 s (`vm.dirty_expire_centisecs`): the
/// alarm ended the wait. The original read writes the range back, then
/// reads it.
fn stale_pipe_kind_on_an_uncached_file() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    eventlet::monkey_patch();
    let len = 1 << 16;
    let path = data_file("stale-pipe-kind-direct", len);
    // The first page written again and not synced: dirty in the page cache.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[b'b'; 4096], 0).unwrap();
    let (number, _w) = stale_pipe_number();
    let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&path).unwrap();
    assert_eq!(file.as_raw_fd(), number, "the file gets the pipe's number");
    let back = eventlet::spawn(move || {
        // Direct I/O wants a buffer aligned to the block size.
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: a buffer of `len` bytes (non-zero), freed below.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!p.is_null());
        // SAFETY: `p` holds `len` initialized bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(p, len) };
        let r = file.read_exact(buf).map(|()| buf.to_vec());
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(p, layout) };
        r
    })
    .join()
    .unwrap();
    drop(f);
    let _ = std::fs::remove_file(&path);
    let back = back.unwrap();
    assert!(back[..4096].iter().all(|&b| b == b'b') && back[4096..].iter().all(|&b| b == b'a'));
}

#[test]
fn a_regular_file_on_the_number_of_a_closed_pipe_is_read_as_a_file() {
    child_ok("stale-pipe-kind-on-an-uncached-file");
}

/// As above, the file opened `O_NONBLOCK` (which regular files ignore: the
/// original read waits for the disk): the `EAGAIN` of `RWF_NOWAIT` was
/// taken for the user's own non-blocking mode and returned.
fn stale_pipe_kind_on_a_non_blocking_file() {
    use std::os::unix::fs::OpenOptionsExt;
    eventlet::monkey_patch();
    let path = data_file("stale-pipe-kind-non-blocking", 1 << 20);
    let (number, _w) = stale_pipe_number();
    let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).unwrap();
    assert_eq!(file.as_raw_fd(), number, "the file gets the pipe's number");
    evict(number);
    let back = eventlet::spawn(move || {
        let mut back = vec![0u8; 1 << 20];
        file.read_exact(&mut back).map(|()| back)
    })
    .join()
    .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(back.unwrap().iter().all(|&b| b == b'a'));
}

#[test]
fn a_non_blocking_regular_file_on_the_number_of_a_closed_pipe_is_read_whole() {
    child_ok("stale-pipe-kind-on-a-non-blocking-file");
}

/// A `/proc` file on the number of a pipe closed around the patched calls:
/// the kernel refuses `RWF_NOWAIT` on it (`EOPNOTSUPP`), which the patch
/// took to mean that pipes do not take it, for the whole process: from
/// then on every pipe read was the original, blocking call, and a green
/// reader blocked the hub before its green writer could write (the alarm
/// ended it).
fn stale_pipe_kind_on_a_proc_file() {
    eventlet::monkey_patch();
    let (number, _w) = stale_pipe_number();
    let mut stat = std::fs::File::open("/proc/self/stat").unwrap();
    assert_eq!(stat.as_raw_fd(), number, "the /proc file gets the pipe's number");
    let text = eventlet::spawn(move || {
        let mut text = String::new();
        stat.read_to_string(&mut text).unwrap();
        text
    })
    .join()
    .unwrap();
    assert!(text.starts_with(&format!("{} ", std::process::id())), "{text}");
    let (mut r, mut w) = pipe();
    let reader = eventlet::spawn(move || r.read_exact(&mut [0u8; 1]).unwrap());
    let writer = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(10));
        w.write_all(b"x").unwrap();
    });
    reader.join().unwrap();
    writer.join().unwrap();
}

#[test]
fn a_proc_file_on_the_number_of_a_closed_pipe_leaves_pipes_green() {
    child_ok("stale-pipe-kind-on-a-proc-file");
}

/// One patched `read` of the whole regular file open as `file` (of `len`
/// bytes `a`), with only its first page in the page cache, on a green
/// thread: what it returned. A number wrongly known as a pipe is read with
/// `RWF_NOWAIT`, which returns only what the page cache holds (the first
/// page); the original returns the whole file.
fn read_partly_cached(file: std::fs::File, len: usize) -> isize {
    let fd = file.as_raw_fd();
    evict(fd);
    // SAFETY: advice on an open descriptor; a read into our buffer
    // (pread is not patched). No read-ahead: one page is read.
    unsafe {
        assert_eq!(libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM), 0);
        let mut page = [0u8; 4096];
        assert_eq!(libc::pread(fd, page.as_mut_ptr().cast(), page.len(), 0), 4096);
    }
    let (n, back) = eventlet::spawn(move || {
        let mut back = vec![0u8; len];
        // SAFETY: a read into our buffer.
        let n = unsafe { libc::read(file.as_raw_fd(), back.as_mut_ptr().cast(), len) };
        (n, back)
    })
    .join()
    .unwrap();
    assert!(back[..n.max(0) as usize].iter().all(|&b| b == b'a'));
    n
}

/// glibc's `pclose` closes its pipe inside libc, around the patched
/// `close`: the number stayed known as a pipe, and one `read` of a regular
/// file that got it returned its first page only (see
/// [`read_partly_cached`]). Had the file's data not been in the page cache
/// at all, the read waited for a readiness a regular file never signals.
fn number_of_a_pclosed_pipe() {
    eventlet::monkey_patch();
    let len = 1 << 20;
    let path = data_file("number-of-a-pclosed-pipe", len);
    let number = eventlet::spawn(|| {
        // SAFETY: popen of a shell command; a read from its pipe; pclose.
        unsafe {
            let p = libc::popen(c"echo hello".as_ptr(), c"r".as_ptr());
            assert!(!p.is_null());
            let fd = libc::fileno(p);
            let mut buf = [0u8; 6];
            // A patched read: the number is known as a pipe from now on.
            assert_eq!(libc::read(fd, buf.as_mut_ptr().cast(), buf.len()), 6);
            assert_eq!(&buf, b"hello\n");
            assert_eq!(libc::pclose(p), 0);
            fd
        }
    })
    .join()
    .unwrap();
    let file = std::fs::File::open(&path).unwrap();
    assert_eq!(file.as_raw_fd(), number, "the file gets the pipe's number");
    let n = read_partly_cached(file, len);
    let _ = std::fs::remove_file(&path);
    assert_eq!(n, len as isize, "one read of a regular file reads it whole");
}

#[test]
fn a_regular_file_on_the_number_of_a_pclosed_pipe_is_read_whole() {
    child_ok("number-of-a-pclosed-pipe");
}

/// `freopen` moves the new file onto the stream's number inside libc
/// (`dup3`), around the patched `dup3`: a stream over a pipe reopened over
/// a regular file kept the number known as a pipe, and one `read` of the
/// file returned its first page only (see [`read_partly_cached`]).
fn number_replaced_by_freopen() {
    use std::os::unix::ffi::OsStrExt;
    eventlet::monkey_patch();
    let len = 1 << 20;
    let path = data_file("number-replaced-by-freopen", len);
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let (r, mut w) = pipe();
    w.write_all(b"x").unwrap();
    let number = std::os::fd::IntoRawFd::into_raw_fd(r);
    // The stream is left open (the child process ends soon): the file is
    // read through its descriptor.
    let _stream = eventlet::spawn(move || {
        // SAFETY: a stream over the pipe's read end (which it owns from
        // now on), read through its descriptor, reopened over the file.
        unsafe {
            let f = libc::fdopen(number, c"r".as_ptr());
            assert!(!f.is_null());
            let mut buf = [0u8; 1];
            // A patched read: the number is known as a pipe.
            assert_eq!(libc::read(number, buf.as_mut_ptr().cast(), 1), 1);
            let g = libc::freopen(cpath.as_ptr(), c"r".as_ptr(), f);
            assert!(!g.is_null());
            assert_eq!(libc::fileno(g), number, "freopen keeps the number");
            g as usize
        }
    })
    .join()
    .unwrap();
    // SAFETY: the stream's descriptor, which nothing else closes.
    let file = unsafe { std::fs::File::from_raw_fd(number) };
    let n = read_partly_cached(file, len);
    let _ = std::fs::remove_file(&path);
    assert_eq!(n, len as isize, "one read of a regular file reads it whole");
}

#[test]
fn a_regular_file_freopened_onto_the_number_of_a_pipe_is_read_whole() {
    child_ok("number-replaced-by-freopen");
}

/// A named FIFO: the kernel refuses `RWF_NOWAIT` on it (`EOPNOTSUPP`;
/// anonymous pipes take it), which the patch took to mean that no pipe
/// takes it, for the whole process: from then on every pipe read was the
/// original, blocking call, and a green reader blocked the hub before its
/// green writer could write (the alarm ended it).
fn named_fifo_leaves_pipes_green() {
    eventlet::monkey_patch();
    let fifo = std::env::current_exe().unwrap().with_extension("named-fifo.fifo");
    let _ = std::fs::remove_file(&fifo);
    let cfifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo of a fresh path.
    assert_eq!(unsafe { libc::mkfifo(cfifo.as_ptr(), 0o600) }, 0);
    // Read-write: the open does not wait for a writer.
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let _ = std::fs::remove_file(&fifo);
    eventlet::spawn(move || {
        f.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        f.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    })
    .join()
    .unwrap();
    let (mut r, mut w) = pipe();
    let reader = eventlet::spawn(move || r.read_exact(&mut [0u8; 1]).unwrap());
    let writer = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(10));
        w.write_all(b"x").unwrap();
    });
    reader.join().unwrap();
    writer.join().unwrap();
}

#[test]
fn a_named_fifo_leaves_pipes_green() {
    child_ok("named-fifo-leaves-pipes-green");
}

/// `accept` on what does not listen fails at once (`ENOTSOCK`, `EINVAL`);
/// the patched call waited for it to be readable first: on a connected
/// socket nobody writes to, and on a pipe that got the number of a socket
/// closed around the patched calls (its stale kind said socket), for good
/// (the alarm ended it).
fn accept_on_what_does_not_listen() {
    eventlet::monkey_patch();
    let (a, b) = UnixStream::pair().unwrap();
    eventlet::spawn(move || {
        // SAFETY: accept on a connected socket, no address wanted.
        let r = unsafe { libc::accept(a.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut()) };
        assert_eq!((r, errno()), (-1, libc::EINVAL), "accept on a connected socket");
        (a, b)
    })
    .join()
    .unwrap();
    let (c, d) = UnixStream::pair().unwrap();
    let number = eventlet::spawn(move || {
        (&c).write_all(b"x").unwrap(); // a patched write: known as a socket
        std::os::fd::IntoRawFd::into_raw_fd(c)
    })
    .join()
    .unwrap();
    raw_close(number);
    let (r, _w) = pipe();
    assert_eq!(r.as_raw_fd(), number, "the pipe gets the socket's number");
    eventlet::spawn(move || {
        // SAFETY: as above, on a pipe.
        let got = unsafe { libc::accept(r.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut()) };
        assert_eq!((got, errno()), (-1, libc::ENOTSOCK), "accept on a pipe");
    })
    .join()
    .unwrap();
    drop(d);
}

#[test]
fn accept_on_what_does_not_listen_fails_at_once() {
    child_ok("accept-on-what-does-not-listen");
}
