//! Macros for the green I/O types: the `Read`/`Write` impls and timeout
//! methods that the sockets and pipes share.

/// `Read` for `$t` and `&$t`, a byte-stream type with an `inner:
/// Evented<_>` field whose `&` source is `Read`; `$this => $timeout` gives
/// how long a read may wait (`Option<Duration>`).
///
/// With `short_read_drains`, a read that returns less than asked proves the
/// descriptor drained, so the next read parks until new data without a
/// syscall (see [`Evented::read_op`](crate::hub::io::Evented::read_op)).
/// That holds only for TCP, and there only because an urgent mark (which
/// stops a read short) is reported by the reactor. Where the peer can stop
/// a read short with data waiting behind (a Unix stream's descriptors or
/// credentials, a pipe whose writer set `O_DIRECT`), leave it out: every
/// read tries the syscall first.
macro_rules! green_read {
    ($t:ty, $this:ident => $timeout:expr) => {
        green_read!(@impl $t, $this => $timeout, false);
    };
    ($t:ty, $this:ident => $timeout:expr, short_read_drains) => {
        green_read!(@impl $t, $this => $timeout, true);
    };
    (@impl $t:ty, $this:ident => $timeout:expr, $drains:expr) => {
        impl std::io::Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let $this: &$t = self;
                let len = if $drains { Some(buf.len()) } else { None };
                $this.inner.read_op($timeout, len, |mut s| std::io::Read::read(&mut s, buf))
            }

            fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
                let $this: &$t = self;
                let len = if $drains { $crate::hub::io::vectored_len(bufs.iter().map(|b| b.len())) } else { None };
                $this.inner.read_op($timeout, len, |mut s| std::io::Read::read_vectored(&mut s, bufs))
            }
        }

        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::io::Read::read(&mut &*self, buf)
            }

            fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
                std::io::Read::read_vectored(&mut &*self, bufs)
            }
        }
    };
}

/// `Write` for `$t` and `&$t`, as [`green_read!`] for reads. Writes go
/// straight to the kernel, so `flush` has nothing to do.
macro_rules! green_write {
    ($t:ty, $this:ident => $timeout:expr) => {
        impl std::io::Write for &$t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let $this: &$t = self;
                $this.inner.op($crate::hub::io::Direction::Write, $timeout, |mut s| std::io::Write::write(&mut s, buf))
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                let $this: &$t = self;
                $this.inner.op($crate::hub::io::Direction::Write, $timeout, |mut s| {
                    std::io::Write::write_vectored(&mut s, bufs)
                })
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::io::Write::write(&mut &*self, buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                std::io::Write::write_vectored(&mut &*self, bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}

/// The timeout methods of a socket type with `read_timeout` and
/// `write_timeout` fields; expands inside its `impl` block.
macro_rules! timeout_methods {
    () => {
        /// Sets how long a read (or receive) may wait (`None`: forever). An
        /// expired wait fails with `TimedOut`.
        ///
        /// # Errors
        ///
        /// `InvalidInput` for `Some(Duration::ZERO)`, as in std.
        pub fn set_read_timeout(&self, dur: Option<std::time::Duration>) -> std::io::Result<()> {
            self.read_timeout.set(dur)
        }

        /// Sets how long a write (or send) may wait (`None`: forever).
        ///
        /// # Errors
        ///
        /// `InvalidInput` for `Some(Duration::ZERO)`, as in std.
        pub fn set_write_timeout(&self, dur: Option<std::time::Duration>) -> std::io::Result<()> {
            self.write_timeout.set(dur)
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.read_timeout.get())
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.write_timeout.get())
        }
    };
}
