//! The descriptor traits every green socket (and [`GreenPipe`](crate::pipe::GreenPipe))
//! has, from one macro (as mio gives its sockets theirs): `AsFd`,
//! `AsRawFd`, `IntoRawFd`, `FromRawFd`, `From<OwnedFd>` and
//! `From<T> for OwnedFd`.

/// Implements the descriptor traits for `$t`, a green descriptor type with
/// an `inner: Evented<$std>` field and no `Drop` of its own; `$wrap` turns
/// a non-blocking `$std` into a `$t`.
///
/// A descriptor that comes in (`From<OwnedFd>`, `FromRawFd`) is made
/// non-blocking, as every green descriptor's is; one that goes out leaves
/// the hub's reactor first, and stays non-blocking.
macro_rules! descriptor_traits {
    ($t:ident, $std:ty, $wrap:expr) => {
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(self.inner.get())
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(self.inner.get())
            }
        }

        impl From<$t> for std::os::fd::OwnedFd {
            fn from(s: $t) -> std::os::fd::OwnedFd {
                let $t { inner, .. } = s;
                inner.into_inner().into()
            }
        }

        impl std::os::fd::IntoRawFd for $t {
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::IntoRawFd::into_raw_fd(std::os::fd::OwnedFd::from(self))
            }
        }

        impl From<std::os::fd::OwnedFd> for $t {
            /// Takes over `fd`, an open descriptor of this kind, and makes
            /// it non-blocking.
            fn from(fd: std::os::fd::OwnedFd) -> $t {
                let s = <$std>::from(fd);
                // Setting O_NONBLOCK on an open descriptor does not fail;
                // should it, the first operation reports the error.
                let _ = s.set_nonblocking(true);
                let wrap: fn($std) -> $t = $wrap;
                wrap(s)
            }
        }

        impl std::os::fd::FromRawFd for $t {
            /// Takes over `fd` as `From<OwnedFd>` does: it is made non-blocking.
            ///
            /// # Safety
            ///
            /// `fd` is an open descriptor of this kind that nothing else
            /// owns (the contract of `FromRawFd` for `OwnedFd`).
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> $t {
                // SAFETY: the caller hands over an open descriptor that
                // nothing else owns, which is `OwnedFd::from_raw_fd`'s
                // contract.
                $t::from(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
            }
        }
    };
}
pub(crate) use descriptor_traits;
