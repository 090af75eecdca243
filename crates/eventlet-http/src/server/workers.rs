//! A [`Server`] on several hubs, one per core.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use eventlet::StopHandle;
use http::{Request, Response};

use super::{make_room, raw, serve_connection, Config, Live, OwnedHandler, Server, ShutdownHandle, State};
use crate::body::Body;

/// A [`Server`] serving on several hubs: from [`Server::workers`].
///
/// It runs on [`eventlet::Server::workers`]: a [`Group`](eventlet::hub::Group)
/// of hubs, each on its own OS thread, each accepting connections and
/// serving them with the server's settings. New connections go to the hub
/// with the fewest open (see [`eventlet::net::Workers`]); the connection
/// limit ([`Server::max_connections`]) counts every hub's; the access log
/// gets every hub's lines; the handle from
/// [`shutdown_handle`](Self::shutdown_handle) shuts every hub down
/// gracefully (no new connections, idle keep-alive connections closed,
/// requests in flight finished with `Connection: close`), and
/// [`serve`](Self::serve) returns once all of them are done, with the
/// errors of every hub.
///
/// ```
/// use std::io::{Read, Write};
/// use eventlet_http::{Body, Server};
///
/// let server = Server::bind("127.0.0.1:0")?.max_connections(10_000).workers(2);
/// let addr = server.local_addr()?;
/// let stop = server.shutdown_handle();
/// let serving = std::thread::spawn(move || {
///     server.serve(|req| http::Response::new(Body::from(format!("hi {}", req.uri().path()))))
/// });
/// let mut c = std::net::TcpStream::connect(addr)?;
/// c.write_all(b"GET /there HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
/// let mut reply = String::new();
/// c.read_to_string(&mut reply)?;
/// assert!(reply.ends_with("\r\n\r\nhi /there"));
/// stop.stop();
/// serving.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The settings are the server's as they were when `workers` was called;
/// a [`ShutdownHandle`] taken before does not reach the hubs (take this
/// one's [`shutdown_handle`](Self::shutdown_handle)).
pub struct Workers {
    inner: eventlet::net::Workers,
    config: Config,
}

impl Server {
    /// Serves on `n` hubs, each on its own OS thread
    /// ([`eventlet::hub::cores`] gives one per core): see [`Workers`].
    ///
    /// # Panics
    ///
    /// Panics if `n` is 0.
    pub fn workers(self, n: usize) -> Workers {
        let Server { listener, config, state: _ } = self;
        let inner = eventlet::Server::new(listener, config.max_connections).workers(n);
        Workers { inner, config }
    }
}

impl Workers {
    /// The listening address.
    ///
    /// # Errors
    ///
    /// As [`eventlet::net::TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Which hub accepts each connection: see [`eventlet::net::Workers::balance`].
    pub fn balance(mut self, balance: eventlet::net::Balance) -> Workers {
        self.inner = self.inner.balance(balance);
        self
    }

    /// After a shutdown, how long connections still open may go on before
    /// their green threads are killed (default: no limit, `serve` waits
    /// for them).
    pub fn shutdown_timeout(mut self, grace: Duration) -> Workers {
        self.inner = self.inner.shutdown_timeout(grace);
        self
    }

    /// A `Send + Sync` handle that shuts every hub down gracefully: its
    /// [`stop`](StopHandle::stop) starts the shutdown (see [`Workers`]),
    /// [`running`](StopHandle::running) counts the connections still open.
    pub fn shutdown_handle(&self) -> StopHandle {
        self.inner.stop_handle()
    }

    /// Serves `handler` on every hub until shut down.
    ///
    /// # Errors
    ///
    /// A hub could not be started, or an accept error that retrying cannot
    /// cure, from any hub (see [`eventlet::net::Workers::serve`]).
    pub fn serve<H>(self, handler: H) -> io::Result<()>
    where
        H: Fn(Request<Body>) -> Response<Body> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.serve_with(move || {
            let h = handler.clone();
            move |req| h(req)
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
        H: Fn(Request<Body>) -> Response<Body> + 'static,
    {
        self.serve_handlers(move || OwnedHandler::Http(Rc::new(make())))
    }

    /// Serves a raw handler (see [`raw`]) on every hub; otherwise as
    /// [`serve`](Self::serve).
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    pub fn serve_raw<H>(self, handler: H) -> io::Result<()>
    where
        H: Fn(&mut raw::Request<'_>, &mut raw::Response<'_>) + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.serve_raw_with(move || {
            let h = handler.clone();
            move |req: &mut raw::Request<'_>, res: &mut raw::Response<'_>| h(req, res)
        })
    }

    /// Serves a raw handler made on each hub by `make`, as
    /// [`serve_with`](Self::serve_with) does.
    ///
    /// # Errors
    ///
    /// As [`serve_with`](Self::serve_with).
    pub fn serve_raw_with<M, H>(self, make: M) -> io::Result<()>
    where
        M: Fn() -> H + Send + Sync + 'static,
        H: Fn(&mut raw::Request<'_>, &mut raw::Response<'_>) + 'static,
    {
        self.serve_handlers(move || OwnedHandler::Raw(Rc::new(make())))
    }

    fn serve_handlers<M>(self, make: M) -> io::Result<()>
    where
        M: Fn() -> OwnedHandler + Send + Sync + 'static,
    {
        let Workers { inner, config } = self;
        let stop = inner.stop_handle();
        let config = Arc::new(config);
        inner.serve_making_room(move || {
            // This hub's part of the server: its connections, its copy of
            // the settings, and a green thread that shuts them down here
            // when the server stops.
            let state = State::new();
            let local = ShutdownHandle { state: state.clone() };
            let stop = stop.clone();
            eventlet::spawn_n(move || {
                stop.wait();
                local.shutdown();
            });
            let config = Rc::new(Config::clone(&config));
            let handler = make();
            let room = state.clone();
            let serve = move |sock, peer| {
                let _live = Live::new(state.clone());
                serve_connection(sock, peer, &config, &state, handler.get());
            };
            (serve, move || make_room(&room))
        })
    }
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers").field("inner", &self.inner).finish()
    }
}
