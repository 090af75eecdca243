//! `eventlet crawl`: eventlet's web crawler. The URLs are fetched
//! concurrently with `GreenPool::imap`, so the results come back (and are
//! printed) in input order however the fetches interleave.
//!
//! With `--depth D` it is the recursive crawler: the links (`href="..."`)
//! of each page that stay on its host are gathered, deduplicated against
//! every URL seen so far, and fetched as the next wave, the way eventlet's
//! `recursive_crawler.py` drains its queue into the pool and waits for the
//! pool before the next round; D waves at most. Each wave is one `imap`,
//! so the output is in a stable order: the given URLs, then the links of
//! the first page in the order they appear, then those of the second...
//! Links are looked for in the first 4 MiB of a page; the rest of it is
//! counted, not kept, so a page without end does not take the memory.
//!
//! One line per URL on stdout: `STATUS BYTES URL`, or
//! `error - URL REASON` for a URL that could not be fetched (malformed,
//! unreachable, timed out); then a summary line. A status of 400 or more
//! is a result, not a failure; if any URL failed, the command ends with
//! `eventlet: N of M URLs failed` and exit status 1.

use std::collections::HashSet;
use std::io::{self, BufRead};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use eventlet::GreenPool;
use eventlet_http::http::Uri;
use eventlet_http::Client;

use crate::signal;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// URLs to fetch (http:// or https://).
    #[arg(required_unless_present = "input", value_name = "URL")]
    urls: Vec<String>,
    /// Read URLs from FILE, one a line ('-': standard input); blank lines and lines starting with '#' are skipped.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Fetches running at once.
    #[arg(short, long, value_name = "N", default_value_t = 100)]
    concurrency: usize,
    /// Give up on a URL after this long (connect, response and body): 10, 2.5, 500ms, 1m.
    #[arg(long, value_name = "S", default_value = "30", value_parser = crate::parse_positive_duration)]
    timeout: Duration,
    /// Trust the CA certificates of this PEM file for https:// instead of the system's.
    #[arg(long, value_name = "F")]
    cacert: Option<PathBuf>,
    /// Follow links (href="...") to pages on the same host, up to D hops from the given URLs; each URL once.
    #[arg(short, long, value_name = "D", default_value_t = 0)]
    depth: u32,
    /// With --depth: fetch at most this many URLs in all.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_pages: usize,
}

/// Bytes of a page searched for links (and held in memory); links past
/// them are not followed.
const MAX_PAGE: u64 = 4 << 20;

/// What fetching one URL gave.
struct Fetched {
    status: u16,
    bytes: u64,
    /// Where the page was reached, when redirects led elsewhere.
    moved_to: Option<String>,
    /// Links to follow (same host, absolute, without fragment).
    links: Vec<String>,
}

/// Totals for the summary.
#[derive(Default)]
struct Totals {
    urls: usize,
    ok: usize,
    http_errors: usize,
    failed: usize,
    bytes: u64,
}

pub(crate) fn run(args: Args) -> Result<()> {
    crate::at_least_one(args.concurrency, "--concurrency")?;
    crate::at_least_one(args.max_pages, "--max-pages")?;
    let mut urls = args.urls;
    if let Some(path) = &args.input {
        urls.extend(read_urls(path)?);
    }
    if urls.is_empty() {
        bail!("no URL to crawl");
    }
    let mut builder = Client::builder()
        .timeout(args.timeout)
        .timeout_connect(args.timeout)
        .timeout_read(args.timeout)
        .max_redirects(5);
    if let Some(ca) = &args.cacert {
        builder = builder.ca_file(ca).with_context(|| format!("cannot use --cacert {}", ca.display()))?;
    }
    let client = builder.build();
    signal::install()?;

    let started = Instant::now();
    let pool = GreenPool::new(args.concurrency);
    let mut seen: HashSet<String> = urls.iter().filter_map(|u| Url::parse(u).ok()).map(|u| u.to_string()).collect();
    let mut wave = urls;
    let mut totals = Totals::default();
    let mut capped = false;
    for level in 0..=args.depth {
        let follow = level < args.depth;
        let c = client.clone();
        let mut next = Vec::new();
        for (result, url) in pool.imap(move |url: String| (fetch(&c, &url, follow), url), wave) {
            totals.urls += 1;
            match result {
                Ok(page) => {
                    match &page.moved_to {
                        Some(to) => println!("{:>5} {:>10}  {url} -> {to}", page.status, page.bytes),
                        None => println!("{:>5} {:>10}  {url}", page.status, page.bytes),
                    }
                    // A page reached by redirect is not fetched again.
                    if let Some(to) = page.moved_to {
                        seen.insert(to);
                    }
                    totals.bytes += page.bytes;
                    if page.status < 400 {
                        totals.ok += 1;
                    } else {
                        totals.http_errors += 1;
                    }
                    for link in page.links {
                        if seen.len() >= args.max_pages {
                            capped = true;
                            break;
                        }
                        if seen.insert(link.clone()) {
                            next.push(link);
                        }
                    }
                }
                Err(why) => {
                    println!("{:>5} {:>10}  {url}  {why}", "error", "-");
                    totals.failed += 1;
                }
            }
            if signal::interrupted() {
                break;
            }
        }
        if signal::interrupted() || next.is_empty() {
            break;
        }
        wave = next;
    }
    let elapsed = started.elapsed();
    println!(
        "crawled {} URLs in {elapsed:.2?}: {} ok, {} HTTP errors, {} failed; {} bytes{}",
        totals.urls,
        totals.ok,
        totals.http_errors,
        totals.failed,
        totals.bytes,
        if capped { format!(" (stopped at --max-pages {})", args.max_pages) } else { String::new() }
    );
    if signal::interrupted() {
        return Err(crate::Interrupted.into());
    }
    if totals.failed > 0 {
        bail!("{} of {} URLs failed", totals.failed, totals.urls);
    }
    Ok(())
}

/// The URLs of a file (or of stdin for `-`).
fn read_urls(path: &std::path::Path) -> Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Box::new(io::BufReader::new(f))
    };
    let mut urls = Vec::new();
    for line in reader.lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            urls.push(line.to_string());
        }
    }
    Ok(urls)
}

/// Fetches `url`; with `follow`, gathers the links of an HTML page,
/// resolved against the URL the page was finally reached at (after
/// redirects: `/sub` moved to `/sub/` has its `a.html` at `/sub/a.html`).
fn fetch(client: &Client, url: &str, follow: bool) -> Result<Fetched, String> {
    let asked = Url::parse(url)?;
    let resp = client.get(url).map_err(|e| describe(&e))?;
    let status = resp.status().as_u16();
    let reached = resp
        .extensions()
        .get::<eventlet_http::client::FinalUri>()
        .and_then(|u| Url::parse(&u.0.to_string()).ok())
        .unwrap_or_else(|| asked.clone());
    let moved_to = (reached != asked).then(|| reached.to_string());
    let parsed = reached;
    let html = resp
        .headers()
        .get("content-type")
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("html")));
    let mut body = resp.into_body();
    if follow && html && status < 300 {
        // Links are looked for in the first MAX_PAGE bytes; the rest is
        // counted, not kept (a page without end must not take the memory).
        let mut page = Vec::new();
        let reading = |e: io::Error| format!("reading the body: {}", describe(&e));
        io::Read::read_to_end(&mut io::Read::take(&mut body, MAX_PAGE), &mut page).map_err(reading)?;
        let rest = io::copy(&mut body, &mut io::sink()).map_err(reading)?;
        let links = links(&page).filter_map(|href| parsed.join(&href)).filter(|u| u.same_origin(&parsed));
        return Ok(Fetched {
            status,
            bytes: page.len() as u64 + rest,
            moved_to,
            links: links.map(|u| u.to_string()).collect(),
        });
    }
    let bytes = io::copy(&mut body, &mut io::sink()).map_err(|e| format!("reading the body: {}", describe(&e)))?;
    Ok(Fetched { status, bytes, moved_to, links: Vec::new() })
}

/// An I/O error as a short reason.
fn describe(e: &io::Error) -> String {
    use io::ErrorKind::*;
    let what = match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset",
        NotFound => "host not found",
        TimedOut => "timed out",
        _ => return e.to_string(),
    };
    let detail = e.to_string();
    if detail.to_ascii_lowercase().contains(what) {
        detail
    } else {
        format!("{what} ({detail})")
    }
}

/// The values of the `href="..."` (or `'...'`) attributes of an HTML page,
/// `&amp;` decoded.
fn links(html: &[u8]) -> impl Iterator<Item = String> + '_ {
    let mut rest = html;
    std::iter::from_fn(move || loop {
        let at = rest.windows(5).position(|w| w.eq_ignore_ascii_case(b"href="))?;
        rest = &rest[at + 5..];
        let quote = *rest.first()?;
        if quote != b'"' && quote != b'\'' {
            continue;
        }
        let end = rest[1..].iter().position(|&b| b == quote)?;
        let value = String::from_utf8_lossy(&rest[1..1 + end]).replace("&amp;", "&");
        rest = &rest[1 + end..];
        return Some(value.trim().to_string());
    })
}

/// An absolute http(s) URL, split.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Url {
    scheme: String,
    authority: String,
    /// The path and query, starting with `/`.
    path: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL.
    pub(crate) fn parse(s: &str) -> Result<Url, String> {
        let malformed = |why: &str| format!("malformed URL: {why}");
        let uri: Uri = s.parse().map_err(|e| malformed(&format!("{e}")))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => s.to_ascii_lowercase(),
            Some(s) => return Err(format!("unsupported scheme {s:?} (use http:// or https://)")),
            None => return Err(malformed("expected http://HOST[:PORT]/PATH or https://...")),
        };
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
        if uri.host().is_none_or(str::is_empty) {
            return Err(malformed("no host"));
        }
        if authority.contains('@') {
            return Err(malformed("user names in URLs are not supported"));
        }
        let path = uri.path_and_query().map_or("/".to_string(), |p| p.as_str().to_string());
        let path = if path.is_empty() { "/".to_string() } else { path };
        Ok(Url { scheme, authority: authority.to_ascii_lowercase(), path })
    }

    /// Whether `other` is on the same scheme, host and port.
    fn same_origin(&self, other: &Url) -> bool {
        self.scheme == other.scheme && self.authority == other.authority
    }

    /// Resolves `href` against this URL; `None` for a link that is not to
    /// an http(s) page (`mailto:`, `javascript:`, only a fragment...).
    fn join(&self, href: &str) -> Option<Url> {
        let href = href.split('#').next().unwrap_or("");
        if href.is_empty() {
            return None;
        }
        let scheme_end = href.find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)));
        if scheme_end.is_some_and(|i| i > 0 && href[i..].starts_with(':')) {
            return Url::parse(href).ok();
        }
        let joined = if let Some(rest) = href.strip_prefix("//") {
            format!("{}://{rest}", self.scheme)
        } else {
            let base_path = self.path.split('?').next().unwrap_or("/");
            let path = if href.starts_with('/') {
                href.to_string()
            } else if href.starts_with('?') {
                format!("{base_path}{href}")
            } else {
                let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
                format!("{dir}{href}")
            };
            format!("{}://{}{}", self.scheme, self.authority, remove_dot_segments(&path))
        };
        Url::parse(&joined).ok()
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// Resolves the `.` and `..` segments of a path (RFC 3986, 5.2.4); the
/// query is left alone.
fn remove_dot_segments(path: &str) -> String {
    let (path, query) = match path.find('?') {
        Some(i) => path.split_at(i),
        None => (path, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}{query}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(base: &str, href: &str) -> Option<String> {
        Url::parse(base).unwrap().join(href).map(|u| u.to_string())
    }

    #[test]
    fn joins_links() {
        let b = "http://h:8/a/b/c.html?q=1";
        assert_eq!(join(b, "d.html").as_deref(), Some("http://h:8/a/b/d.html"));
        assert_eq!(join(b, "../d/").as_deref(), Some("http://h:8/a/d/"));
        assert_eq!(join(b, "../../../../x").as_deref(), Some("http://h:8/x"));
        assert_eq!(join(b, "/x?y=2#frag").as_deref(), Some("http://h:8/x?y=2"));
        assert_eq!(join(b, "?z").as_deref(), Some("http://h:8/a/b/c.html?z"));
        assert_eq!(join(b, "./").as_deref(), Some("http://h:8/a/b/"));
        assert_eq!(join(b, "//other/p").as_deref(), Some("http://other/p"));
        assert_eq!(join(b, "HTTPS://H:8/").as_deref(), Some("https://h:8/"));
        assert_eq!(join(b, "#top"), None);
        assert_eq!(join(b, "mailto:x@y"), None);
        assert_eq!(join(b, "javascript:void(0)"), None);
        assert_eq!(join("http://h", "x").as_deref(), Some("http://h/x"));
    }

    #[test]
    fn finds_links() {
        let html = br#"<a href="a.html">a</a> <A HREF='/b?x=1&amp;y=2'>b</A> <a href=bare>c</a> <link href="s.css">"#;
        assert_eq!(links(html).collect::<Vec<_>>(), ["a.html", "/b?x=1&y=2", "s.css"]);
    }

    #[test]
    fn rejects_malformed_urls() {
        assert!(Url::parse("not a url").unwrap_err().starts_with("malformed URL"));
        assert!(Url::parse("example.com/x").unwrap_err().starts_with("malformed URL"));
        assert!(Url::parse("http://").unwrap_err().starts_with("malformed URL"));
        assert!(Url::parse("ftp://h/").unwrap_err().contains("unsupported scheme"));
        assert_eq!(Url::parse("http://H:80").unwrap().to_string(), "http://h:80/");
    }
}
