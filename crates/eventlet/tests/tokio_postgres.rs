//! tokio-postgres, unchanged, in green threads: against a PostgreSQL
//! server the test starts (as an unprivileged user: PostgreSQL refuses
//! root), 100 green threads on one OS thread each run
//! `SELECT pg_sleep(0.5)` on a connection of their own, all at once: the
//! queries end together, in well under 2 s (one after the other they would
//! take 50 s). Skips without PostgreSQL outside CI.

mod util;

use std::rc::Rc;
use std::time::{Duration, Instant};

use util::servers::{postgres_binaries, start_postgres, TempDir};

const GREEN_THREADS: usize = 100;

#[test]
fn a_hundred_green_threads_sleep_in_postgres_at_once() {
    let Some((initdb, postgres)) = postgres_binaries() else { return };
    let dir = TempDir::new("tokio-postgres");
    let (_server, port) = start_postgres(&initdb, &postgres, &dir.0, GREEN_THREADS + 20);
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=30");

    // The port opens before the server takes connections ("the database
    // system is starting up"): wait until one goes through.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match eventlet::block_on(tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("PostgreSQL not ready yet: {e:?}");
                eventlet::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("PostgreSQL never took a connection: {e:?}"),
        }
    }

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
    assert!(took < Duration::from_secs(2), "the queries took {took:?}: they did not run at once");
}
