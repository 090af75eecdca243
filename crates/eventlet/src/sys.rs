//! The few raw syscalls `mio`, `socket2` and `std` do not wrap, behind one
//! `syscall!` helper, plus the stack-overflow reporter.
//!
//! Everything here is Linux/Unix specific.

use std::cell::Cell;
use std::io;
use std::sync::Once;

/// Calls a libc function and turns `-1` into the thread's `errno` as an
/// [`io::Error`] (the pattern mio uses).
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)* ) ) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller passes arguments that satisfy the libc function's
        // contract; each call site states why in its own SAFETY comment.
        let res = unsafe { libc::$fn($($arg, )*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// Sets or clears `O_NONBLOCK` on `fd` (for descriptors whose std type
/// has no `set_nonblocking`, such as a `File` over a pipe).
pub(crate) fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = fd.as_raw_fd();
    // SAFETY: `fd` is open (borrowed for this call); F_GETFL takes no
    // argument.
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    let new = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    if new != flags {
        // SAFETY: as above; F_SETFL takes the new flags as an int.
        syscall!(fcntl(fd, libc::F_SETFL, new))?;
    }
    Ok(())
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n <= 0 {
            4096
        } else {
            n as usize
        }
    })
}

/// What the overflow handler needs to know about the green thread running on
/// this OS thread. Plain `Cell`s with `const` initialisers and no destructor,
/// so reading them from a signal handler is a bare thread-local load.
#[derive(Clone, Copy)]
pub(crate) struct RunningInfo {
    /// Lowest address of the guard page of the running green thread's stack.
    pub(crate) guard_lo: usize,
    /// One past the highest address of that guard page.
    pub(crate) guard_hi: usize,
    /// Pointer to the green thread's name bytes (may be null).
    pub(crate) name_ptr: *const u8,
    /// Length of the name.
    pub(crate) name_len: usize,
    /// The green thread's id.
    pub(crate) id: u64,
    /// The usable size of its stack.
    pub(crate) stack_size: usize,
}

impl RunningInfo {
    pub(crate) const NONE: RunningInfo =
        RunningInfo { guard_lo: 0, guard_hi: 0, name_ptr: std::ptr::null(), name_len: 0, id: 0, stack_size: 0 };
}

thread_local! {
    static RUNNING: Cell<*const RunningInfo> = const { Cell::new(std::ptr::null()) };
}

/// Records which green thread runs now (called on every switch): a pointer
/// to its `RunningInfo`, which lives as long as the green thread, or null.
#[inline]
pub(crate) fn set_running(info: *const RunningInfo) {
    RUNNING.with(|r| r.set(info));
}

/// The id of the green thread running on this OS thread, if one is
/// (`None` in the root context and the hub loop).
pub(crate) fn running_green_thread() -> Option<u64> {
    let p = RUNNING.try_with(|r| r.get()).ok()?;
    // SAFETY: a non-null pointer is set only while its green thread runs,
    // and the green thread (and so its info) is alive while it runs.
    (!p.is_null()).then(|| unsafe { (*p).id })
}

static mut OLD_SEGV: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();
static mut OLD_BUS: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();

/// Installs (once per process) a SIGSEGV/SIGBUS handler that recognises a
/// fault in the guard page of the running green thread's stack, prints which
/// green thread overflowed and aborts. Faults it does not recognise go to the
/// handler that was installed before (std's, which reports overflows of OS
/// thread stacks).
pub(crate) fn install_overflow_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (sig, old) in [(libc::SIGSEGV, &raw mut OLD_SEGV), (libc::SIGBUS, &raw mut OLD_BUS)] {
            // SAFETY: (1) `action` is fully initialised before use (zeroed is a
            // valid `sigaction`); (2) `old` points to a static written only
            // here, inside `Once`, before the handler can read it; (3) the
            // handler only does async-signal-safe work.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = overflow_handler as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, (*old).as_mut_ptr());
            }
        }
    });
    ensure_altstack();
}

/// Makes sure this OS thread has an alternate signal stack, so the overflow
/// handler can run when the faulting stack is exhausted. std sets one up for
/// the threads it starts; threads started elsewhere get one here (leaked on
/// purpose: it must outlive every signal the thread can take).
fn ensure_altstack() {
    thread_local! { static DONE: Cell<bool> = const { Cell::new(false) }; }
    if DONE.with(|d| d.replace(true)) {
        return;
    }
    // SAFETY: querying the current alternate stack with a null new-stack
    // pointer only writes into `cur`.
    let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
    if syscall!(sigaltstack(std::ptr::null(), &mut cur)).is_err() {
        return;
    }
    if cur.ss_flags & libc::SS_DISABLE == 0 {
        return;
    }
    let size = libc::SIGSTKSZ.max(64 * 1024);
    let mem = vec![0u8; size].into_boxed_slice();
    let stack = libc::stack_t { ss_sp: Box::leak(mem).as_mut_ptr().cast(), ss_flags: 0, ss_size: size };
    // SAFETY: `stack` describes leaked memory that stays valid for the life
    // of the process.
    let _ = syscall!(sigaltstack(&stack, std::ptr::null_mut()));
}

extern "C" fn overflow_handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let p = RUNNING.with(|r| r.get());
    let running = if p.is_null() {
        RunningInfo::NONE
    } else {
        // SAFETY: a non-null pointer is set only while its green thread runs,
        // and the green thread (and so its info) is alive while it runs.
        unsafe { *p }
    };
    if running.guard_hi != 0 && addr >= running.guard_lo && addr < running.guard_hi {
        let mut buf = Buf::new();
        buf.push(b"\nfatal: green thread ");
        if running.name_ptr.is_null() {
            buf.push(b"<unnamed>");
        } else {
            // SAFETY: the name belongs to the running green thread, which is
            // alive while it runs; the pointer and length were set together.
            buf.push(unsafe { std::slice::from_raw_parts(running.name_ptr, running.name_len) });
        }
        buf.push(b" (id ");
        buf.push_num(running.id);
        buf.push(b") overflowed its stack of ");
        buf.push_num(running.stack_size as u64);
        buf.push(b" bytes; give it a larger one with Builder::stack_size\n");
        // SAFETY: write(2) and abort(3) are async-signal-safe. The raw
        // system call: with the patcher on, `libc::write` is a patched
        // function, which has no business in a signal handler.
        unsafe {
            libc::syscall(libc::SYS_write, 2, buf.data.as_ptr(), buf.len);
            libc::abort();
        }
    }
    // Not ours: hand the signal to whoever handled it before us (with
    // patched calls going to the originals while it runs: std's handler
    // writes its report with `write`).
    #[cfg(all(feature = "monkey-patch", target_os = "linux"))]
    crate::patcher::exempt(|| chain(sig, info, ctx));
    #[cfg(not(all(feature = "monkey-patch", target_os = "linux")))]
    chain(sig, info, ctx);
}

/// Hands a signal the overflow handler does not own to the handler installed
/// before it.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let old = if sig == libc::SIGSEGV { &raw const OLD_SEGV } else { &raw const OLD_BUS };
    // SAFETY: the old action was written inside `Once` before this handler
    // was installed, and is never written again.
    let old = unsafe { (*old).assume_init_ref() };
    let h = old.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // Restore the default and return: the faulting instruction runs again
        // and the default action (a core dump) takes place.
        // SAFETY: `old` is a valid sigaction.
        unsafe {
            libc::sigaction(sig, old, std::ptr::null_mut());
        }
    } else if old.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO and so
        // has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the previous handler was installed without SA_SIGINFO and
        // so takes the signal number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}

/// A fixed buffer for composing a message without allocating.
struct Buf {
    data: [u8; 512],
    len: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf { data: [0; 512], len: 0 }
    }
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.data.len() - self.len);
        self.data[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }
    fn push_num(&mut self, mut n: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&tmp[i..]);
    }
}

/// Reads `/proc/sys/vm/max_map_count` and the number of mappings this process
/// has, for error messages.
pub(crate) fn map_count_status() -> (Option<u64>, Option<u64>) {
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok());
    let cur = std::fs::read_to_string("/proc/self/maps").ok().map(|s| s.lines().count() as u64);
    (max, cur)
}

/// Turns a kernel refusal to map or protect stack memory into an error that
/// names the limit that was hit and how to raise it.
pub(crate) fn stack_alloc_error(what: &str, err: io::Error) -> io::Error {
    if err.raw_os_error() != Some(libc::ENOMEM) {
        return io::Error::new(err.kind(), format!("green thread stack: {what} failed: {err}"));
    }
    let (max, cur) = map_count_status();
    // At the map-count limit even reading `/proc/self/maps` can fail: then,
    // with guard pages that split mappings, that limit is the likely one.
    let mprotect = crate::stack::guard_mode() == crate::stack::GuardMode::Mprotect;
    let msg = match (max, cur) {
        (Some(max), Some(cur)) if cur + 16 >= max => format!(
            "green thread stack: {what} failed: the process has {cur} memory mappings and \
             vm.max_map_count is {max}; raise it with `sysctl -w vm.max_map_count={}` \
             (each stack with an mprotect guard page costs two mappings; Linux >= 6.13 \
             guard pages via MADV_GUARD_INSTALL cost none)",
            max.saturating_mul(4)
        ),
        (max, None) if mprotect => format!(
            "green thread stack: {what} failed ({err}): most likely the process reached \
             vm.max_map_count ({}), as each stack with an mprotect guard page costs two \
             mappings (Linux >= 6.13 guard pages via MADV_GUARD_INSTALL cost none); raise it \
             with `sysctl -w vm.max_map_count=N`, or check free memory",
            max.map_or_else(|| "unknown".to_owned(), |m| m.to_string())
        ),
        _ => format!(
            "green thread stack: {what} failed: out of memory or address space ({err}); \
             check `ulimit -v`, RLIMIT_AS, vm.overcommit_memory and free memory, or use \
             smaller stacks with Builder::stack_size"
        ),
    };
    io::Error::new(io::ErrorKind::OutOfMemory, msg)
}
