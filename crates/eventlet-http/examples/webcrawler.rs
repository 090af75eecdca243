//! The seed's client-side pattern, line for line: fetch a list of URLs
//! concurrently through a `GreenPool` and print each body's length, in
//! input order.
//!
//! ```text
//! cargo run --release --example webcrawler -- http://example.com/ http://example.org/
//! cargo run --release --example webcrawler          # offline: crawls pages it serves itself
//! ```

use eventlet::GreenPool;
use eventlet_http::{client, Body, Server, ShutdownHandle};

fn fetch(url: String) -> std::io::Result<Vec<u8>> {
    client::get(&url)?.into_body().into_bytes()
}

/// Serves `/page/N` (N × 1024 bytes) on loopback; returns the URLs of five
/// pages and the handle that stops the server.
fn serve_pages() -> std::io::Result<(Vec<String>, ShutdownHandle)> {
    let server = Server::bind("127.0.0.1:0")?;
    let addr = server.local_addr()?;
    let stop = server.shutdown_handle();
    eventlet::spawn_n(move || {
        let served = server.serve(|req| {
            let n: usize = req.uri().path().trim_start_matches("/page/").parse().unwrap_or(0);
            http::Response::new(Body::from(vec![b'x'; n * 1024]))
        });
        if let Err(e) = served {
            eprintln!("webcrawler: local server failed: {e}");
        }
    });
    let urls = (1..=5).map(|n| format!("http://{addr}/page/{n}")).collect();
    Ok((urls, stop))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut urls: Vec<String> = std::env::args().skip(1).collect();
    let mut local = None;
    if urls.is_empty() {
        let (pages, stop) = serve_pages()?;
        eprintln!("(no URLs given: crawling {} pages served on loopback)", pages.len());
        urls = pages;
        local = Some(stop);
    }

    let pool = GreenPool::new(1000);
    for body in pool.imap(fetch, urls) {
        println!("got body {}", body?.len());
    }

    if let Some(stop) = local {
        stop.shutdown();
    }
    Ok(())
}
