//! A [`Server`] spread over a group of hubs, one per core.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;

use super::serve::{accept_loop, Server, Slot, StopHandle};
use super::{TcpListener, TcpStream};
use crate::channel::{self, SendError};
use crate::greenthread::spawn_n;
use crate::hub::Group;

/// Which hub accepts each incoming connection of a [`Workers`] server (the
/// hub that accepts it then serves it, or passes it on to a hub with fewer
/// connections: see [`Workers::rebalance`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// One listening socket, every hub accepting from it: whichever hub
    /// gets to it first takes the next connection, so a busy hub takes
    /// fewer. Every hub is woken for each new connection (one of them
    /// wins the accept), which costs a wake-up per hub and connection.
    Shared,
    /// One `SO_REUSEPORT` socket per hub: the kernel hashes each
    /// connection's addresses to one of them, whatever the hubs' load. No
    /// extra wake-ups; needs a listener bound with
    /// [`TcpListener::bind_reuse_port`] (for any other, `Shared` is used).
    ReusePort,
}

/// A [`Server`] on several hubs: from [`Server::workers`].
///
/// It starts a [`Group`] of hubs and runs an accept loop on each; each
/// connection's handler runs on the hub that accepted it, unless that hub
/// holds clearly more connections than another, which then gets it (so
/// the hubs hold about as many connections each, whichever hub the
/// kernel's wake-ups or hash favour). The connection limit counts every
/// hub's handlers; the [`StopHandle`] stops every
/// accept loop; an accept error on one hub stops the others and reaches
/// the caller of [`serve`](Self::serve), which returns once every accept
/// loop has stopped and every handler has ended (or was killed, after
/// [`shutdown_timeout`](Self::shutdown_timeout)).
///
/// ```
/// use std::io::{Read, Write};
///
/// let server = eventlet::Server::new(eventlet::listen("127.0.0.1:0")?, 10_000).workers(2);
/// let addr = server.local_addr()?;
/// let stop = server.stop_handle();
/// let serving = std::thread::spawn(move || {
///     server.serve(|mut sock, _peer| {
///         let mut buf = [0; 1024];
///         while let Ok(n @ 1..) = sock.read(&mut buf) {
///             if sock.write_all(&buf[..n]).is_err() { break }
///         }
///     })
/// });
/// let mut c = std::net::TcpStream::connect(addr)?;
/// c.write_all(b"hi")?;
/// let mut back = [0; 2];
/// c.read_exact(&mut back)?;
/// assert_eq!(&back, b"hi");
/// drop(c);
/// stop.stop();
/// serving.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Workers {
    server: Server,
    hubs: usize,
    /// `None`: `ReusePort` if the listener has `SO_REUSEPORT`, else `Shared`.
    balance: Option<Balance>,
    rebalance: bool,
    grace: Option<Duration>,
}

impl Server {
    /// Serves on `n` hubs, each on its own OS thread ([`hub::cores`](crate::hub::cores)
    /// gives one per core): see [`Workers`].
    ///
    /// # Panics
    ///
    /// Panics if `n` is 0.
    pub fn workers(self, n: usize) -> Workers {
        assert!(n > 0, "eventlet::Server::workers: at least one hub");
        Workers { server: self, hubs: n, balance: None, rebalance: true, grace: None }
    }
}

impl Workers {
    /// Which hub accepts each connection. Default: [`Balance::ReusePort`]
    /// for a listener bound with [`TcpListener::bind_reuse_port`], else
    /// [`Balance::Shared`].
    pub fn balance(mut self, balance: Balance) -> Workers {
        self.balance = Some(balance);
        self
    }

    /// Whether a hub that holds two connections more than another passes
    /// the ones it accepts to the one with the fewest (default: yes). Off,
    /// each hub serves what it accepts, and the spread is whatever
    /// [`Balance`] gives.
    pub fn rebalance(mut self, on: bool) -> Workers {
        self.rebalance = on;
        self
    }

    /// After a stop, how long handlers still running may go on before
    /// they are killed (unwound where they wait, their destructors run).
    /// Default: no limit, `serve` waits for them.
    pub fn shutdown_timeout(mut self, grace: Duration) -> Workers {
        self.grace = Some(grace);
        self
    }

    /// A handle that stops every accept loop.
    pub fn stop_handle(&self) -> StopHandle {
        self.server.stop_handle()
    }

    /// The listening address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// Serves with `handler` on every hub.
    ///
    /// # Errors
    ///
    /// A hub could not be started, a listener could not be opened, or an
    /// accept error that retrying cannot cure, from any hub (several are
    /// joined in one message, each with its hub's index).
    pub fn serve<F>(self, handler: F) -> io::Result<()>
    where
        F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.serve_with(move || {
            let h = handler.clone();
            move |sock, peer| h(sock, peer)
        })
    }

    /// Serves with a handler made on each hub by `make`: it runs there, so
    /// it need not be `Send` (it may hold `Rc`s, a per-hub cache, ...).
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve); a panic in `make` is an error too.
    pub fn serve_with<M, H>(self, make: M) -> io::Result<()>
    where
        M: Fn() -> H + Send + Sync + 'static,
        H: Fn(TcpStream, SocketAddr) + 'static,
    {
        self.serve_hubs(move || (make(), None))
    }

    /// Serves with a handler and a `make_room` made on each hub by `make`,
    /// as [`serve_with`](Self::serve_with): when the server is full and a
    /// client waits, the `make_room` of the hub whose listener it waits on
    /// may end some of that hub's connections to let it in; when it ends
    /// none, the other hubs' are called (see [`Server::serve_making_room`]).
    ///
    /// # Errors
    ///
    /// As [`serve_with`](Self::serve_with).
    pub fn serve_making_room<M, H, R>(self, make: M) -> io::Result<()>
    where
        M: Fn() -> (H, R) + Send + Sync + 'static,
        H: Fn(TcpStream, SocketAddr) + 'static,
        R: Fn() -> usize + 'static,
    {
        self.serve_hubs(move || {
            let (h, r) = make();
            (h, Some(Box::new(r) as Box<dyn Fn() -> usize>))
        })
    }

    /// Runs an accept loop on every hub, with the handler (and the
    /// `make_room`, if any) `make` gives there.
    fn serve_hubs<M, H>(self, make: M) -> io::Result<()>
    where
        M: Fn() -> (H, Option<Box<dyn Fn() -> usize>>) + Send + Sync + 'static,
        H: Fn(TcpStream, SocketAddr) + 'static,
    {
        let Workers { server, hubs, balance, rebalance, grace } = self;
        let Server { listener, concurrency, shared } = server;
        let listeners = listeners(listener, hubs, balance)?;
        let group = Group::builder().hubs(hubs).name("eventlet-srv").build()?;
        let make = Arc::new(make);
        let counts: Arc<[AtomicUsize]> = (0..hubs).map(|_| AtomicUsize::new(0)).collect();
        let (inboxes, mut receivers): (Vec<_>, Vec<_>) = (0..hubs).map(|_| channel::unbounded()).unzip();
        let mut loops = Vec::with_capacity(hubs);
        for (i, listener) in listeners.into_iter().enumerate() {
            let (make, on_hub) = (make.clone(), shared.clone());
            let spread = Spread { index: i, counts: counts.clone(), inboxes: inboxes.clone() };
            let inbox = receivers.remove(0);
            let spawned = group.spawn_on(i, move || {
                let (handler, make_room) = match panic::catch_unwind(AssertUnwindSafe(|| make())) {
                    Ok((h, r)) => (Rc::new(h), r),
                    Err(p) => {
                        on_hub.stop();
                        let msg =
                            format!("the handler's factory panicked: {}", crate::report::payload_text(p.as_ref()));
                        return Err(io::Error::other(msg));
                    }
                };
                let h = handler.clone();
                spawn_n(move || serve_inbox(&inbox, h));
                let spread = rebalance.then_some(&spread);
                accept_loop(&listener, &on_hub, concurrency, handler, spread, make_room.as_deref())
            });
            match spawned {
                Ok(h) => loops.push(h),
                Err(_) => {
                    shared.stop();
                    group.shutdown(Duration::ZERO);
                    return Err(io::Error::other(format!("hub {i} of the server ended at start")));
                }
            }
        }
        // The accept loops hold the only senders: once they end, so do the
        // inboxes.
        drop(inboxes);
        let mut errors = Vec::new();
        for (i, h) in loops.into_iter().enumerate() {
            let e = match h.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(p) => {
                    io::Error::other(format!("its accept loop panicked: {}", crate::report::payload_text(p.as_ref())))
                }
            };
            shared.stop();
            errors.push((i, e));
        }
        match grace {
            Some(g) => {
                group.shutdown(g);
            }
            None => group.join(),
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.pop().map(|(_, e)| e).unwrap_or_else(|| io::Error::other("no error"))),
            _ => {
                let kind = errors[0].1.kind();
                let all: Vec<String> = errors.iter().map(|(i, e)| format!("hub {i}: {e}")).collect();
                Err(io::Error::new(kind, all.join("; ")))
            }
        }
    }
}

/// How many more connections than the least loaded hub a hub may hold
/// before it passes new ones on. Measured with 1,000 connections over two
/// hubs: a sixteenth of the count on top let the hubs drift 30 apart
/// (6%), which goes straight into their load.
const SLACK: usize = 2;

/// A connection passed from the hub that accepted it to another.
type Handoff = (TcpStream, SocketAddr, Slot);

/// How the accept loop of hub `index` of a [`Workers`] server places its
/// connections: on its own hub, unless another has fewer open.
pub(super) struct Spread {
    index: usize,
    /// Connections open on each hub (handed over ones counted from the
    /// moment they are sent).
    counts: Arc<[AtomicUsize]>,
    /// Each hub's inbox of connections passed to it.
    inboxes: Vec<channel::Sender<Handoff>>,
}

impl Spread {
    /// Counts a connection just accepted on the hub that should serve it,
    /// and passes it there if that is another one; `Some` to serve it here.
    pub(super) fn place(&self, sock: TcpStream, peer: SocketAddr, mut slot: Slot) -> Option<Handoff> {
        if let Some(j) = self.elsewhere() {
            slot.count_on(&self.counts, j);
            // Unbounded: never waits.
            match self.inboxes[j].send((sock, peer, slot)) {
                Ok(()) => return None,
                Err(SendError((sock, peer, mut slot))) => {
                    slot.count_on(&self.counts, self.index);
                    return Some((sock, peer, slot));
                }
            }
        }
        slot.count_on(&self.counts, self.index);
        Some((sock, peer, slot))
    }

    /// The hub to pass the next connection to: the one with the fewest
    /// open, if this hub has [`SLACK`] more or than that.
    fn elsewhere(&self) -> Option<usize> {
        let mine = self.counts[self.index].load(Ordering::Relaxed);
        let (j, least) = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).enumerate().min_by_key(|&(_, n)| n)?;
        (j != self.index && mine >= least + SLACK).then_some(j)
    }
}

/// Serves the connections other hubs pass to this one, until every accept
/// loop has ended and the inbox is empty.
fn serve_inbox<H>(inbox: &channel::Receiver<Handoff>, handler: Rc<H>)
where
    H: Fn(TcpStream, SocketAddr) + 'static,
{
    for (sock, peer, slot) in inbox.iter() {
        let h = handler.clone();
        spawn_n(move || {
            let _slot = slot;
            h(sock, peer);
        });
    }
}

/// One listener per hub: the same socket shared (`Balance::Shared`, or
/// one without `SO_REUSEPORT`), or a socket of its own on the same address.
fn listeners(listener: TcpListener, hubs: usize, balance: Option<Balance>) -> io::Result<Vec<Arc<TcpListener>>> {
    let reuse_port =
        balance != Some(Balance::Shared) && hubs > 1 && SockRef::from(listener.evented().get()).reuse_port()?;
    if !reuse_port {
        let l = Arc::new(listener);
        return Ok(vec![l; hubs]);
    }
    let addr = listener.local_addr()?;
    let mut out = vec![Arc::new(listener)];
    for _ in 1..hubs {
        out.push(Arc::new(TcpListener::bind_reuse_port(addr)?));
    }
    Ok(out)
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("server", &self.server)
            .field("hubs", &self.hubs)
            .field("balance", &self.balance)
            .field("rebalance", &self.rebalance)
            .field("shutdown_timeout", &self.grace)
            .finish()
    }
}
