//! The `redis` crate's synchronous API, unmodified, against a real
//! redis-server, on one OS thread: with the patch, 1,000 green threads
//! block in `BLPOP` at once; without it, each `BLPOP` blocks the thread.
//! A `Timeout` and a kill reach a green thread blocked in `BLPOP`.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use redis::Commands;
use util::{patch, raise_nofile, run_unpatched, Redis};

/// How many clients redis counts as blocked (in `BLPOP`).
fn blocked_clients(con: &mut redis::Connection) -> usize {
    let info: String = redis::cmd("INFO").arg("clients").query(con).unwrap();
    info.lines().find_map(|l| l.strip_prefix("blocked_clients:")).map(|v| v.trim().parse().unwrap()).unwrap()
}

/// How many clients are connected.
fn connected_clients(con: &mut redis::Connection) -> usize {
    let info: String = redis::cmd("INFO").arg("clients").query(con).unwrap();
    info.lines().find_map(|l| l.strip_prefix("connected_clients:")).map(|v| v.trim().parse().unwrap()).unwrap()
}

/// `n` green threads `BLPOP` their own key with `timeout_s`; a pusher
/// green thread waits (up to 3 s) until they all block, then pushes to
/// every key. Returns what each got and how long it all took.
fn blpop(redis: &Redis, n: usize, timeout_s: u64) -> (Vec<Option<String>>, Duration) {
    let client = redis::Client::open(redis.url()).unwrap();
    let start = Instant::now();
    let waiters: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            eventlet::spawn(move || {
                let mut con = client.get_connection().unwrap();
                let got: Option<(String, String)> =
                    redis::cmd("BLPOP").arg(format!("key:{i}")).arg(timeout_s).query(&mut con).unwrap();
                got.map(|(_key, value)| value)
            })
        })
        .collect();
    let pusher = eventlet::spawn(move || {
        let mut con = client.get_connection().unwrap();
        let until = Instant::now() + Duration::from_secs(3);
        while blocked_clients(&mut con) < n && Instant::now() < until {
            eventlet::sleep(Duration::from_millis(10));
        }
        for i in 0..n {
            let _: () = con.rpush(format!("key:{i}"), format!("value {i}")).unwrap();
        }
    });
    let got = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    pusher.join().unwrap();
    (got, start.elapsed())
}

#[test]
fn a_thousand_green_threads_block_in_blpop_at_once() {
    let Some(redis) = Redis::start() else { return };
    raise_nofile();
    assert!(patch());
    // A BLPOP timeout no loaded machine reaches: each one gets its value.
    let (got, took) = blpop(&redis, 1000, 30);
    for (i, v) in got.iter().enumerate() {
        assert_eq!(v.as_deref(), Some(format!("value {i}").as_str()), "green thread {i}");
    }
    assert!(took < Duration::from_secs(20), "took {took:?}: well under the 30 s BLPOP timeout");
    eprintln!("1,000 BLPOPs answered in {took:?}");
}

/// With the patch off (a child process), `BLPOP` blocks the whole OS
/// thread: the pusher cannot run until each one has timed out, one after
/// another, and nobody gets a value.
#[test]
#[ignore = "run with the patch off by patch_off_blpop_blocks_the_thread"]
fn unpatched_blpop() {
    let redis = Redis::start().unwrap();
    assert!(!patch());
    let (got, took) = blpop(&redis, 3, 1);
    assert_eq!(got, vec![None, None, None]);
    assert!(took >= Duration::from_secs(3), "serial: {took:?}");
}

#[test]
fn patch_off_blpop_blocks_the_thread() {
    if Redis::start().is_none() {
        return;
    }
    run_unpatched("unpatched_blpop");
}

/// A green thread blocked in `BLPOP` (inside a patched `recv`), stopped by
/// `stop`: the redis crate sees a failed read, the connection is dropped
/// cleanly (redis counts it gone), and the server serves on.
fn interrupted(stop: impl FnOnce(&eventlet::JoinHandle<()>)) -> (String, std::thread::Result<()>) {
    let Some(redis) = Redis::start() else { return (String::new(), Ok(())) };
    assert!(patch());
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_connection().unwrap();
    let error = Rc::new(RefCell::new(String::new()));
    let e = error.clone();
    let c = client.clone();
    let start = Instant::now();
    let h = eventlet::spawn(move || {
        let mut con = c.get_connection().unwrap();
        let r: redis::RedisResult<Option<(String, String)>> = redis::cmd("BLPOP").arg("never").arg(0).query(&mut con);
        *e.borrow_mut() = format!("{:?}", r.map(|_| ()).unwrap_err());
        drop(con);
        // The next eventlet blocking point: where a kill unwinds.
        eventlet::sleep(Duration::from_secs(30));
    });
    while blocked_clients(&mut admin) < 1 {
        eventlet::sleep(Duration::from_millis(5));
    }
    stop(&h);
    let joined = h.join();
    assert!(start.elapsed() < Duration::from_secs(5), "stopped in {:?}", start.elapsed());
    let until = Instant::now() + Duration::from_secs(5);
    while connected_clients(&mut admin) != 1 && Instant::now() < until {
        eventlet::sleep(Duration::from_millis(5));
    }
    assert_eq!(connected_clients(&mut admin), 1, "the interrupted connection was closed");
    assert_eq!(blocked_clients(&mut admin), 0);
    let _: () = admin.set("still", "serving").unwrap();
    let v: String = admin.get("still").unwrap();
    assert_eq!(v, "serving");
    let error = error.borrow().clone();
    (error, joined)
}

#[test]
fn a_kill_reaches_a_green_thread_blocked_in_blpop() {
    let (error, joined) = interrupted(|h| h.kill());
    if error.is_empty() {
        return; // skipped
    }
    assert!(error.to_lowercase().contains("cancel"), "{error}");
    let payload = joined.unwrap_err();
    assert!(payload.is::<eventlet::Killed>(), "killed at its next eventlet blocking point");
}

#[test]
fn a_timeout_reaches_a_green_thread_blocked_in_blpop() {
    let Some(redis) = Redis::start() else { return };
    assert!(patch());
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_connection().unwrap();
    let start = Instant::now();
    let (r, error) = {
        let error = Rc::new(RefCell::new(String::new()));
        let e = error.clone();
        let r = eventlet::with_timeout(Duration::from_millis(300), move || {
            let mut con = client.get_connection().unwrap();
            let r: redis::RedisResult<Option<(String, String)>> =
                redis::cmd("BLPOP").arg("never").arg(0).query(&mut con);
            *e.borrow_mut() = format!("{:?}", r.map(|_| ()).unwrap_err());
            // dropped here: closed cleanly
        });
        let e = error.borrow().clone();
        (r, e)
    };
    let took = start.elapsed();
    assert!(r.is_err(), "with_timeout reports the timeout that cut BLPOP short");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    assert!(error.to_lowercase().contains("timed out"), "{error}");
    let until = Instant::now() + Duration::from_secs(5);
    while connected_clients(&mut admin) != 1 && Instant::now() < until {
        eventlet::sleep(Duration::from_millis(5));
    }
    assert_eq!(connected_clients(&mut admin), 1, "the interrupted connection was closed");
    let _: () = admin.set("k", "v").unwrap();
}
