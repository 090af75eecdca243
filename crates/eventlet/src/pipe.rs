//! Green pipes (eventlet's `GreenPipe`): `Read` and `Write` over a pipe,
//! or over any other descriptor that is not a socket (a FIFO, a terminal,
//! a character device, an `eventfd`), parking only the calling green
//! thread while it would block.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//!
//! let (reader, mut writer) = eventlet::pipe::pipe()?;
//! let producer = eventlet::spawn(move || -> std::io::Result<()> {
//!     for i in 0..3 {
//!         writeln!(writer, "line {i}")?;
//!         eventlet::sleep(std::time::Duration::from_millis(1));
//!     }
//!     Ok(()) // `writer` is dropped here: the reader sees end of file
//! });
//! let lines: Vec<String> = BufReader::new(reader).lines().collect::<Result<_, _>>()?;
//! assert_eq!(lines, ["line 0", "line 1", "line 2"]);
//! producer.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`pipe`] makes a pipe whose two ends are green (Python's `os.pipe()`
//! wrapped in two `GreenPipe`s); `GreenPipe::from(OwnedFd)` (or
//! `FromRawFd`) takes over a descriptor you have, such as one end of a pipe
//! another library made, or a child's standard stream, and makes it
//! non-blocking. A [`GreenPipe`] has `Read` and `Write` for both itself
//! and `&GreenPipe` (so two green threads can read and write one
//! descriptor at once), read and write timeouts, and every descriptor
//! trait. Buffered use is std's: wrap it in a [`BufReader`](std::io::BufReader)
//! for `read_line` and `lines`, or a [`BufWriter`](std::io::BufWriter).
//!
//! A pipe is closed one end at a time, by dropping that end: once the
//! writing end is gone, the reader reads what is left in the pipe and then
//! end of file (`Ok(0)`); once the reading end is gone, a write fails with
//! `BrokenPipe`.
//!
//! A read tries the descriptor first and parks only on `WouldBlock`,
//! until the hub's reactor reports it readable (edge-triggered, like the
//! sockets). Every read tries first, even after a read that returned less
//! than asked: that is not proof the descriptor was drained (a terminal
//! returns one line per read, and any writer of a pipe can put it in
//! packet mode with `O_DIRECT`, one write per read).
//!
//! # Differences from eventlet
//!
//! eventlet's `GreenPipe` is a file object: it opens paths, buffers, and
//! seeks. Here a `GreenPipe` is only the descriptor, and buffering is
//! std's `BufReader`/`BufWriter` around it; open a path with `std::fs`
//! (a FIFO with `O_NONBLOCK` through `OpenOptionsExt::custom_flags`, as
//! opening one blocks until the other end is opened) and wrap the file.
//! A regular file never makes a read or write wait, so on one a
//! `GreenPipe` blocks its OS thread for the length of each call, as
//! eventlet's does ("It will block on regular file"); use
//! [`tpool`](crate::tpool) for slow disks. Making a descriptor
//! non-blocking changes its open file description, which every process
//! sharing it sees (a terminal's standard input, say).

use crate::hub::io::{Direction, Evented};
use crate::net::{descriptor_traits, Timeout};
use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// The descriptor inside a [`GreenPipe`]: plain `read(2)` and `write(2)`
/// through `File`, whatever the descriptor is.
struct Fd(File);

impl Fd {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        crate::sys::set_nonblocking(self.0.as_fd(), on)
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd(File::from(fd))
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> OwnedFd {
        fd.0.into()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A green pipe end, or any other descriptor that is not a socket, read
/// and written without blocking the hub (eventlet's `GreenPipe`). See the
/// [module docs](self).
///
/// Like std's descriptor types it is `Send + Sync`: moved to another OS
/// thread, it waits through that thread's hub.
pub struct GreenPipe {
    inner: Evented<Fd>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

/// Makes a pipe and returns its two ends, green: `(reader, writer)`
/// (Python's `os.pipe()`, each end wrapped in a `GreenPipe`). Both are
/// non-blocking and close on exec.
///
/// # Errors
///
/// The error of `pipe2(2)`, such as `EMFILE` when the process is out of
/// descriptors.
pub fn pipe() -> io::Result<(GreenPipe, GreenPipe)> {
    let (writer, reader) = mio::unix::pipe::new()?;
    Ok((GreenPipe::wrap(Fd::from(OwnedFd::from(reader))), GreenPipe::wrap(Fd::from(OwnedFd::from(writer)))))
}

impl GreenPipe {
    /// Wraps a non-blocking descriptor.
    fn wrap(fd: Fd) -> GreenPipe {
        GreenPipe { inner: Evented::new(fd), read_timeout: Timeout::default(), write_timeout: Timeout::default() }
    }

    /// A second handle to the same descriptor (`dup`; its own timeouts
    /// start unset). Dropping one handle leaves the other open: the pipe's
    /// end closes with the last.
    ///
    /// # Errors
    ///
    /// The error of `dup`, such as `EMFILE`.
    pub fn try_clone(&self) -> io::Result<GreenPipe> {
        Ok(GreenPipe::wrap(Fd(self.inner.get().0.try_clone()?)))
    }

    timeout_methods!();

    fn read_with(&self, mut f: impl FnMut(&File) -> io::Result<usize>) -> io::Result<usize> {
        self.inner.op(Direction::Read, self.read_timeout.get(), |fd| f(&fd.0))
    }
}

descriptor_traits!(GreenPipe, Fd, GreenPipe::wrap);

impl From<File> for GreenPipe {
    /// Takes over the descriptor of `file` (a FIFO opened with `std::fs`,
    /// say) and makes it non-blocking.
    fn from(file: File) -> GreenPipe {
        GreenPipe::from(OwnedFd::from(file))
    }
}

impl Read for &GreenPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|mut f| f.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_with(|mut f| f.read_vectored(bufs))
    }
}

impl Read for GreenPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for &GreenPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.op(Direction::Write, self.write_timeout.get(), |fd| (&fd.0).write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner.op(Direction::Write, self.write_timeout.get(), |fd| (&fd.0).write_vectored(bufs))
    }

    /// Writes go straight to the descriptor: nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for GreenPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for GreenPipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPipe").field("fd", &self.as_raw_fd()).finish()
    }
}
