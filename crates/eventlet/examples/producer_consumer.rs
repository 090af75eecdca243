//! eventlet's recursive web crawler (`examples/producer_consumer.py`): the
//! producer takes URLs off a [`Queue`] and starts a fetch for each new one
//! in a [`GreenPool`]; each fetch puts the links it finds back on the
//! queue. The crawl ends when the queue is empty and no fetch is running.
//!
//! ```text
//! cargo run --example producer_consumer
//! ```
//!
//! It crawls a fake, in-memory web (each fetch just sleeps a little), so it
//! runs offline; the fetches of one round overlap, so the crawl takes about
//! one fetch time per level of links, not per page.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::{GreenPool, Queue};

/// How long one fake fetch takes.
pub const FETCH_TIME: Duration = Duration::from_millis(10);

/// Only URLs containing this are crawled ("so we don't crash all over the
/// internet").
const DOMAIN: &str = "eventlet.example";

/// A fake web: each page and the links on it.
pub type Web = HashMap<&'static str, Vec<&'static str>>;

/// The web the example crawls: 12 pages of `eventlet.example` reachable
/// from its home page in up to three clicks, plus a link to a missing page
/// (13 fetches in 5 rounds); a page nothing links to; and links to another
/// site, which are not followed.
pub fn fake_web() -> Web {
    let pages: [(&str, &[&str]); 14] = [
        ("http://eventlet.example/", &["http://eventlet.example/docs/", "http://eventlet.example/news/"]),
        (
            "http://eventlet.example/docs/",
            &[
                "http://eventlet.example/docs/basic",
                "http://eventlet.example/docs/patterns",
                "http://eventlet.example/docs/modules",
                "http://eventlet.example/",
            ],
        ),
        ("http://eventlet.example/news/", &["http://eventlet.example/news/1", "http://elsewhere.example/"]),
        ("http://eventlet.example/news/1", &["http://eventlet.example/news/2", "http://eventlet.example/news/"]),
        ("http://eventlet.example/news/2", &["http://eventlet.example/news/1"]),
        ("http://eventlet.example/docs/basic", &["http://eventlet.example/docs/patterns"]),
        (
            "http://eventlet.example/docs/patterns",
            &["http://eventlet.example/docs/patterns#crawler", "http://elsewhere.example/python"],
        ),
        ("http://eventlet.example/docs/patterns#crawler", &[]),
        (
            "http://eventlet.example/docs/modules",
            &[
                "http://eventlet.example/docs/modules/queue",
                "http://eventlet.example/docs/modules/greenpool",
                "http://eventlet.example/docs/modules/event",
            ],
        ),
        ("http://eventlet.example/docs/modules/queue", &["http://eventlet.example/docs/modules"]),
        ("http://eventlet.example/docs/modules/greenpool", &["http://eventlet.example/docs/modules/queue"]),
        ("http://eventlet.example/docs/modules/event", &["http://eventlet.example/missing"]),
        ("http://eventlet.example/unlinked", &["http://eventlet.example/"]),
        ("http://elsewhere.example/", &["http://elsewhere.example/python"]),
    ];
    pages.into_iter().map(|(url, links)| (url, links.to_vec())).collect()
}

/// Fetches `url` (sleeping [`FETCH_TIME`], as if over the network) and
/// puts every link found on `out`. A page missing from the web has no
/// links (a 404).
fn fetch(web: &Web, url: &str, out: &Queue<String>, say: &dyn Fn(&str)) {
    say(&format!("fetching {url}"));
    eventlet::sleep(FETCH_TIME);
    for link in web.get(url).into_iter().flatten() {
        out.put(link.to_string()).expect("the crawl queue is never closed");
    }
}

/// Crawls `web` from `start` with at most `concurrency` fetches at once,
/// reporting each fetch through `say`; returns every URL fetched.
pub fn crawl(web: Rc<Web>, start: &str, concurrency: usize, say: Rc<dyn Fn(&str)>) -> BTreeSet<String> {
    let pool = GreenPool::new(concurrency);
    let mut seen = HashSet::new();
    let q = Queue::new();
    q.put(start.to_owned()).expect("a new queue is open");
    // Keep looping while there are new URLs, or fetches that may find some.
    loop {
        while let Ok(url) = q.try_get() {
            // Only this site, and each page once.
            if url.contains(DOMAIN) && seen.insert(url.clone()) {
                let (web, q, say) = (web.clone(), q.clone(), say.clone());
                pool.spawn_n(move || fetch(&web, &url, &q, &*say));
            }
        }
        pool.waitall();
        if q.is_empty() {
            break;
        }
    }
    seen.into_iter().collect()
}

/// Crawls the fake web from its home page, four fetches at a time, and
/// reports each fetch and then the pages fetched through `say`; returns
/// the URLs fetched.
pub fn run(say: Rc<dyn Fn(&str)>) -> BTreeSet<String> {
    let started = Instant::now();
    let seen = crawl(Rc::new(fake_web()), "http://eventlet.example/", 4, say.clone());
    say(&format!("fetched {} pages in {} ms:", seen.len(), started.elapsed().as_millis()));
    for url in &seen {
        say(&format!("  {url}"));
    }
    seen
}

fn main() {
    run(Rc::new(|line: &str| println!("{line}")));
}
