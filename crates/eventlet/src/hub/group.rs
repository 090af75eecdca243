//! A group of hubs: one per core, each on its own OS thread.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::handle::{report_stranded, root_view, spawn_joinable};
use super::watchdog::{self, Stall};
use super::{peek_hub, try_with_hub, with_hub, Handle, Hub, HubGone, HubShared, Kill, Remote, RemoteJoinHandle, Stats};
use super::{TaskRef, ThreadInfo};
use crate::channel;
use crate::greenthread::{current, park, park_timeout};

/// How often the root of a closing hub looks whether its green threads
/// are done (handles held elsewhere may keep its loop from returning).
const CLOSING_TICK: Duration = Duration::from_millis(10);

/// How long [`inspect`] waits for each hub's answer.
pub(crate) const INSPECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The live groups of this process, for [`inspect`] and the console.
static GROUPS: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

/// The number of cores this process may use: what
/// [`std::thread::available_parallelism`] says (it honours the CPU
/// affinity mask and a cgroup CPU quota), or 1 if it cannot tell.
///
/// ```
/// assert!(eventlet::hub::cores() >= 1);
/// ```
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

impl Hub {
    /// Publishes how many green threads are alive (for [`Group`]'s load).
    #[inline]
    pub(super) fn count_live(&self) {
        // Written by this thread only: a plain store.
        self.shared.live.store(self.tasks.borrow().len() - 1, Ordering::Relaxed);
    }
}

/// N hubs on N OS threads, one per core by default.
///
/// Green threads never move between OS threads (that keeps `Rc`, `RefCell`
/// and thread-locals sound), so a program uses several cores the way
/// Seastar, glommio and monoio do: one hub per core, work placed on a hub
/// when it starts and kept there. A [`Group`] is those hubs: it starts
/// them ([`cores`] of them unless told otherwise), places `Send` closures
/// on the least loaded one or on a chosen one, shows what every hub is
/// doing ([`Group::inspect`], [`inspect`], the [`backdoor`](crate::backdoor)
/// console), watches them all ([`Group::watchdog`]) and shuts them down
/// ([`Group::join`], [`Group::shutdown`]).
///
/// ```
/// let group = eventlet::hub::Group::with_hubs(2)?;
/// let jobs: Vec<_> = (0..8u64)
///     .map(|i| group.spawn(move || {
///         // A green thread on one of the group's hubs: it may block, use
///         // `Rc`, spawn more green threads; it stays on that hub.
///         eventlet::sleep(std::time::Duration::from_millis(1));
///         i * i
///     }).unwrap())
///     .collect();
/// let sum: u64 = jobs.into_iter().map(|j| j.join().unwrap()).sum();
/// assert_eq!(sum, 140);
/// group.join();
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Load
///
/// A hub's load is the number of its green threads alive, plus the
/// closures sent to it through the group that have not started yet (so a
/// burst of spawns spreads out before the hubs get to run them; in the
/// moment between a hub taking such a closure and starting it, it counts
/// twice). It counts green threads, not the CPU they use: a hub with one green thread in a
/// busy loop looks less loaded than one with ten idle connections.
/// Servers ([`Server::workers`](crate::Server::workers)) balance their
/// connections themselves.
///
/// `Send + Sync`: spawn onto it from any thread or green thread. Dropping
/// it without [`join`](Group::join) or [`shutdown`](Group::shutdown)
/// detaches the hubs: each one's thread ends once its green threads are
/// done and no other handle to it is left.
pub struct Group {
    inner: Arc<Inner>,
    /// One per hub: while the group holds them, an idle hub waits for work.
    handles: Vec<Handle>,
    threads: Vec<Option<std::thread::JoinHandle<()>>>,
    /// Each hub's thread sends its index here as it ends.
    ended: channel::Receiver<usize>,
}

struct Inner {
    name: String,
    members: Vec<Member>,
    /// Where the search for the least loaded hub starts (ties rotate).
    next: AtomicUsize,
}

struct Member {
    shared: Arc<HubShared>,
    thread: String,
    /// Closures sent through the group that have not started yet.
    queued: Arc<AtomicUsize>,
    control: Arc<Control>,
}

/// What the group tells a hub's thread.
#[derive(Default)]
struct Control {
    /// End once no green thread is left, whoever holds a handle.
    closing: AtomicBool,
    /// Kill every green thread left.
    killing: AtomicBool,
    /// Green threads killed so far.
    killed: AtomicUsize,
}

/// Configures a [`Group`]: how many hubs, and their threads' names.
#[derive(Debug, Clone, Default)]
pub struct GroupBuilder {
    hubs: Option<usize>,
    name: Option<String>,
}

impl GroupBuilder {
    /// How many hubs (default: [`cores`]).
    pub fn hubs(mut self, n: usize) -> GroupBuilder {
        self.hubs = Some(n);
        self
    }

    /// The prefix of the hubs' OS thread names: `NAME-0`, `NAME-1`, ...
    /// (default `eventlet-hub`).
    pub fn name(mut self, name: impl Into<String>) -> GroupBuilder {
        self.name = Some(name.into());
        self
    }

    /// Starts the hubs.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for 0 hubs; the OS refused a thread, or a hub could
    /// not be made on it (then the hubs already started end).
    pub fn build(self) -> std::io::Result<Group> {
        let n = self.hubs.unwrap_or_else(cores);
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "a hub group needs at least one hub"));
        }
        let name = self.name.unwrap_or_else(|| "eventlet-hub".to_owned());
        let (ended_tx, ended) = channel::unbounded();
        let mut members = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for index in 0..n {
            let thread = format!("{name}-{index}");
            let control = Arc::new(Control::default());
            let (tx, rx) = std::sync::mpsc::channel();
            let ctl = control.clone();
            let ended = Ended(ended_tx.clone(), index);
            let joiner = std::thread::Builder::new().name(thread.clone()).spawn(move || {
                let _ended = ended;
                let made = try_with_hub(|h| {
                    h.serving.set(true);
                    Handle::new(h.shared.clone())
                });
                let Some(handle) = made else { return };
                if tx.send(handle).is_err() {
                    return;
                }
                drop(tx);
                hub_main(&ctl);
            })?;
            let handle = rx
                .recv()
                .map_err(|_| std::io::Error::other(format!("the hub thread {thread} could not make its hub")))?;
            members.push(Member { shared: handle.shared.clone(), thread, queued: Arc::default(), control });
            handles.push(handle);
            threads.push(Some(joiner));
        }
        let inner = Arc::new(Inner { name, members, next: AtomicUsize::new(0) });
        let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        groups.retain(|g| g.strong_count() > 0);
        groups.push(Arc::downgrade(&inner));
        drop(groups);
        Ok(Group { inner, handles, threads, ended })
    }
}

/// Sends its hub's index when the hub's thread ends, however it ends.
struct Ended(channel::Sender<usize>, usize);

impl Drop for Ended {
    fn drop(&mut self) {
        // Unbounded: never waits (this may run while unwinding).
        let _ = self.0.send(self.1);
    }
}

/// The root of a group's hub thread: park while anything may still happen.
fn hub_main(control: &Control) {
    loop {
        if control.closing.load(Ordering::SeqCst) {
            park_timeout(CLOSING_TICK);
        } else {
            park();
        }
        if control.killing.load(Ordering::SeqCst) {
            kill_all(control);
        }
        let (idle, left) = root_view();
        let closing = control.closing.load(Ordering::SeqCst);
        if left == 0 && closing {
            return;
        }
        // Closing, green threads that nothing can wake any more are killed
        // at once (they could never finish), so that they unwind rather
        // than leak with the hub.
        if idle && !(closing && kill_all(control) > 0) {
            report_stranded(left);
            return;
        }
    }
}

/// Kills every green thread of this hub not killed yet (from its root);
/// returns how many.
fn kill_all(control: &Control) -> usize {
    let victims: Vec<TaskRef> = with_hub(|h| {
        h.tasks
            .borrow()
            .iter()
            .map(|(_, t)| t)
            .filter(|t| !t.is_root() && !t.is_done() && t.kill.get() == Kill::No)
            .cloned()
            .collect()
    });
    let n = victims.len();
    for t in victims {
        with_hub(|h| h.kill(&t));
        control.killed.fetch_add(1, Ordering::SeqCst);
    }
    n
}

/// Wakes the root of the hub (its id and slot are fixed: see `Hub::new`).
fn wake_root(shared: &HubShared) {
    shared.send(Remote::Unpark { key: 0, id: shared.id << 40 });
}

/// Drops the count of queued spawns when the spawned closure starts (or is
/// dropped unrun).
struct Started(Arc<AtomicUsize>);

impl Drop for Started {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Group {
    /// A group of [`cores`] hubs.
    ///
    /// # Errors
    ///
    /// See [`GroupBuilder::build`].
    pub fn new() -> std::io::Result<Group> {
        Group::builder().build()
    }

    /// A group of `n` hubs.
    ///
    /// # Errors
    ///
    /// See [`GroupBuilder::build`].
    pub fn with_hubs(n: usize) -> std::io::Result<Group> {
        Group::builder().hubs(n).build()
    }

    /// A builder: the number of hubs, their threads' names.
    pub fn builder() -> GroupBuilder {
        GroupBuilder::default()
    }

    /// How many hubs.
    pub fn len(&self) -> usize {
        self.inner.members.len()
    }

    /// Always `false`: a group has at least one hub.
    pub fn is_empty(&self) -> bool {
        self.inner.members.is_empty()
    }

    /// A handle to hub `index` (`0..len()`).
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index]
    }

    /// The load of hub `index`: its green threads alive, plus closures sent
    /// to it through the group that have not started (see the
    /// [`Group`] docs).
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn load(&self, index: usize) -> usize {
        let m = &self.inner.members[index];
        m.shared.live.load(Ordering::Relaxed) + m.queued.load(Ordering::Relaxed)
    }

    /// The index of the least loaded hub whose thread still runs (ties go
    /// round the group).
    pub fn least_loaded(&self) -> usize {
        let n = self.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| (!self.inner.members[i].shared.alive.load(Ordering::Relaxed), self.load(i)))
            .unwrap_or(0)
    }

    /// Spawns a green thread running `f` on the least loaded hub.
    ///
    /// # Errors
    ///
    /// [`HubGone`] with `f` if that hub's thread has ended (only after a
    /// shutdown, or if it panicked).
    pub fn spawn<F, T>(&self, f: F) -> Result<RemoteJoinHandle<T>, HubGone<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_on(self.least_loaded(), f)
    }

    /// Spawns a green thread running `f` on hub `index`.
    ///
    /// # Errors
    ///
    /// [`HubGone`] with `f` if that hub's thread has ended.
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn spawn_on<F, T>(&self, index: usize, f: F) -> Result<RemoteJoinHandle<T>, HubGone<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let m = &self.inner.members[index];
        m.queued.fetch_add(1, Ordering::Relaxed);
        spawn_joinable(&m.shared, f, Started(m.queued.clone()))
    }

    /// What every hub of the group is doing: its counters and green
    /// threads, asked of each hub (a hub held by a green thread that does
    /// not yield cannot answer: its report says so after a second).
    pub fn inspect(&self) -> Vec<HubReport> {
        self.inner.reports(INSPECT_TIMEOUT)
    }

    /// Starts one watchdog OS thread over all the group's hubs: see
    /// [`watchdog`](super::watchdog) (`report` is called from that thread;
    /// [`Stall::hub`] says which hub). It stops when the hubs are gone.
    pub fn watchdog(&self, threshold: Duration, report: Option<Box<dyn Fn(Stall) + Send>>) {
        let hubs = self.inner.members.iter().map(|m| Arc::downgrade(&m.shared)).collect();
        watchdog::start(hubs, threshold, report);
    }

    /// Waits until every hub's green threads are done and no other
    /// [`Handle`] to it is left; the hubs' threads end.
    ///
    /// # Panics
    ///
    /// If called from one of the group's own hubs (a green thread of the
    /// group, or its console): that would wait for itself forever. If a
    /// hub's thread panicked (a bug: green threads' panics stay in them).
    pub fn join(mut self) {
        self.refuse_own_hub("join");
        self.handles.clear();
        self.wait(None);
        self.reap();
    }

    /// Shuts the group down gracefully: every hub ends once its green
    /// threads are done (handles held elsewhere no longer keep it), and
    /// green threads still alive after `grace` are killed (unwound at the
    /// point where they wait, so their destructors run; see
    /// [`JoinHandle::kill`](crate::JoinHandle::kill)), and so are, at once,
    /// those that nothing can wake any more (they could never finish).
    /// Returns how many were killed. A green thread that catches its kill and goes on keeps its
    /// hub, and this call, waiting.
    ///
    /// # Panics
    ///
    /// If called from one of the group's own hubs (as
    /// [`join`](Group::join)). If a hub's thread panicked (a bug).
    pub fn shutdown(mut self, grace: Duration) -> usize {
        self.refuse_own_hub("shutdown");
        self.handles.clear();
        for m in &self.inner.members {
            m.control.closing.store(true, Ordering::SeqCst);
            wake_root(&m.shared);
        }
        if !self.wait(crate::time::deadline_after(grace)) {
            for (m, t) in self.inner.members.iter().zip(&self.threads) {
                if t.is_some() {
                    m.control.killing.store(true, Ordering::SeqCst);
                    wake_root(&m.shared);
                }
            }
            self.wait(None);
        }
        self.reap();
        self.inner.members.iter().map(|m| m.control.killed.load(Ordering::SeqCst)).sum()
    }

    /// Panics if the calling OS thread is one of the group's hubs.
    fn refuse_own_hub(&self, what: &str) {
        let here = peek_hub(|h| h.id);
        if let Some(i) = self.inner.members.iter().position(|m| Some(m.shared.id) == here) {
            panic!(
                "eventlet::hub::Group::{what} called on hub {i} of the group itself: it would wait for its own \
                 thread to end, forever (call it from outside the group)"
            );
        }
    }

    /// Waits for the hubs' threads to end, until `deadline`; whether all did.
    fn wait(&mut self, deadline: Option<Instant>) -> bool {
        while self.threads.iter().any(|t| t.as_ref().is_some_and(|t| !t.is_finished())) {
            let got = match deadline {
                None => self.ended.recv().ok(),
                Some(d) => self.ended.recv_deadline(d).ok(),
            };
            match got {
                Some(i) => {
                    if let Some(t) = self.threads[i].take() {
                        join_thread(t);
                    }
                }
                None if deadline.is_some() => return false,
                None => break,
            }
        }
        true
    }

    /// Joins the threads that ended.
    fn reap(&mut self) {
        for t in self.threads.iter_mut().filter_map(Option::take) {
            join_thread(t);
        }
    }
}

fn join_thread(t: std::thread::JoinHandle<()>) {
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loads: Vec<usize> = (0..self.len()).map(|i| self.load(i)).collect();
        f.debug_struct("Group").field("name", &self.inner.name).field("loads", &loads).finish()
    }
}

impl Inner {
    fn reports(&self, timeout: Duration) -> Vec<HubReport> {
        let deadline = Instant::now() + timeout;
        let asked: Vec<_> = self.members.iter().map(|m| ask(&m.shared)).collect();
        self.members
            .iter()
            .zip(asked)
            .enumerate()
            .map(|(index, (m, rx))| {
                let answer = rx.and_then(|rx| rx.recv_deadline(deadline).ok());
                let mut r = HubReport::new(&m.shared, m.thread.clone(), answer);
                r.group = Some((self.name.clone(), index));
                r
            })
            .collect()
    }
}

/// Asks the hub of `shared` for its counters and green threads; `None` if
/// its thread has ended.
fn ask(shared: &HubShared) -> Option<channel::Receiver<(Stats, Vec<ThreadInfo>)>> {
    let (tx, rx) = channel::bounded(1);
    let sent = shared.send_with(|| {
        Remote::Spawn(Box::new(move || {
            let _ = tx.try_send(snapshot(true));
        }))
    });
    sent.then_some(rx)
}

/// This hub's counters and green threads, leaving out the calling green
/// thread if `without_caller` (an inspector sent from another hub is not
/// what the user wants to see).
fn snapshot(without_caller: bool) -> (Stats, Vec<ThreadInfo>) {
    let (me, root) = (current().id(), with_hub(|h| h.cur().is_root()));
    let mut stats = super::stats();
    let mut threads = super::threads();
    if without_caller && !root {
        threads.retain(|t| t.id != me);
        stats.green_threads -= 1;
        stats.stacks_in_use = stats.stacks_in_use.saturating_sub(1);
    }
    (stats, threads)
}

/// One hub as [`Group::inspect`] and [`inspect`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubReport {
    /// The hub's id ([`Handle::id`]).
    pub id: u64,
    /// Its OS thread's name.
    pub thread: String,
    /// The group's name (its threads' prefix) and the hub's index in it,
    /// if it belongs to one.
    pub group: Option<(String, usize)>,
    /// Green threads alive (known even when the hub does not answer).
    pub green_threads: usize,
    /// Green threads switched to so far (known even when the hub does not
    /// answer).
    pub switches: u64,
    /// Its counters and green threads, or `None` when it did not answer in
    /// time (a green thread holds it, or its thread has ended).
    pub answer: Option<(Stats, Vec<ThreadInfo>)>,
}

impl HubReport {
    fn new(shared: &HubShared, thread: String, answer: Option<(Stats, Vec<ThreadInfo>)>) -> HubReport {
        HubReport {
            id: shared.id,
            thread,
            group: None,
            // The answer leaves the inspector out; the counter cannot.
            green_threads: answer.as_ref().map_or_else(|| shared.live.load(Ordering::Relaxed), |a| a.0.green_threads),
            switches: shared.switches.load(Ordering::Relaxed),
            answer,
        }
    }
}

impl fmt::Display for HubReport {
    /// One heading line: id, thread, group, green threads, and whether it
    /// answered.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hub {} (thread {:?}", self.id, self.thread)?;
        if let Some((name, i)) = &self.group {
            write!(f, ", group {name:?} #{i}")?;
        }
        write!(f, "): {} green threads, {} switches", self.green_threads, self.switches)?;
        if self.answer.is_none() {
            write!(f, "; did not answer (a green thread holds it, or it has ended)")?;
        }
        Ok(())
    }
}

/// What every hub a console should show is doing: the calling thread's hub
/// first (answered at once), then each hub of every live [`Group`] of the
/// process, each asked and given up on after a second.
///
/// ```
/// let group = eventlet::hub::Group::with_hubs(2)?;
/// let reports = eventlet::hub::inspect();
/// assert_eq!(reports.len(), 3); // this thread's hub and the group's two
/// assert!(reports.iter().all(|r| r.answer.is_some()));
/// group.join();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn inspect() -> Vec<HubReport> {
    let here = with_hub(|h| h.shared.clone());
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    let groups: Vec<Arc<Inner>> = {
        let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        groups.retain(|g| g.strong_count() > 0);
        groups.iter().filter_map(Weak::upgrade).collect()
    };
    let mut own = HubReport::new(&here, name, Some(snapshot(false)));
    let mut out = Vec::new();
    for g in &groups {
        for r in g.reports(INSPECT_TIMEOUT) {
            if r.id == here.id {
                // The console runs on a group's hub: show it as such.
                own.group = r.group.clone();
            } else {
                out.push(r);
            }
        }
    }
    out.insert(0, own);
    out
}
