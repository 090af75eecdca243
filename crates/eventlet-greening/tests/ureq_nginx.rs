//! `ureq` with its default transport (std's `TcpStream`), unmodified,
//! fetching from nginx through the seed's crawler pattern,
//! `GreenPool::imap`: 1,000 fetches, every body exact, many in flight at
//! once with the patch and one at a time without it.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use util::{patch, raise_nofile, run_unpatched, Nginx};

/// File `i`: a size of its own (up to ~130 KiB), bytes of its own.
fn file(i: usize) -> (String, Vec<u8>) {
    let n = 1 + (i * 7919) % 130_000;
    (format!("f{i}.bin"), (0..n).map(|k| ((k * 13 + i * 101) % 256) as u8).collect())
}

/// Fetches `count` URLs (over `files` files) with `imap` on a pool of
/// `size`; checks every body; returns the most fetches seen in flight at
/// once.
fn crawl(nginx: &Nginx, files: usize, count: usize, size: usize) -> usize {
    let agent = ureq::Agent::new_with_defaults();
    let in_flight = Rc::new(Cell::new(0usize));
    let most = Rc::new(Cell::new(0usize));
    let (f, m) = (in_flight.clone(), most.clone());
    let fetch = move |url: String| -> Result<Vec<u8>, ureq::Error> {
        f.set(f.get() + 1);
        m.set(m.get().max(f.get()));
        let body = agent.get(&url).call().and_then(|mut r| r.body_mut().with_config().limit(1 << 20).read_to_vec());
        f.set(f.get() - 1);
        body
    };
    let urls: Vec<String> = (0..count).map(|i| format!("http://127.0.0.1:{}/f{}.bin", nginx.port, i % files)).collect();
    let pool = eventlet::GreenPool::new(size);
    for (i, body) in pool.imap(fetch, urls).enumerate() {
        let body = body.unwrap_or_else(|e| panic!("fetch {i}: {e}"));
        assert!(body == file(i % files).1, "fetch {i}: body differs ({} bytes)", body.len());
    }
    most.get()
}

fn files(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n).map(file).collect()
}

#[test]
fn a_thousand_ureq_fetches_through_imap_against_nginx() {
    let Some(nginx) = Nginx::start(&files(100)) else { return };
    raise_nofile();
    assert!(patch());
    let start = Instant::now();
    let most = crawl(&nginx, 100, 1000, 100);
    eprintln!("1,000 ureq fetches in {:?}, up to {most} at once", start.elapsed());
    assert!(most > 1, "fetches ran at once: {most}");
}

/// With the patch off, ureq blocks the thread: one fetch at a time, every
/// body still right (as without eventlet).
#[test]
#[ignore = "run with the patch off by patch_off_ureq_fetches_one_at_a_time"]
fn unpatched_ureq() {
    let nginx = Nginx::start(&files(20)).unwrap();
    assert!(!patch());
    assert_eq!(crawl(&nginx, 20, 100, 50), 1);
}

#[test]
fn patch_off_ureq_fetches_one_at_a_time() {
    if Nginx::start(&[]).is_none() {
        return;
    }
    run_unpatched("unpatched_ureq");
}
