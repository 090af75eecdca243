//! The green client (the seed's crawler: `GreenPool::imap` over a shared
//! [`Client`]) against nginx, a server no one here wrote: plain HTTP and
//! HTTPS with a CA made by `openssl` for the test, binary files, a 1 MiB
//! file, gzip-compressed chunked answers, keep-alive.
//!
//! nginx runs as a child in the foreground (`daemon off; master_process
//! off;`), everything of it (config, pid file, logs, temp paths, the files
//! it serves) in a temp dir, and is killed by its PID when the test ends,
//! passing or not. Without nginx the tests are skipped with a note, except
//! in CI (see `util::tool`).

mod util;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::GreenPool;
use eventlet_http::Client;
use util::{KillOnDrop, TIMEOUT};

/// How many fetches run at once.
const CONCURRENCY: usize = 50;

/// A port free right now on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` bytes that neither repeat nor compress (xorshift), from `seed`.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("eventlet-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running nginx; dropping it kills the process by its PID (so a failed
/// assertion leaves none behind).
struct Nginx {
    process: KillOnDrop,
    dir: PathBuf,
    http: u16,
    https: u16,
}

impl Nginx {
    /// Starts nginx serving `dir/www` on two free ports (retried on new
    /// ports should one be taken in between); its certificate is
    /// `dir/srv.pem`.
    fn start(bin: &str, dir: &Path) -> Nginx {
        for _attempt in 0..3 {
            let (http, https) = (free_port(), free_port());
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config(dir, http, https)).unwrap();
            let _ = std::fs::remove_file(dir.join("error.log"));
            let child = Command::new(bin)
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {bin} failed: {e}"));
            let mut nginx = Nginx { process: KillOnDrop(child), dir: dir.to_path_buf(), http, https };
            match nginx.wait_ready() {
                Ok(()) => return nginx,
                // Another process took a port in between: try new ones.
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
        panic!("nginx found no free ports in 3 attempts");
    }

    /// Waits until both ports accept connections; on failure hands back
    /// what nginx said.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + TIMEOUT;
        let ports = [self.http, self.https];
        loop {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut e) = self.process.0.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut stderr);
                }
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited ({status}):\n{stderr}{log}"));
            }
            let up = ports.iter().all(|&p| {
                TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], p)), Duration::from_millis(200)).is_ok()
            });
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                return Err(format!("nginx did not listen on {ports:?} within {TIMEOUT:?}:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The access log: one `(connection, request number on it, uri, gzip
    /// ratio)` per request answered.
    /// The access log once it has at least `n` lines: nginx writes a
    /// line after the response's last byte is sent, so a client that has
    /// read a whole response may look before it is there.
    fn access_log_of(&self, n: usize) -> Vec<(u64, u64, String, String)> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.access_log();
            if log.len() >= n || Instant::now() > until {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn access_log(&self) -> Vec<(u64, u64, String, String)> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                assert_eq!(f.len(), 4, "unexpected access log line {l:?}");
                (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].to_string(), f[3].to_string())
            })
            .collect()
    }
}

/// nginx's configuration: one process in the foreground, every path in
/// `dir`, HTTP on `http`, HTTPS on `https`, gzip for text.
fn config(dir: &Path, http: u16, https: u16) -> String {
    let d = dir.display();
    format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format conns '$connection $connection_requests $request_uri $gzip_ratio';
    access_log {d}/access.log conns;
    types {{
        text/plain txt;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 30s;
    keepalive_requests 100000;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 64;
    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{https} ssl;
        ssl_certificate {d}/srv.pem;
        ssl_certificate_key {d}/srv.key;
        root {d}/www;
        location = /moved {{
            return 302 /small/7.txt;
        }}
    }}
}}
"#
    )
}

/// The files nginx serves, by path: small text, binary with every byte
/// value, a 1 MiB file, a large compressible text (sent gzipped, chunked).
fn site() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..40 {
        files.push((format!("/small/{i}.txt"), format!("page {i}\n").repeat(i + 1).into_bytes()));
    }
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(256 * 64).collect();
    files.push(("/every-byte.bin".to_string(), every_byte));
    files.push(("/noise.bin".to_string(), noise(100_003, 7)));
    files.push(("/big.bin".to_string(), noise(1 << 20, 42)));
    let text: String = (0..20_000).map(|i| format!("line {i}: the quick brown fox\n")).collect();
    files.push(("/large.txt".to_string(), text.into_bytes()));
    files
}

/// Fills `dir` with nginx's temp paths, the site and a CA and server
/// certificate; returns the files.
fn prepare(dir: &Path) -> HashMap<String, Vec<u8>> {
    for sub in ["tmp", "www/small"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let files: HashMap<String, Vec<u8>> = site().into_iter().collect();
    for (path, data) in &files {
        std::fs::write(dir.join("www").join(&path[1..]), data).unwrap();
    }
    util::make_certs(dir);
    files
}

/// Fetches every path of `files` `rounds` times from `base` through
/// `client`, `CONCURRENCY` at once with `GreenPool::imap`, and checks every
/// answer: status 200 and the file's bytes exactly.
fn crawl(client: &Client, base: &str, files: &HashMap<String, Vec<u8>>, rounds: usize) -> usize {
    let files = Rc::new(files.clone());
    let mut paths: Vec<String> = files.keys().cloned().collect();
    paths.sort();
    let urls: Vec<String> = (0..rounds).flat_map(|_| paths.iter().map(|p| format!("{base}{p}"))).collect();
    let client = client.clone();
    let fetch = move |url: String| -> (String, io::Result<(u16, Vec<u8>)>) {
        let r = client.get(&url).and_then(|resp| {
            let status = resp.status().as_u16();
            Ok((status, resp.into_body().into_bytes()?))
        });
        (url, r)
    };
    let pool = GreenPool::new(CONCURRENCY);
    let mut seen = 0;
    for (url, r) in pool.imap(fetch, urls.clone()) {
        let (status, body) = r.unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
        assert_eq!(status, 200, "GET {url}: status {status}, body {:?}", String::from_utf8_lossy(&body));
        let path = &url[base.len()..];
        let want = &files[path];
        assert_eq!(body.len(), want.len(), "GET {url}: {} bytes instead of {}", body.len(), want.len());
        if let Some(i) = body.iter().zip(want.iter()).position(|(a, b)| a != b) {
            panic!("GET {url}: body differs from the file at byte {i}");
        }
        seen += 1;
    }
    assert_eq!(seen, urls.len(), "imap lost answers");
    seen
}

/// What the access log says about `requests` fetches of `files`: every one
/// answered, over fewer connections than requests (keep-alive), the large
/// text gzipped and the binaries not.
fn check_log(nginx: &Nginx, requests: usize) {
    let log = nginx.access_log_of(requests);
    assert_eq!(log.len(), requests, "nginx logged {} requests, the client made {requests}", log.len());
    let conns: HashSet<u64> = log.iter().map(|(c, ..)| *c).collect();
    assert!(conns.len() < requests, "{} connections for {requests} requests: keep-alive did not reuse", conns.len());
    assert!(log.iter().any(|(_, n, ..)| *n > 1), "no connection carried a second request");
    eprintln!("nginx answered {requests} requests over {} connections", conns.len());
    for (_, _, uri, ratio) in &log {
        if uri == "/large.txt" {
            let r: f64 = ratio.parse().unwrap_or_else(|_| panic!("/large.txt was not gzipped (ratio {ratio:?})"));
            assert!(r > 2.0, "/large.txt gzip ratio {r}");
        } else if uri.ends_with(".bin") {
            assert_eq!(ratio, "-", "{uri} was compressed");
        }
    }
}

#[test]
fn crawl_nginx_over_http_byte_exact() {
    let Some(bin) = util::tool("nginx") else { return };
    let dir = TempDir::new("nginx-http");
    let files = prepare(&dir.0);
    let nginx = Nginx::start(&bin, &dir.0);
    let base = format!("http://127.0.0.1:{}", nginx.http);

    let client = Client::builder().timeout(TIMEOUT).build();
    let n = crawl(&client, &base, &files, 3);
    check_log(&nginx, n);

    // The large text came gzipped and chunked (nginx cannot know the
    // compressed length up front); the client undid both.
    let resp = client.get(&format!("{base}/large.txt")).unwrap();
    let te = resp.headers().get("transfer-encoding").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(te.as_deref(), Some("chunked"), "headers: {:?}", resp.headers());
    assert!(resp.into_body().into_bytes().unwrap() == files["/large.txt"], "/large.txt differs");
    let (_, _, uri, ratio) = nginx.access_log_of(n + 1).pop().unwrap();
    assert_eq!(uri, "/large.txt");
    assert_ne!(ratio, "-", "/large.txt was not gzipped");

    // Statuses of nginx's own making, and a redirect followed.
    let resp = client.get(&format!("{base}/no/such/file")).unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.into_body().into_string().unwrap().contains("nginx"));
    let resp = client.get(&format!("{base}/moved")).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().into_bytes().unwrap(), files["/small/7.txt"]);
}

#[cfg(feature = "tls")]
#[test]
fn crawl_nginx_over_https_with_custom_ca_byte_exact() {
    let Some(bin) = util::tool("nginx") else { return };
    let dir = TempDir::new("nginx-https");
    let files = prepare(&dir.0);
    let nginx = Nginx::start(&bin, &dir.0);
    let base = format!("https://127.0.0.1:{}", nginx.https);

    let client = Client::builder().timeout(TIMEOUT).ca_file(dir.0.join("ca.pem")).unwrap().build();
    let n = crawl(&client, &base, &files, 2);
    check_log(&nginx, n);

    // The bundled Mozilla roots do not trust the test CA.
    let e = Client::builder().timeout(TIMEOUT).build().get(&format!("{base}/small/1.txt")).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("cert"), "expected a certificate error, got: {e}");
}
