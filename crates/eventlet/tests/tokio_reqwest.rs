//! reqwest, unchanged, in green threads: 1,000 green threads on one OS
//! thread each fetch a page from nginx with `eventlet::block_on`, all at
//! once, and every body comes back exact. Skips without nginx outside CI.

mod util;

use std::rc::Rc;
use std::time::{Duration, Instant};

use util::servers::{nginx_binary, start_nginx, TempDir};

const GREEN_THREADS: usize = 1000;
const PAGES: usize = 100;

/// Page `i`: distinct bytes of a distinct length (up to ~40 KiB, so some
/// bodies take several reads).
fn page(i: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..(i * 397) % 40_000 + 1)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn a_thousand_green_threads_fetch_from_nginx_with_reqwest() {
    let Some(bin) = nginx_binary() else { return };
    let dir = TempDir::new("tokio-reqwest-nginx");
    std::fs::create_dir_all(dir.0.join("www")).unwrap();
    for i in 0..PAGES {
        std::fs::write(dir.0.join("www").join(format!("{i}.bin")), page(i)).unwrap();
    }
    let (_nginx, port) = start_nginx(&bin, &dir.0, 4096);

    // One OS thread: this one. One client, shared by every green thread.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let pages: Rc<Vec<Vec<u8>>> = Rc::new((0..PAGES).map(page).collect());
    let start = Instant::now();
    let fetches: Vec<_> = (0..GREEN_THREADS)
        .map(|i| {
            let (client, pages) = (client.clone(), pages.clone());
            let url = format!("http://127.0.0.1:{port}/{}.bin", i % PAGES);
            eventlet::spawn(move || {
                let (status, body) = eventlet::block_on(async {
                    let resp = client.get(&url).send().await?;
                    let status = resp.status();
                    Ok::<_, reqwest::Error>((status, resp.bytes().await?))
                })
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                assert_eq!(status, 200, "GET {url}");
                assert!(body[..] == pages[i % PAGES][..], "GET {url}: {} bytes, not the page", body.len());
                body.len()
            })
        })
        .collect();
    let bytes: usize = fetches.into_iter().map(|h| h.join().unwrap()).sum();
    let want: usize = (0..GREEN_THREADS).map(|i| pages[i % PAGES].len()).sum();
    assert_eq!(bytes, want);
    eprintln!("{GREEN_THREADS} fetches through reqwest in green threads: {:?}", start.elapsed());
}
