//! libpq, the PostgreSQL C library, linked dynamically and driven through
//! the unmodified `pq-sys` crate's synchronous calls (`PQconnectdb`,
//! `PQexec`), against a real PostgreSQL server: libpq waits in `poll`
//! (through the PLT, so the binary's patched `poll` is what it calls),
//! and with the patch 100 green threads on one OS thread each sleep half
//! a second in the server at once.
//!
//! Built with the `libpq` feature (it needs libpq to link: Debian
//! `libpq-dev`); `.ci/run` runs it.

mod util;

#[cfg(not(feature = "libpq"))]
#[test]
fn libpq_tests_are_built_with_the_libpq_feature() {
    if util::tools::in_ci() {
        // `.ci/run` runs this file again with the feature, in a step of its
        // own, where a missing libpq fails the build.
        eprintln!("libpq tests: run by .ci/run's libpq step (--features libpq)");
        return;
    }
    util::tools::missing(
        "libpq (these tests link it, with eventlet-greening's `libpq` feature)",
        "apt-get install -y libpq-dev postgresql, then run cargo test -p eventlet-greening --features libpq",
    );
}

#[cfg(feature = "libpq")]
mod pg {
    use std::cell::RefCell;
    use std::ffi::{CStr, CString};
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use pq_sys::{ConnStatusType, ExecStatusType, PGconn, PGresult};

    use super::util::{patch, raise_nofile, run_unpatched, Postgres};

    /// A libpq connection, finished when dropped.
    struct Conn(*mut PGconn);

    /// A result, cleared when dropped.
    struct Res(*mut PGresult);

    impl Drop for Res {
        fn drop(&mut self) {
            // SAFETY: a result from PQexec, cleared once.
            unsafe { pq_sys::PQclear(self.0) }
        }
    }

    impl Conn {
        fn connect(info: &str) -> Result<Conn, String> {
            let info = CString::new(info).unwrap();
            // SAFETY: a valid C string; PQconnectdb always returns a
            // connection object (check its status).
            let c = Conn(unsafe { pq_sys::PQconnectdb(info.as_ptr()) });
            // SAFETY: a live connection.
            if unsafe { pq_sys::PQstatus(c.0) } != ConnStatusType::CONNECTION_OK {
                return Err(c.error());
            }
            Ok(c)
        }

        fn error(&self) -> String {
            // SAFETY: a live connection; the message lives as long as it.
            unsafe { CStr::from_ptr(pq_sys::PQerrorMessage(self.0)) }.to_string_lossy().into_owned()
        }

        /// Runs `sql`; returns the first value of the first row, or the
        /// error.
        fn query(&self, sql: &str) -> Result<String, String> {
            let sql = CString::new(sql).unwrap();
            // SAFETY: a live connection and a valid C string.
            let r = Res(unsafe { pq_sys::PQexec(self.0, sql.as_ptr()) });
            if r.0.is_null() {
                return Err(self.error());
            }
            // SAFETY: a live result.
            match unsafe { pq_sys::PQresultStatus(r.0) } {
                ExecStatusType::PGRES_TUPLES_OK => {
                    // SAFETY: row 0, column 0 of a tuples result.
                    Ok(unsafe { CStr::from_ptr(pq_sys::PQgetvalue(r.0, 0, 0)) }.to_string_lossy().into_owned())
                }
                ExecStatusType::PGRES_COMMAND_OK => Ok(String::new()),
                _ => Err(self.error()),
            }
        }
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            // SAFETY: finished once; closes the socket.
            unsafe { pq_sys::PQfinish(self.0) }
        }
    }

    /// `n` green threads connect, then each runs `SELECT pg_sleep(secs)`
    /// on its own connection. Returns (time to connect, time to query).
    fn sleep_in_server(pg: &Postgres, n: usize, secs: f64) -> (Duration, Duration) {
        let info = pg.conninfo();
        let start = Instant::now();
        let conns: Vec<Conn> = (0..n)
            .map(|_| {
                let info = info.clone();
                eventlet::spawn(move || Conn::connect(&info))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        let connected = start.elapsed();
        let start = Instant::now();
        let hs: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                eventlet::spawn(move || {
                    let v = c.query(&format!("SELECT {i} FROM pg_sleep({secs})")).unwrap();
                    assert_eq!(v, i.to_string());
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        (connected, start.elapsed())
    }

    /// Waits until the server is ready for queries (it listens before).
    fn ready(pg: &Postgres) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match Conn::connect(&pg.conninfo()) {
                Ok(_) => return,
                Err(e) if Instant::now() < until => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("postgres never became ready: {e}"),
            }
        }
    }

    #[test]
    fn a_hundred_green_threads_sleep_in_postgres_at_once() {
        let Some(pg) = Postgres::start() else { return };
        raise_nofile();
        ready(&pg);
        assert!(patch());
        let (connected, queried) = sleep_in_server(&pg, 100, 0.5);
        eprintln!("100 connections in {connected:?}; 100 x pg_sleep(0.5) in {queried:?}");
        // The bound leaves room for a loaded machine.
        assert!(queried < Duration::from_secs(10), "serially it would take 50 s: {queried:?}");
        assert!(queried >= Duration::from_millis(500));
    }

    /// With the patch off, libpq's `poll` blocks the thread: the queries
    /// run one after another.
    #[test]
    #[ignore = "run with the patch off by patch_off_libpq_blocks_the_thread"]
    fn unpatched_libpq() {
        let pg = Postgres::start().unwrap();
        ready(&pg);
        assert!(!patch());
        let (_, queried) = sleep_in_server(&pg, 4, 0.25);
        assert!(queried >= Duration::from_millis(1000), "serial: {queried:?}");
    }

    #[test]
    fn patch_off_libpq_blocks_the_thread() {
        if Postgres::start().is_none() {
            return;
        }
        run_unpatched("pg::unpatched_libpq");
    }

    /// How many backends run `sql` now.
    fn running(admin: &Conn, sql: &str) -> usize {
        admin
            .query(&format!("SELECT count(*) FROM pg_stat_activity WHERE query = '{sql}' AND state = 'active'"))
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_timeout_and_a_kill_reach_a_green_thread_waiting_in_libpq() {
        let Some(pg) = Postgres::start() else { return };
        ready(&pg);
        assert!(patch());
        let info = pg.conninfo();
        let admin = Conn::connect(&info).unwrap();

        // A Timeout: PQexec fails (libpq's poll failed with ETIMEDOUT),
        // with_timeout says it fired, and PQfinish closes the connection.
        // (Connected first: on a loaded machine the connect alone may take
        // longer than the timeout.)
        let error = Rc::new(RefCell::new(String::new()));
        let e = error.clone();
        let c = Conn::connect(&info).unwrap();
        let start = Instant::now();
        let r = eventlet::with_timeout(Duration::from_millis(300), move || {
            *e.borrow_mut() = c.query("SELECT pg_sleep(30)").unwrap_err();
            drop(c);
        });
        assert!(r.is_err(), "with_timeout reports the timeout");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "{took:?}");
        assert!(error.borrow().to_lowercase().contains("timed out"), "{}", error.borrow());

        // A kill: the same, and the green thread ends Killed at its next
        // eventlet blocking point.
        let error = Rc::new(RefCell::new(String::new()));
        let e = error.clone();
        let h = eventlet::spawn(move || {
            let c = Conn::connect(&info).unwrap();
            *e.borrow_mut() = c.query("SELECT pg_sleep(31)").unwrap_err();
            drop(c);
            eventlet::sleep(Duration::from_secs(60));
        });
        let until = Instant::now() + Duration::from_secs(10);
        while running(&admin, "SELECT pg_sleep(31)") < 1 && Instant::now() < until {
            eventlet::sleep(Duration::from_millis(10));
        }
        let start = Instant::now();
        h.kill();
        let payload = h.join().unwrap_err();
        assert!(payload.is::<eventlet::Killed>());
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        assert!(error.borrow().to_lowercase().contains("cancel"), "{}", error.borrow());
        // The server goes on, and a new connection works.
        assert_eq!(Conn::connect(&pg.conninfo()).unwrap().query("SELECT 41 + 1").unwrap(), "42");
    }
}
