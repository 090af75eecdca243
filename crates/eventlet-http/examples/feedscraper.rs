//! eventlet's dispatch pattern (its `feedscraper` example): a server whose
//! handler fans out client requests through a `GreenPile` and answers with
//! the combined result.
//!
//! POST a list of URLs, one per line; the answer has one line per URL, in
//! order: its size in bytes, or the error.
//!
//! ```text
//! cargo run --release --example feedscraper -- 127.0.0.1:9010
//! curl --data-binary $'http://example.com/\nhttp://example.org/' http://127.0.0.1:9010/
//! cargo run --release --example feedscraper       # offline demo: serves pages, scrapes them, exits
//! ```

use eventlet::GreenPile;
use eventlet_http::{client, Body, Server};

fn fetch_size(url: String) -> String {
    match client::get(&url).and_then(|r| r.into_body().into_bytes()) {
        Ok(body) => format!("{url} {}", body.len()),
        Err(e) => format!("{url} error: {e}"),
    }
}

fn scrape(req: http::Request<Body>) -> http::Response<Body> {
    let urls = match req.into_body().into_string() {
        Ok(s) => s,
        Err(e) => return http::Response::builder().status(400).body(Body::from(e.to_string())).unwrap(),
    };
    let pile = GreenPile::new(200);
    for url in urls.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let url = url.to_string();
        pile.spawn(move || fetch_size(url));
    }
    let mut out = String::new();
    for line in pile {
        out.push_str(&line);
        out.push('\n');
    }
    http::Response::new(Body::from(out))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(addr) = std::env::args().nth(1) {
        let server = Server::bind(addr.as_str())?.access_log(true);
        eprintln!("(feedscraper) listening on http://{}/", server.local_addr()?);
        return Ok(server.serve(scrape)?);
    }

    // Offline demo: pages to scrape, the scraper, and one request to it.
    let pages = Server::bind("127.0.0.1:0")?;
    let pages_addr = pages.local_addr()?;
    let stop_pages = pages.shutdown_handle();
    eventlet::spawn_n(move || {
        let _ = pages.serve(|req| {
            let n: usize = req.uri().path().trim_start_matches('/').parse().unwrap_or(0);
            http::Response::new(Body::from(vec![b'.'; n]))
        });
    });
    let scraper = Server::bind("127.0.0.1:0")?;
    let scraper_addr = scraper.local_addr()?;
    let stop_scraper = scraper.shutdown_handle();
    eventlet::spawn_n(move || {
        let _ = scraper.serve(scrape);
    });

    let list: String = [100, 2000, 30].iter().map(|n| format!("http://{pages_addr}/{n}\n")).collect();
    let answer = client::post(&format!("http://{scraper_addr}/"), list)?.into_body().into_string()?;
    print!("{answer}");
    stop_scraper.shutdown();
    stop_pages.shutdown();
    Ok(())
}
