//! Green-thread stacks: pooled, lazily committed, each with a guard page.
//!
//! Stacks are carved out of large anonymous mappings ("chunks"). Each stack
//! slot is one guard page followed by the usable stack:
//!
//! ```text
//! chunk: [guard|stack .......][guard|stack .......][guard|stack .......]
//!         ^limit        base^
//! ```
//!
//! On Linux >= 6.13 the guards are installed with
//! `madvise(MADV_GUARD_INSTALL)`, which does not split the mapping: a million
//! stacks cost a few hundred kernel mappings. On older kernels the guard is
//! an `mprotect(PROT_NONE)` page, which splits the mapping, so every stack
//! costs two entries against `vm.max_map_count`. Setting the environment
//! variable `EVENTLET_STACK_GUARD=mprotect` forces that older way (for tests
//! and comparisons).
//!
//! Memory is committed lazily by the kernel: a stack costs only the pages it
//! touches. When a stack returns to the pool after running deep, the pages
//! below the top [`WARM_BYTES`] are given back with `MADV_DONTNEED`; whether
//! it ran deep is read from a sample of words at that depth (they are zero
//! until something writes there), and every 1024th release trims
//! unconditionally in case a deep frame wrote only zeroes there.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::sys::{self, page_size, syscall};

/// The default usable size of a green thread's stack: 256 KiB of address
/// space, of which only the touched pages cost memory.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// The smallest stack a green thread may ask for.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// The top of a stack that stays committed when it returns to the pool.
///
/// Ordinary library code runs deeper than one would guess (an HTTP request
/// through ureq touches ~21 KiB of stack), and a stack trimmed below its
/// working depth costs an `madvise` on return and page faults on its next
/// use: 16 KiB here made a thousand concurrent HTTP fetches spend 5% of
/// their CPU time on that. At most [`WARM_STACKS`] free stacks keep this
/// much, so a burst leaves at most 32 MiB committed in the pool.
const WARM_BYTES: usize = 32 * 1024;

/// How many free stacks of one size keep their warm pages; further ones are
/// trimmed completely when returned (they keep their address space).
const WARM_STACKS: usize = 1024;

/// Largest number of stacks carved from one mapping.
const MAX_CHUNK_STACKS: usize = 1024;

/// `madvise` advice that installs a guard region (Linux 6.13).
const MADV_GUARD_INSTALL: libc::c_int = 102;

const GUARD_UNKNOWN: u8 = 0;
const GUARD_MADVISE: u8 = 1;
const GUARD_MPROTECT: u8 = 2;

/// Which way guard pages are installed in this process (probed once).
static GUARD_MODE: AtomicU8 = AtomicU8::new(GUARD_UNKNOWN);

/// How guard pages are installed on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)` inside one large mapping (Linux >= 6.13).
    Madvise,
    /// `mprotect(PROT_NONE)`: each guard splits the mapping.
    Mprotect,
    /// No stack has been allocated yet, so the kernel was not asked.
    Unknown,
}

/// Returns how guard pages are installed in this process.
pub(crate) fn guard_mode() -> GuardMode {
    match GUARD_MODE.load(Ordering::Relaxed) {
        GUARD_MADVISE => GuardMode::Madvise,
        GUARD_MPROTECT => GuardMode::Mprotect,
        _ => GuardMode::Unknown,
    }
}

/// One anonymous mapping that stacks are carved from. Unmapped when the last
/// stack carved from it is dropped.
struct Chunk {
    base: usize,
    len: usize,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is a mapping this chunk created and owns;
        // no stack carved from it is alive any more (each holds an `Rc`).
        let _ = syscall!(munmap(self.base as *mut libc::c_void, self.len));
    }
}

/// A green thread's stack: a guard page and `size` usable bytes above it.
///
/// One word (its bounds live in a box made once, when the stack is carved):
/// a stack moves by value on every spawn and every return to the pool, and a
/// three-word value was copied through memory in pieces and read back whole,
/// which stalls the CPU's store forwarding.
pub(crate) struct GreenStack(Box<Bounds>);

struct Bounds {
    _chunk: Rc<Chunk>,
    /// Lowest address: the start of the guard page.
    limit: usize,
    /// Highest address: where the stack starts growing down from.
    base: usize,
}

impl GreenStack {
    /// Usable bytes (excluding the guard page).
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.0.base - self.0.limit - page_size()
    }

    /// The guard page's address range.
    #[inline]
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.0.limit, self.0.limit + page_size())
    }

    /// Gives back the pages below `keep` bytes from the top.
    fn trim(&self, keep: usize) {
        let lo = self.0.limit + page_size();
        let hi = self.0.base.saturating_sub(keep);
        if hi > lo {
            // SAFETY: `lo..hi` lies inside this stack's usable range, which
            // this `GreenStack` owns exclusively; no code runs on it now.
            let _ = syscall!(madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED));
        }
    }

    /// Whether anything was written just below the warm top since the last
    /// trim (a sample of one cache line).
    fn ran_deep(&self) -> bool {
        let at = self.0.base - WARM_BYTES - 64;
        if at < self.0.limit + page_size() {
            return false;
        }
        let words = at as *const u64;
        // SAFETY: `at..at+64` lies in this stack's usable (readable) range;
        // reading a page never written maps the shared zero page. Volatile
        // so the compiler does not assume the memory unchanged.
        (0..8).any(|i| unsafe { words.add(i).read_volatile() } != 0)
    }
}

// SAFETY: (1) `limit..base` is a readable and writable region owned by this
// value, with a guard page at its bottom (`limit..limit+page`) that faults on
// access; (2) both addresses are page aligned, so aligned to STACK_ALIGNMENT;
// (3) the usable part is at least MIN_STACK_SIZE > corosensei's minimum.
unsafe impl corosensei::stack::Stack for GreenStack {
    #[inline]
    fn base(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.0.base).expect("stack base is not null")
    }

    #[inline]
    fn limit(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.0.limit).expect("stack limit is not null")
    }
}

/// Free stacks of one size.
struct SizeClass {
    size: usize,
    free: Vec<GreenStack>,
    next_chunk: usize,
    releases: Cell<u32>,
}

/// A per-hub pool of stacks, one free list per stack size.
pub(crate) struct StackPool {
    classes: Vec<SizeClass>,
    /// Stacks handed out and not yet returned.
    outstanding: usize,
}

/// Rounds a requested size up to whole pages and checks the minimum.
pub(crate) fn checked_size(size: usize) -> io::Result<usize> {
    if size < MIN_STACK_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("green thread stack size {size} is below the minimum of {MIN_STACK_SIZE} bytes"),
        ));
    }
    let page = page_size();
    size.checked_add(page - 1)
        .map(|s| s & !(page - 1))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "green thread stack size overflows"))
}

impl StackPool {
    pub(crate) fn new() -> StackPool {
        StackPool { classes: Vec::new(), outstanding: 0 }
    }

    /// Number of stacks in use.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Number of free stacks kept for reuse.
    pub(crate) fn pooled(&self) -> usize {
        self.classes.iter().map(|c| c.free.len()).sum()
    }

    /// Takes a stack of `size` usable bytes (already checked and rounded).
    pub(crate) fn get(&mut self, size: usize) -> io::Result<GreenStack> {
        let idx = match self.classes.iter().position(|c| c.size == size) {
            Some(i) => i,
            None => {
                self.classes.push(SizeClass { size, free: Vec::new(), next_chunk: 8, releases: Cell::new(0) });
                self.classes.len() - 1
            }
        };
        let class = &mut self.classes[idx];
        if class.free.is_empty() {
            let n = class.next_chunk;
            carve(size, n, &mut class.free)?;
            class.next_chunk = (n * 2).min(MAX_CHUNK_STACKS);
        }
        self.outstanding += 1;
        Ok(class.free.pop().expect("carve filled the free list"))
    }

    /// Returns a stack to the pool, trimming it if it ran deep.
    pub(crate) fn put(&mut self, stack: GreenStack) {
        self.outstanding -= 1;
        let size = stack.size();
        let Some(class) = self.classes.iter_mut().find(|c| c.size == size) else {
            return;
        };
        let n = class.releases.get().wrapping_add(1);
        class.releases.set(n);
        if class.free.len() >= WARM_STACKS {
            stack.trim(0);
        } else if n % 1024 == 0 || stack.ran_deep() {
            stack.trim(WARM_BYTES);
        }
        class.free.push(stack);
    }
}

/// Maps one chunk of `n` stacks of `size` bytes and pushes them on `out`.
fn carve(size: usize, n: usize, out: &mut Vec<GreenStack>) -> io::Result<()> {
    let page = page_size();
    let slot = size + page;
    let len = slot * n;
    // SAFETY: an anonymous private mapping at an address the kernel picks;
    // no existing memory is affected.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(sys::stack_alloc_error("mmap of a stack chunk", io::Error::last_os_error()));
    }
    let chunk = Rc::new(Chunk { base: ptr as usize, len });
    // Guards go in before any stack is handed out; on failure the chunk is
    // dropped (unmapped) with no stack having escaped.
    for i in 0..n {
        install_guard(chunk.base + i * slot, page)?;
    }
    // Hand out in address order (lowest popped last).
    for i in (0..n).rev() {
        let limit = chunk.base + i * slot;
        out.push(GreenStack(Box::new(Bounds { _chunk: chunk.clone(), limit, base: limit + slot })));
    }
    Ok(())
}

/// Whether `EVENTLET_STACK_GUARD=mprotect` asks for the old-kernel guard
/// pages even where `MADV_GUARD_INSTALL` works (to test that path).
fn mprotect_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os("EVENTLET_STACK_GUARD").is_some_and(|v| v == "mprotect"))
}

/// Makes `addr..addr+page` fault on access.
fn install_guard(addr: usize, page: usize) -> io::Result<()> {
    let p = addr as *mut libc::c_void;
    if mprotect_forced() {
        GUARD_MODE.store(GUARD_MPROTECT, Ordering::Relaxed);
    }
    if GUARD_MODE.load(Ordering::Relaxed) != GUARD_MPROTECT {
        // SAFETY: `p` is the first page of a stack slot in a mapping we own
        // and have not handed out.
        match syscall!(madvise(p, page, MADV_GUARD_INSTALL)) {
            Ok(_) => {
                GUARD_MODE.store(GUARD_MADVISE, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                GUARD_MODE.store(GUARD_MPROTECT, Ordering::Relaxed);
            }
            Err(e) => return Err(sys::stack_alloc_error("madvise(MADV_GUARD_INSTALL)", e)),
        }
    }
    // SAFETY: as above; PROT_NONE only removes access to our own page.
    syscall!(mprotect(p, page, libc::PROT_NONE))
        .map(drop)
        .map_err(|e| sys::stack_alloc_error("mprotect of a guard page", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_and_rounded() {
        assert!(checked_size(MIN_STACK_SIZE - 1).is_err());
        assert_eq!(checked_size(MIN_STACK_SIZE + 1).unwrap(), MIN_STACK_SIZE + page_size());
        let e = checked_size(100).unwrap_err();
        assert!(e.to_string().contains("below the minimum"), "{e}");
    }

    /// The stacks of a chunk tile it: each a guard page and its usable
    /// part, page aligned, none overlapping, and what corosensei is told
    /// matches (base at the top, limit at the guard).
    #[test]
    fn carved_stacks_tile_their_chunk() {
        use corosensei::stack::Stack;
        let page = page_size();
        let mut out = Vec::new();
        carve(MIN_STACK_SIZE, 4, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        let mut bounds: Vec<(usize, usize)> = out.iter().map(|s| (s.0.limit, s.0.base)).collect();
        assert!(bounds.windows(2).all(|w| w[0].0 > w[1].0), "handed out lowest last");
        bounds.sort_unstable();
        assert!(bounds.windows(2).all(|w| w[0].1 == w[1].0), "contiguous, no overlap");
        for (s, (lo, hi)) in out.iter().rev().zip(&bounds) {
            assert_eq!(hi - lo, MIN_STACK_SIZE + page);
            assert_eq!(lo % page, 0);
            assert_eq!(s.size(), MIN_STACK_SIZE);
            assert_eq!(s.guard(), (*lo, lo + page));
            assert_eq!(s.base().get(), *hi);
            assert_eq!(s.limit().get(), *lo);
        }
        // The usable part is readable and writable (the guard is not: see
        // tests/overflow.rs, which faults on it in a child process).
        for s in &out {
            let top = (s.0.base - 8) as *mut u64;
            let bottom = (s.0.limit + page) as *mut u64;
            // SAFETY: both words lie in the usable part of a stack we own.
            unsafe {
                top.write_volatile(1);
                bottom.write_volatile(2);
                assert_eq!((top.read_volatile(), bottom.read_volatile()), (1, 2));
            }
        }
    }

    #[test]
    fn pool_reuses_and_trims() {
        let mut pool = StackPool::new();
        let s = pool.get(DEFAULT_STACK_SIZE).unwrap();
        assert_eq!(s.size(), DEFAULT_STACK_SIZE);
        let base = s.0.base;
        // Dirty a word below the warm zone, as a deep call would.
        let deep = (s.0.base - WARM_BYTES - 64) as *mut u64;
        // SAFETY: inside the usable range of a stack we own.
        unsafe { deep.write_volatile(7) };
        assert!(s.ran_deep());
        pool.put(s);
        let s = pool.get(DEFAULT_STACK_SIZE).unwrap();
        assert_eq!(s.0.base, base, "the pool hands back the stack it got");
        assert!(!s.ran_deep(), "returning a deep stack gave its pages back");
        assert_eq!(pool.outstanding(), 1);
        pool.put(s);
        assert_eq!(pool.outstanding(), 0);
    }
}
