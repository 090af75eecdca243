//! The per-descriptor context: what kind of file a descriptor number names,
//! as last seen.
//!
//! Only the kind is kept. The blocking mode the user chose and the socket
//! timeouts are read from the kernel (`fcntl(F_GETFL)`,
//! `getsockopt(SO_RCVTIMEO)`) when a call is about to park, so they are
//! never stale: a flag set through a `dup` of the descriptor, by another
//! thread, or in another process sharing the file shows as it is. The
//! kind cannot change while the number stays open; the patched `close`,
//! `dup2`, `dup3`, `close_range`, `closefrom`, `fclose`, `pclose` and
//! `freopen` forget it (before and after the real call, so a lookup racing
//! with the close cannot leave the old kind behind). A descriptor closed
//! some other way (a raw `syscall`, io_uring) may keep a stale kind for
//! its number: the kind is a hint for the fast path, and the hooks check
//! it against the kernel before they park on it; see [`Kind`].

use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// What a descriptor number names, for the hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    // 0 in the table: not looked at yet, or forgotten.
    /// A socket: reads and writes become `recv`/`send` with `MSG_DONTWAIT`
    /// (the same calls, per `recv(2)`, but never waiting). A stale entry
    /// is harmless: on anything else `recv` fails with `ENOTSOCK`, and the
    /// hook looks again; `accept` asks whether the socket listens before
    /// it parks.
    Socket = 1,
    /// A pipe: reads and writes become `preadv2`/`pwritev2` with
    /// `RWF_NOWAIT` at the current position. Before a wait, and when the
    /// kernel refuses the flag, the hook checks that the descriptor is
    /// still a pipe (a stale entry on a regular file said `EAGAIN` and
    /// waited for good); a pipe that refuses the flag (a named FIFO)
    /// becomes `Other`. What a stale entry still costs: one read of a
    /// regular file may return only the part in the page cache.
    Pipe = 2,
    /// Anything else (regular files, terminals, eventfds...), pipes that
    /// refuse `RWF_NOWAIT`, and standard output and error whatever they
    /// are (see `look`): the original call, always. A stale entry on what
    /// is now a blocking socket or pipe blocks the OS thread, as without
    /// the patch.
    Other = 3,
    /// A socket or pipe of eventlet's own (`eventlet::net`, green pipes):
    /// non-blocking, registered with a hub, and waited on by its owner, so
    /// the original call, always (no second I/O budget, no flag lookup on
    /// `EAGAIN`). Marked by `Evented::new`, forgotten when it closes or is
    /// handed out.
    Eventlet = 4,
}

const CHUNK: usize = 4096;
const CHUNKS: usize = 1024;

/// Kinds by descriptor number, in chunks made on first use: 4,194,304
/// numbers; beyond that, every call looks again.
static TABLE: [AtomicPtr<[AtomicU8; CHUNK]>; CHUNKS] = [const { AtomicPtr::new(null_mut()) }; CHUNKS];

fn slot(fd: i32, make: bool) -> Option<&'static AtomicU8> {
    let fd = usize::try_from(fd).ok()?;
    let (hi, lo) = (fd / CHUNK, fd % CHUNK);
    let chunk = TABLE.get(hi)?;
    let mut p = chunk.load(Ordering::Acquire);
    if p.is_null() {
        if !make {
            return None;
        }
        let fresh = Box::into_raw(Box::new([const { AtomicU8::new(0) }; CHUNK]));
        match chunk.compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => p = fresh,
            Err(won) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was
                // never shared.
                drop(unsafe { Box::from_raw(fresh) });
                p = won;
            }
        }
    }
    // SAFETY: chunks are never freed once published, and `lo < CHUNK`.
    Some(unsafe { &(*p)[lo] })
}

/// The kind of `fd`, looking with `fstat` when not known. A descriptor
/// that is not open is `Other` (and not remembered): the original call
/// then reports `EBADF`.
#[inline]
pub(crate) fn kind(fd: i32) -> Kind {
    match slot(fd, false).map(|s| s.load(Ordering::Relaxed)) {
        Some(1) => Kind::Socket,
        Some(2) => Kind::Pipe,
        Some(3) => Kind::Other,
        Some(4) => Kind::Eventlet,
        _ => look(fd),
    }
}

#[cold]
fn look(fd: i32) -> Kind {
    if fd == 1 || fd == 2 {
        // Standard output and error: writers share them under a lock per
        // OS thread that lets the same thread in again (std's `Stdout` and
        // `Stderr` are a reentrant lock around a `RefCell`, C's `stdout` and
        // `stderr` a recursive lock around the `FILE`). A green thread
        // parked or yielding inside `println!` would let another green
        // thread of the same OS thread into that lock: std then panics
        // ("RefCell already borrowed"), C's stdio corrupts its buffer. So
        // their calls are the originals, whatever the file is.
        set(fd, Kind::Other);
        return Kind::Other;
    }
    // SAFETY: `st` is plain data that fstat fills in; fstat is not patched.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Kind::Other;
    }
    let k = match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => Kind::Socket,
        libc::S_IFIFO => Kind::Pipe,
        _ => Kind::Other,
    };
    set(fd, k);
    k
}

/// Records the kind of `fd`.
pub(crate) fn set(fd: i32, k: Kind) {
    if let Some(s) = slot(fd, true) {
        s.store(k as u8, Ordering::Relaxed);
    }
}

/// Forgets the kind of `fd` (it is being closed or replaced).
#[inline]
pub(crate) fn forget(fd: i32) {
    if let Some(s) = slot(fd, false) {
        s.store(0, Ordering::Relaxed);
    }
}

/// Forgets every descriptor from `first` to `last` (inclusive).
pub(crate) fn forget_range(first: u32, last: u32) {
    let last = (last as usize).min(CHUNK * CHUNKS - 1);
    let mut fd = first as usize;
    while fd <= last {
        let (hi, lo) = (fd / CHUNK, fd % CHUNK);
        let p = TABLE[hi].load(Ordering::Acquire);
        let end = ((hi + 1) * CHUNK - 1).min(last);
        if !p.is_null() {
            // SAFETY: a published chunk lives for good; indices are in range.
            let chunk = unsafe { &*p };
            for s in &chunk[lo..=end - hi * CHUNK] {
                s.store(0, Ordering::Relaxed);
            }
        }
        fd = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn kinds_are_seen_and_forgotten() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(kind(a.as_raw_fd()), Kind::Socket);
        let (r, _w) = std::io::pipe().unwrap();
        assert_eq!(kind(r.as_raw_fd()), Kind::Pipe);
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(kind(f.as_raw_fd()), Kind::Other);
        assert_eq!(kind(-1), Kind::Other);
        set(a.as_raw_fd(), Kind::Pipe);
        assert_eq!(kind(a.as_raw_fd()), Kind::Pipe);
        forget_range(0, u32::MAX);
        assert_eq!(kind(a.as_raw_fd()), Kind::Socket);
    }
}
