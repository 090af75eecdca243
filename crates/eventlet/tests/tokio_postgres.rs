//! tokio-postgres, unchanged, in green threads: against a PostgreSQL
//! server the test starts (as an unprivileged user: PostgreSQL refuses
//! root), 100 green threads on one OS thread each run
//! `SELECT pg_sleep(0.5)` on a connection of their own, all at once: the
//! queries end together, in well under 2 s (one after the other they would
//! take 50 s). Skips without PostgreSQL outside CI.

mod util;

use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::servers::{postgres_binaries, start_postgres, TempDir};

const GREEN_THREADS: usize = 100;

/// The port opens before the server takes connections ("the database
/// system is starting up"): waits until one goes through.
fn wait_until_ready(conninfo: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match eventlet::block_on(tokio_postgres::connect(conninfo, tokio_postgres::NoTls)) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("PostgreSQL not ready yet: {e:?}");
                eventlet::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("PostgreSQL never took a connection: {e:?}"),
        }
    }
}

#[test]
fn a_hundred_green_threads_sleep_in_postgres_at_once() {
    let Some((initdb, postgres)) = postgres_binaries() else { return };
    let dir = TempDir::new("tokio-postgres");
    let (_server, port) = start_postgres(&initdb, &postgres, &dir.0, GREEN_THREADS + 20);
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=30");
    wait_until_ready(&conninfo);

    let go = Rc::new(eventlet::Event::<()>::new());
    let connected = Rc::new(eventlet::Semaphore::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..GREEN_THREADS)
        .map(|i| {
            let (conninfo, go, connected) = (conninfo.clone(), go.clone(), connected.clone());
            eventlet::spawn(move || {
                // Counts this one as connected however it ends (a failure
                // must not leave the root waiting).
                struct Done(Rc<eventlet::Semaphore>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.add_permits(1);
                    }
                }
                let done = Done(connected);
                let (client, connection) =
                    eventlet::block_on(tokio_postgres::connect(&conninfo, tokio_postgres::NoTls))
                        .unwrap_or_else(|e| panic!("green thread {i}: connect: {e:?}"));
                // The connection's I/O runs as a tokio task on this hub.
                tokio::spawn(connection);
                drop(done);
                go.wait();
                let began = Instant::now();
                let row = eventlet::block_on(client.query_one("SELECT pg_sleep(0.5), $1::INT4", &[&(i as i32)]))
                    .unwrap_or_else(|e| panic!("green thread {i}: query: {e:?}"));
                assert_eq!(row.get::<_, i32>(1), i as i32);
                began.elapsed()
            })
        })
        .collect();
    for _ in 0..GREEN_THREADS {
        connected.acquire().forget();
    }
    let connect_took = start.elapsed();
    let queries = Instant::now();
    go.send(()).unwrap();
    let each: Vec<Duration> = workers.into_iter().map(|h| h.join().unwrap()).collect();
    let took = queries.elapsed();
    eprintln!(
        "{GREEN_THREADS} connections in {connect_took:?}; {GREEN_THREADS} concurrent pg_sleep(0.5) in {took:?} \
         (slowest {:?})",
        each.iter().max().unwrap()
    );
    assert!(each.iter().all(|d| *d >= Duration::from_millis(500)));
    // One after another they would take 50 s; the bound leaves room for a
    // loaded machine.
    assert!(took < Duration::from_secs(10), "the queries took {took:?}: they did not run at once");
}

/// Rounds of 100 green threads that connect, query and hang up at once,
/// while the root waits for each to connect: the root is woken in the
/// same turns in which green threads' wakers are deferred by tokio (its
/// cooperative budget spent), a wake-up once lost (the hub idle in tokio's
/// `epoll_wait`, a connection's reply unread; within 25 rounds nearly
/// every run). A stalled round ends the process with a message instead of
/// hanging.
#[test]
fn rounds_of_a_hundred_connections_lose_no_wake_up() {
    const ROUNDS: usize = 10;
    let Some((initdb, postgres)) = postgres_binaries() else { return };
    let dir = TempDir::new("tokio-postgres-rounds");
    // Room for a round's connections while the last round's backends exit.
    let (_server, port) = start_postgres(&initdb, &postgres, &dir.0, GREEN_THREADS * 3);
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=30");
    wait_until_ready(&conninfo);
    for round in 0..ROUNDS {
        let go = Rc::new(eventlet::Event::<()>::new());
        let connected = Rc::new(eventlet::Semaphore::new(0));
        let workers: Vec<_> = (0..GREEN_THREADS)
            .map(|i| {
                let (conninfo, go, connected) = (conninfo.clone(), go.clone(), connected.clone());
                eventlet::spawn(move || {
                    let (client, connection) =
                        eventlet::block_on(tokio_postgres::connect(&conninfo, tokio_postgres::NoTls))
                            .unwrap_or_else(|e| panic!("round {round}, green thread {i}: connect: {e:?}"));
                    tokio::spawn(connection);
                    connected.add_permits(1);
                    go.wait();
                    let row = eventlet::block_on(client.query_one("SELECT $1::INT4", &[&(i as i32)]))
                        .unwrap_or_else(|e| panic!("round {round}, green thread {i}: query: {e:?}"));
                    row.get::<_, i32>(0)
                })
            })
            .collect();
        // Not a `Timeout`: a lost wake-up leaves the hub's thread asleep.
        let watchdog = Watchdog::start(format!("round {round}"), Duration::from_secs(60));
        for _ in 0..GREEN_THREADS {
            connected.acquire().forget();
        }
        go.send(()).unwrap();
        let all: Vec<i32> = workers.into_iter().map(|h| h.join().unwrap()).collect();
        drop(watchdog);
        assert_eq!(all, (0..GREEN_THREADS as i32).collect::<Vec<_>>());
    }
}

/// Ends the process with a message unless dropped within `limit`: a wait
/// that hangs its whole OS thread (the hub asleep in `epoll_wait`) cannot
/// be ended from that thread.
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    fn start(what: String, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let seen = done.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + limit;
            while Instant::now() < end {
                if seen.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Past the test harness's output capture: the process ends here.
            let _ = writeln!(std::io::stderr(), "{what} made no progress for {limit:?}: a wake-up was lost");
            std::process::exit(1);
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
