//! Child processes with green pipes, mirroring `std::process`.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::process::Stdio;
//! use eventlet::process::Command;
//!
//! let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
//! let mut stdin = child.stdin.take().unwrap();
//! // Writing and reading park only this green thread, never the hub.
//! stdin.write_all(b"hello")?;
//! drop(stdin); // EOF for cat
//! let mut out = String::new();
//! child.stdout.take().unwrap().read_to_string(&mut out)?;
//! assert_eq!(out, "hello");
//! assert!(child.wait()?.success());
//!
//! let out = Command::new("echo").arg("hi").output()?;
//! assert_eq!(out.stdout, b"hi\n");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`Command`] wraps [`std::process::Command`] (reach every std option,
//! such as `CommandExt`, through [`Command::as_std_mut`]). A spawned
//! [`Child`] has non-blocking [`ChildStdin`]/[`ChildStdout`]/[`ChildStderr`]
//! that wait through the hub's reactor like green sockets, and green
//! [`Child::wait`], [`Child::wait_with_output`], [`Command::output`] and
//! [`Command::status`].
//!
//! # How waiting for the exit works
//!
//! `wait` asks for the status without blocking (`waitpid` with `WNOHANG`,
//! through std's `try_wait`) and, while the child runs, parks the calling
//! green thread on a *pidfd* of the child (`pidfd_open`, Linux ≥ 5.3)
//! registered with the hub's reactor: the kernel makes it readable when the
//! child exits, so the exit is seen at once and a waiting child costs no OS
//! thread (waiting through the [`tpool`](crate::tpool) would hold one pool
//! thread per child: twenty waits would fill the default pool and stall
//! name resolution). The `Child` never leaves the calling green thread, so
//! it can be killed mid-wait and the `Child` still works. Where `pidfd_open`
//! is refused (older kernels, seccomp filters), `wait` sleeps between tries
//! instead: 1 ms at first, doubling to at most [`MAX_POLL_INTERVAL`].

//! `spawn` itself (fork and exec) runs on the hub's thread: it is short
//! but blocking.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{self as stdprocess, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use mio::unix::pipe;

use crate::greenthread::{sleep, spawn};
use crate::hub::io::Direction;
use crate::hub::Wakeup;
use crate::net::Evented;

/// Where no pidfd can be had, the longest a green [`Child::wait`] sleeps
/// between two looks at the child.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_millis(16);

const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A pidfd for the child `pid`, or `None` if the kernel refuses one.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    if std::env::var_os("EVENTLET_NO_PIDFD").is_some() {
        return None;
    }
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `fd` is a descriptor the kernel just made for us; nothing else
    // owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A process builder, like [`std::process::Command`], whose children have
/// green pipes.
///
/// ```
/// use eventlet::process::Command;
///
/// let status = Command::new("sh").args(["-c", "exit 3"]).status()?;
/// assert_eq!(status.code(), Some(3));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Command {
    inner: stdprocess::Command,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
}

impl Command {
    /// A command running `program`, with std's defaults (inherited
    /// environment, working directory and standard streams for `spawn` and
    /// `status`).
    pub fn new<S: AsRef<OsStr>>(program: S) -> Command {
        Command::from(stdprocess::Command::new(program))
    }

    /// Adds an argument.
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(&mut self, key: K, val: V) -> &mut Command {
        self.inner.env(key, val);
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.envs(vars);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove<K: AsRef<OsStr>>(&mut self, key: K) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Clears the environment.
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the working directory.
    pub fn current_dir<P: AsRef<Path>>(&mut self, dir: P) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// Configures the child's standard input; `Stdio::piped()` gives a
    /// green [`ChildStdin`].
    pub fn stdin<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// Configures the child's standard output; `Stdio::piped()` gives a
    /// green [`ChildStdout`].
    pub fn stdout<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// Configures the child's standard error; `Stdio::piped()` gives a
    /// green [`ChildStderr`].
    pub fn stderr<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// The program to run.
    pub fn get_program(&self) -> &OsStr {
        self.inner.get_program()
    }

    /// The std command inside, for options this wrapper does not repeat
    /// (`CommandExt`: `uid`, `process_group`, `pre_exec`...). Standard
    /// streams set here are not seen by [`Command::output`]'s defaults: set
    /// them with [`Command::stdout`] and friends.
    pub fn as_std_mut(&mut self) -> &mut stdprocess::Command {
        &mut self.inner
    }

    /// The std command inside.
    pub fn as_std(&self) -> &stdprocess::Command {
        &self.inner
    }

    /// Starts the child. Its piped streams are green.
    ///
    /// # Errors
    ///
    /// As [`std::process::Command::spawn`] (for example `NotFound`), or a
    /// failure to make a pipe non-blocking.
    pub fn spawn(&mut self) -> io::Result<Child> {
        Child::from_std(self.inner.spawn()?)
    }

    /// Runs the child to its end, collecting its output. As in std,
    /// standard output and error are captured and standard input is empty
    /// unless configured otherwise.
    ///
    /// # Errors
    ///
    /// Spawning or reading failed.
    pub fn output(&mut self) -> io::Result<Output> {
        // std::process::Command has no "unset": put back spawn's default
        // (inherit) afterwards for what we defaulted here.
        let defaults = [!self.stdin_set, !self.stdout_set, !self.stderr_set];
        if defaults[0] {
            self.inner.stdin(Stdio::null());
        }
        if defaults[1] {
            self.inner.stdout(Stdio::piped());
        }
        if defaults[2] {
            self.inner.stderr(Stdio::piped());
        }
        let child = self.inner.spawn();
        if defaults[0] {
            self.inner.stdin(Stdio::inherit());
        }
        if defaults[1] {
            self.inner.stdout(Stdio::inherit());
        }
        if defaults[2] {
            self.inner.stderr(Stdio::inherit());
        }
        Child::from_std(child?)?.wait_with_output()
    }

    /// Runs the child to its end (standard streams inherited unless
    /// configured) and returns its exit status.
    ///
    /// # Errors
    ///
    /// Spawning failed.
    pub fn status(&mut self) -> io::Result<ExitStatus> {
        self.spawn()?.wait()
    }
}

impl From<stdprocess::Command> for Command {
    fn from(inner: stdprocess::Command) -> Command {
        Command { inner, stdin_set: false, stdout_set: false, stderr_set: false }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// A running (or finished) child process, like [`std::process::Child`],
/// with green pipes and a green [`wait`](Child::wait).
///
/// Dropping it neither kills nor waits for the process (as in std).
///
/// ```
/// use std::time::Duration;
/// use eventlet::process::Command;
///
/// let mut child = Command::new("sleep").arg("10").spawn()?;
/// assert_eq!(child.wait_timeout(Duration::from_millis(10))?, None);
/// child.kill()?;
/// assert!(!child.wait()?.success());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Child {
    /// The child's standard input, if piped.
    pub stdin: Option<ChildStdin>,
    /// The child's standard output, if piped.
    pub stdout: Option<ChildStdout>,
    /// The child's standard error, if piped.
    pub stderr: Option<ChildStderr>,
    inner: stdprocess::Child,
}

impl Child {
    /// Wraps a child spawned by std, making its pipes green.
    ///
    /// # Errors
    ///
    /// A pipe could not be made non-blocking.
    pub fn from_std(mut inner: stdprocess::Child) -> io::Result<Child> {
        let stdin = inner.stdin.take().map(ChildStdin::new).transpose()?;
        let stdout = inner.stdout.take().map(|p| ChildStdout::new(p.into())).transpose()?;
        let stderr = inner.stderr.take().map(|p| ChildStderr::new(p.into())).transpose()?;
        Ok(Child { stdin, stdout, stderr, inner })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Kills the process (`SIGKILL`); see [`std::process::Child::kill`].
    ///
    /// # Errors
    ///
    /// As std.
    pub fn kill(&mut self) -> io::Result<()> {
        self.inner.kill()
    }

    /// The exit status if the child has exited; never waits.
    ///
    /// # Errors
    ///
    /// As [`std::process::Child::try_wait`].
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// Waits for the child to exit, parking only the calling green thread
    /// (see the [module docs](self) for how). Closes the child's standard
    /// input first, as std does.
    ///
    /// # Errors
    ///
    /// As [`std::process::Child::wait`].
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.wait_deadline(None).map(|s| s.expect("no deadline"))
    }

    /// Waits at most `timeout` for the child to exit; `Ok(None)` if it is
    /// still running. Closes the child's standard input first.
    ///
    /// # Errors
    ///
    /// As [`std::process::Child::wait`].
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    fn wait_deadline(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        drop(self.stdin.take());
        if let Some(status) = self.inner.try_wait()? {
            return Ok(Some(status));
        }
        if let Some(pidfd) = pidfd_open(self.inner.id()) {
            let pidfd = Evented::new(pidfd);
            loop {
                // Readable once the child has exited; an exit before the
                // registration is reported by it too.
                let woke = pidfd.wait(Direction::Read, deadline)?;
                if let Some(status) = self.inner.try_wait()? {
                    return Ok(Some(status));
                }
                if woke == Wakeup::TimedOut {
                    return Ok(None);
                }
            }
        }
        let mut interval = FIRST_POLL_INTERVAL;
        loop {
            let mut nap = interval;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                nap = nap.min(left);
            }
            sleep(nap);
            if let Some(status) = self.inner.try_wait()? {
                return Ok(Some(status));
            }
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
        }
    }

    /// Waits for the child to exit, collecting all of its standard output
    /// and error (each only if piped) while it runs; closes its standard
    /// input first.
    ///
    /// If it fails or unwinds (an expired [`Timeout`](crate::Timeout), a
    /// kill), the child, which nobody can reach any more, is killed and
    /// reaped (Python's `subprocess.run` does the same on a timeout);
    /// [`Command::output`] goes through here.
    ///
    /// # Errors
    ///
    /// Reading or waiting failed.
    pub fn wait_with_output(self) -> io::Result<Output> {
        // Nobody can reach the child after this call: if it fails or
        // unwinds (a timeout, a kill), kill and reap it rather than leave a
        // process running and then a zombie.
        let mut guard = ReapOnDrop(Some(self));
        let out = guard.0.as_mut().expect("set above").collect_output()?;
        guard.0 = None;
        Ok(out)
    }

    fn collect_output(&mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        // Read standard error on a helper green thread so that neither pipe
        // can fill up while we read the other.
        let stderr_reader = self.stderr.take().map(|mut err| {
            KillOnDrop(Some(spawn(move || {
                let mut buf = Vec::new();
                err.read_to_end(&mut buf).map(|_| buf)
            })))
        });
        let mut stdout = Vec::new();
        if let Some(mut out) = self.stdout.take() {
            out.read_to_end(&mut stdout)?;
        }
        let stderr = match stderr_reader {
            Some(mut r) => {
                let h = r.0.take().expect("joined once");
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?
            }
            None => Vec::new(),
        };
        let status = self.wait()?;
        Ok(Output { status, stdout, stderr })
    }

    /// The std child inside (its pipes have been taken out into this
    /// `Child`).
    pub fn as_std_mut(&mut self) -> &mut stdprocess::Child {
        &mut self.inner
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("id", &self.id())
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
}

/// Kills and reaps a child whose output was being collected when that
/// failed or unwound. The reaping waits on a green thread of its own (the
/// failing one may be unwinding, and then cannot wait).
struct ReapOnDrop(Option<Child>);

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            if !matches!(child.inner.try_wait(), Ok(Some(_))) {
                crate::spawn_n(move || {
                    let _ = child.wait();
                });
            }
        }
    }
}

/// Kills a helper green thread if its owner unwinds before joining it.
struct KillOnDrop<T: 'static>(Option<crate::JoinHandle<T>>);

impl<T: 'static> Drop for KillOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.kill();
        }
    }
}

macro_rules! pipe_common {
    ($name:ident, $inner:ty, $what:literal) => {
        impl $name {
            fn new(p: $inner) -> io::Result<$name> {
                p.set_nonblocking(true)?;
                Ok($name { inner: Evented::new(p) })
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.inner.get().as_raw_fd()
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.inner.get().as_fd()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct($what).field("fd", &self.as_raw_fd()).finish()
            }
        }
    };
}

/// The child's standard input: a green pipe. Dropping it closes the pipe
/// (the child sees end of file).
pub struct ChildStdin {
    inner: Evented<pipe::Sender>,
}

/// The child's standard output: a green pipe.
pub struct ChildStdout {
    inner: Evented<pipe::Receiver>,
}

/// The child's standard error: a green pipe.
pub struct ChildStderr {
    inner: Evented<pipe::Receiver>,
}

impl ChildStdin {
    fn new(p: stdprocess::ChildStdin) -> io::Result<ChildStdin> {
        let p = pipe::Sender::from(p);
        p.set_nonblocking(true)?;
        Ok(ChildStdin { inner: Evented::new(p) })
    }
}

impl AsRawFd for ChildStdin {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.get().as_raw_fd()
    }
}

impl AsFd for ChildStdin {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.get().as_fd()
    }
}

impl fmt::Debug for ChildStdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildStdin").field("fd", &self.as_raw_fd()).finish()
    }
}

pipe_common!(ChildStdout, pipe::Receiver, "ChildStdout");
pipe_common!(ChildStderr, pipe::Receiver, "ChildStderr");

green_write!(ChildStdin, _this => None);

green_read!(ChildStdout, _this => None);
green_read!(ChildStderr, _this => None);
