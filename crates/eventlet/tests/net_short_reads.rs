//! Reads that stop short while more data waits: the "a short read drained
//! the socket" shortcut must not park a reader on data already there.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use eventlet::net::unix::UnixStream;
use eventlet::net::{TcpListener, TcpStream};

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = eventlet::spawn(move || l.accept().unwrap().0);
    let c = TcpStream::connect(addr).unwrap();
    (c, h.join().unwrap())
}

/// Reads everything `r` holds with vectored reads of `n` one-byte buffers
/// (more than `IOV_MAX`: the kernel fills only the first 1024), each read
/// bounded by a read timeout.
fn read_all_vectored<R: Read + 'static, W: Write>(r: R, mut w: W, data: &[u8], n: usize) -> Vec<u8> {
    // The reader parks first, so the descriptor is registered before the
    // data arrives.
    let total = data.len();
    let reader = eventlet::spawn(move || {
        let mut r = r;
        let mut got = vec![0u8; 1];
        assert_eq!(r.read(&mut got).unwrap(), 1);
        (r, got)
    });
    eventlet::sleep(Duration::from_millis(10));
    w.write_all(data).unwrap();
    let (mut r, mut got) = reader.join().unwrap();
    while got.len() < total {
        let mut bytes = vec![0u8; n];
        let mut bufs: Vec<IoSliceMut<'_>> = bytes.chunks_mut(1).map(IoSliceMut::new).collect();
        let k = r.read_vectored(&mut bufs).unwrap_or_else(|e| panic!("after {} of {total} bytes: {e}", got.len()));
        assert!(k > 0, "end of stream after {} of {total} bytes", got.len());
        got.extend_from_slice(&bytes[..k]);
    }
    got
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A vectored read of more than `IOV_MAX` buffers returns at most 1024
/// bytes although more wait: it is not a sign the socket was drained (the
/// second read used to park for good on 976 waiting bytes).
#[test]
fn vectored_read_of_more_than_iov_max_buffers_does_not_strand_data() {
    let (a, b) = pair();
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let data = pattern(2000);
    assert_eq!(read_all_vectored(b, &a, &data, 2000), data);

    let (u, v) = UnixStream::pair().unwrap();
    v.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(read_all_vectored(v, &u, &data, 2000), data);

    let (r, w) = eventlet::pipe::pipe().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(read_all_vectored(r, w, &data, 2000), data);
}

fn send_urgent(s: &impl AsRawFd, byte: u8) {
    // SAFETY: a one-byte buffer that outlives the call, on an open socket.
    let n = unsafe { libc::send(s.as_raw_fd(), (&byte as *const u8).cast(), 1, libc::MSG_OOB) };
    assert_eq!(n, 1, "send(MSG_OOB): {}", std::io::Error::last_os_error());
}

/// A peer's urgent (out-of-band) byte stops a TCP read at its mark although
/// ordinary data waits behind it: the read after must find that data, not
/// park until the peer sends again.
#[test]
fn tcp_read_stopped_at_the_urgent_mark_does_not_strand_data() {
    let (a, b) = pair();
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(read_past_the_mark(a, b), b"beforeafter");
}

/// The same over a Unix stream socket, whose out-of-band byte also stops a
/// read at its mark.
#[test]
fn unix_read_stopped_at_the_oob_mark_does_not_strand_data() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // The out-of-band byte is not in the stream (SO_OOBINLINE is off).
    assert_eq!(read_past_the_mark(a, b), b"beforeafter");
}

/// Sends "before", an urgent byte and "after" from `a` to `b` (whose first
/// read is already waiting) and reads what `b` gets until "beforeafter"'s
/// length, each read bounded by `b`'s read timeout.
fn read_past_the_mark<S>(a: S, b: S) -> Vec<u8>
where
    S: AsRawFd + 'static,
    for<'s> &'s S: Read + Write,
{
    // Register the reader before anything arrives (its first read parks).
    let first = eventlet::spawn(move || {
        let mut buf = [0u8; 4096];
        let n = (&b).read(&mut buf).unwrap();
        (b, buf[..n].to_vec())
    });
    eventlet::sleep(Duration::from_millis(10));
    (&a).write_all(b"before").unwrap();
    send_urgent(&a, b'!');
    (&a).write_all(b"after").unwrap();
    // No end of stream: it would raise an edge of its own and hide a
    // stranded read.
    let (b, mut got) = first.join().unwrap();
    let mut buf = [0u8; 4096];
    while got.len() < b"beforeafter".len() {
        let n = (&b).read(&mut buf).unwrap_or_else(|e| panic!("after {:?}: {e}", String::from_utf8_lossy(&got)));
        assert!(n > 0, "end of stream after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(a);
    got
}

/// Sends `data` with one descriptor attached (`SCM_RIGHTS`): a Unix stream
/// read stops after such a message, with what follows still queued.
fn send_with_fd(s: &impl AsRawFd, data: &[u8]) {
    let fd: libc::c_int = s.as_raw_fd();
    // SAFETY: every pointer is to a local that outlives the call; the
    // control buffer is sized with CMSG_SPACE and aligned for cmsghdr.
    unsafe {
        let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
        let space = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let mut control = vec![0u64; space.div_ceil(8)];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        let n = libc::sendmsg(fd, &msg, 0);
        assert_eq!(n, data.len() as isize, "sendmsg: {}", std::io::Error::last_os_error());
    }
}

/// A peer's message carrying a descriptor stops a Unix stream read short
/// with ordinary data queued behind it: the next read must find that data.
#[test]
fn unix_read_stopped_after_passed_descriptors_does_not_strand_data() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let first = eventlet::spawn(move || {
        let mut buf = [0u8; 4096];
        let n = (&b).read(&mut buf).unwrap();
        (b, buf[..n].to_vec())
    });
    eventlet::sleep(Duration::from_millis(10));
    send_with_fd(&a, b"with-fd");
    (&a).write_all(b"plain").unwrap();
    let (b, mut got) = first.join().unwrap();
    let mut buf = [0u8; 4096];
    while got.len() < b"with-fdplain".len() {
        let n = (&b).read(&mut buf).unwrap_or_else(|e| panic!("after {:?}: {e}", String::from_utf8_lossy(&got)));
        assert!(n > 0, "end of stream after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"with-fdplain");
}

/// Any writer of a pipe may put it in packet mode (`O_DIRECT`): each read
/// then returns one write, with the next queued. A green pipe's reader (and
/// a child's stdout, the same kind of descriptor) must still find it.
#[test]
fn pipe_in_packet_mode_does_not_strand_data() {
    let (r, w) = eventlet::pipe::pipe().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // SAFETY: fcntl on an open descriptor we own.
    unsafe {
        let fl = libc::fcntl(w.as_raw_fd(), libc::F_GETFL);
        assert_eq!(libc::fcntl(w.as_raw_fd(), libc::F_SETFL, fl | libc::O_DIRECT), 0);
    }
    let first = eventlet::spawn(move || {
        let mut buf = [0u8; 4096];
        let n = (&r).read(&mut buf).unwrap();
        (r, buf[..n].to_vec())
    });
    eventlet::sleep(Duration::from_millis(10));
    (&w).write_all(b"one").unwrap();
    (&w).write_all(b"two").unwrap();
    (&w).write_all(b"three").unwrap();
    let (r, mut got) = first.join().unwrap();
    let mut buf = [0u8; 4096];
    while got.len() < b"onetwothree".len() {
        let n = (&r).read(&mut buf).unwrap_or_else(|e| panic!("after {:?}: {e}", String::from_utf8_lossy(&got)));
        assert!(n > 0, "end of file after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"onetwothree");
    drop(w);
}
