//! `eventlet crawl` against `eventlet serve`: input order, byte counts,
//! a 404, an unreachable URL, a malformed URL, URLs from a file, and
//! `--depth` following each same-host link once.

mod util;

use std::time::Duration;

use util::{closed_port, run, Proc, TempDir};

const LIMIT: Duration = Duration::from_secs(60);

/// The fields of a result line: status, bytes, URL, reason.
fn fields(line: &str) -> (String, String, String, String) {
    let mut it = line.split_whitespace();
    let status = it.next().unwrap().to_string();
    let bytes = it.next().unwrap().to_string();
    let url = it.next().unwrap().to_string();
    (status, bytes, url, it.collect::<Vec<_>>().join(" "))
}

#[test]
fn results_come_in_input_order_with_errors_on_one_line_each() {
    let site = TempDir::new("crawl-order");
    // Sizes that are not in input order, so fast and slow fetches interleave.
    let sizes: Vec<usize> = (0..40).map(|i| 1 + (i * 7919) % 200_000).collect();
    for (i, n) in sizes.iter().enumerate() {
        site.write(&format!("f{i}.bin"), vec![b'x'; *n]);
    }
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);

    let dead = closed_port();
    let mut args = vec!["crawl".to_string(), "-c".into(), "8".into()];
    let mut expected = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        args.push(format!("http://{addr}/f{i}.bin"));
        expected.push(("200".to_string(), n.to_string()));
        if i == 10 {
            args.push(format!("http://{addr}/missing.txt"));
            expected.push(("404".into(), "10".into()));
        }
        if i == 20 {
            args.push(format!("http://{dead}/"));
            expected.push(("error".into(), "-".into()));
        }
        if i == 30 {
            args.push("not-a-url".into());
            expected.push(("error".into(), "-".into()));
        }
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&argv, LIMIT);

    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), expected.len() + 1, "{out:?}");
    for (k, line) in lines[..expected.len()].iter().enumerate() {
        let (status, bytes, url, reason) = fields(line);
        assert_eq!(url, args[k + 3], "line {k} out of order: {line}");
        assert_eq!((status.clone(), bytes), expected[k], "line {k}: {line}");
        if url == format!("http://{dead}/") {
            assert!(reason.to_lowercase().contains("connection refused"), "{line}");
        }
        if url == "not-a-url" {
            assert!(reason.starts_with("malformed URL"), "{line}");
        }
        if status != "error" {
            assert!(reason.is_empty(), "{line}");
        }
    }
    let total: usize = sizes.iter().sum::<usize>() + 10;
    let summary = lines.last().unwrap();
    assert!(summary.starts_with(&format!("crawled {} URLs", expected.len())), "{summary}");
    assert!(summary.contains("40 ok, 1 HTTP errors, 2 failed"), "{summary}");
    assert!(summary.contains(&format!("; {total} bytes")), "{summary}");
    assert_eq!(out.one_line_error(), format!("eventlet: 2 of {} URLs failed", expected.len()));
}

#[test]
fn reads_urls_from_a_file_and_exits_0_when_all_fetched() {
    let site = TempDir::new("crawl-file");
    site.write("a.txt", "aaaa");
    site.write("b.txt", "bb");
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);
    let list = TempDir::new("crawl-file-list");
    list.write("urls", format!("# a comment\nhttp://{addr}/b.txt\n\n  http://{addr}/a.txt  \nhttp://{addr}/\n"));
    let file = list.path().join("urls");
    let out = run(&["crawl", "-i", file.to_str().unwrap(), "--timeout", "5"], LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr, "");
    let got: Vec<(String, String, String, String)> = out.stdout.lines().take(3).map(fields).collect();
    assert_eq!(got[0], ("200".into(), "2".into(), format!("http://{addr}/b.txt"), String::new()));
    assert_eq!(got[1], ("200".into(), "4".into(), format!("http://{addr}/a.txt"), String::new()));
    assert_eq!((got[2].0.as_str(), got[2].2.clone()), ("200", format!("http://{addr}/")));
    assert!(out.stdout.lines().nth(3).unwrap().starts_with("crawled 3 URLs"), "{out:?}");

    // Standard input works as a file too.
    let p = Proc::spawn_with_stdin(&["crawl", "-i", "-"], Some(&format!("http://{addr}/a.txt\n")));
    let out = p.wait(LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with(&format!("  200          4  http://{addr}/a.txt\n")), "{out:?}");
}

#[test]
fn depth_follows_same_host_links_once_each() {
    let site = TempDir::new("crawl-depth");
    site.write(
        "index.html",
        r##"<a href="a.html">a</a> <a href='b.html#part'>b</a> <a href="sub/">sub</a>
            <a href="http://other.invalid/x.html">elsewhere</a> <a href="#top">top</a> <a href="mailto:x@y">m</a>"##,
    );
    site.write("a.html", r#"<a href="/index.html">home</a> <a href="b.html">b</a> <a href="./a.html">me</a>"#);
    site.write("b.html", r#"<a href="a.html">a</a> <a href="c.html">c</a> <a href="/missing.html">gone</a>"#);
    site.write("c.html", r#"<a href="d.html">too deep</a>"#);
    site.write("d.html", "never fetched");
    site.write("sub/x.html", r#"<a href="../../../../c.html">c again</a>"#);
    let (server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);

    let out = run(&["crawl", "--depth", "2", "-c", "4", &format!("http://{addr}/")], LIMIT);
    assert!(out.status.success(), "{out:?}");
    let urls: Vec<String> = out.stdout.lines().filter(|l| !l.starts_with("crawled")).map(|l| fields(l).2).collect();
    let want: Vec<String> =
        ["/", "/a.html", "/b.html", "/sub/", "/index.html", "/c.html", "/missing.html", "/sub/x.html"]
            .iter()
            .map(|p| format!("http://{addr}{p}"))
            .collect();
    assert_eq!(urls, want, "{}", out.stdout);
    assert!(out.stdout.contains(&format!("  404         10  http://{addr}/missing.html")), "{}", out.stdout);
    assert!(out.stdout.lines().last().unwrap().contains("crawled 8 URLs"), "{}", out.stdout);

    // The server saw each of those paths exactly once, and nothing deeper.
    let paths = ["/", "/a.html", "/b.html", "/sub/", "/index.html", "/c.html", "/sub/x.html"];
    let log = server.stderr_once(|log| paths.iter().all(|p| log.contains(&format!("\"GET {p} HTTP/1.1\""))));
    for p in paths {
        let n = log.matches(&format!("\"GET {p} HTTP/1.1\"")).count();
        assert_eq!(n, 1, "{p} fetched {n} times; log:\n{log}");
    }
    assert!(!log.contains("/d.html"), "{log}");
    assert!(!log.contains("other.invalid"), "{log}");
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    let out = run(&["crawl", "http://[::1"], LIMIT);
    assert_eq!(out.one_line_error(), "eventlet: 1 of 1 URLs failed");
    assert!(out.stdout.contains("malformed URL"), "{out:?}");

    let out = run(&["crawl", "-i", "/nonexistent/urls.txt"], LIMIT);
    assert!(out.one_line_error().starts_with("eventlet: cannot read /nonexistent/urls.txt"), "{out:?}");

    let out = run(&["crawl", "--cacert", "/nonexistent/ca.pem", "http://127.0.0.1/"], LIMIT);
    assert!(out.one_line_error().starts_with("eventlet: cannot use --cacert"), "{out:?}");

    let out = run(&["crawl", "-c", "0", "http://127.0.0.1/"], LIMIT);
    assert_eq!(out.one_line_error(), "eventlet: --concurrency must be at least 1");

    // No URL at all: clap's usage error, status 2.
    let out = run(&["crawl"], LIMIT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_slow_server_times_out() {
    // A listener that accepts (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let out = run(&["crawl", "--timeout", "300ms", &format!("http://{addr}/")], LIMIT);
    assert_eq!(out.one_line_error(), "eventlet: 1 of 1 URLs failed");
    assert!(out.stdout.contains("timed out"), "{out:?}");
}

/// The peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A hostile page: 128 MiB of HTML, links all the way. The crawler read a
/// page to follow whole into memory (RSS past 128 MiB, and a page without
/// end took all of it); now it looks for links in the first 4 MiB and
/// counts the rest without keeping it.
#[test]
fn a_huge_page_is_crawled_in_bounded_memory() {
    use std::io::{Read, Write};
    const TOTAL: usize = 128 << 20;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (pid_tx, pid_rx) = std::sync::mpsc::channel::<u32>();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = [0; 4096];
        let _ = s.read(&mut head).unwrap();
        let chunk = "<a href=\"/x\">x</a> ".repeat(1 << 16);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n").unwrap();
        let mut sent = 0;
        while sent < TOTAL {
            s.write_all(chunk.as_bytes()).unwrap();
            sent += chunk.len();
        }
        // Before closing, while the crawler is still on the page.
        let pid = pid_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        (sent, peak_rss_kib(pid))
    });
    let crawler = Proc::spawn(&["crawl", "--depth", "1", "--max-pages", "1", &format!("http://{addr}/")]);
    pid_tx.send(crawler.pid()).unwrap();
    let (sent, peak) = server.join().unwrap();
    let out = crawler.wait(LIMIT);
    assert!(out.status.success(), "{out:?}");
    let (status, bytes, url, _) = fields(out.stdout.lines().next().unwrap());
    assert_eq!((status, bytes, url), ("200".into(), sent.to_string(), format!("http://{addr}/")), "{}", out.stdout);
    assert!(peak < 64 << 10, "the crawler's peak RSS was {peak} KiB for a page of {sent} bytes");
}
