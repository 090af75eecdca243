//! `eventlet crawl` against nginx: links of a page reached by redirect
//! (`/sub` -> `/sub/`) resolve against where it was reached, as `wget -r`
//! does, and that page is not fetched twice; a redirect loop is an error
//! ("too many redirects", exit status 1), as curl (47) and wget (8) fail.

mod util;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{run, TempDir};

/// nginx in the foreground serving `dir/www`, killed by PID when dropped.
struct Nginx {
    child: std::process::Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(bin: &str, dir: &std::path::Path) -> Nginx {
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n\
               fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
               types {{ text/html html; }}\n\
               server {{ listen 127.0.0.1:{port}; root {d}/www;\n\
                 location = /loop {{ return 302 /loop; }} }} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf"), "-e", &format!("{d}/error.log")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Nginx { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if nginx.child.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: try another
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nginx.child.kill();
    }
    panic!("nginx did not start: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
}

#[test]
fn crawl_follows_links_from_where_a_redirect_led() {
    let Some(bin) = util::tool("nginx") else { return };
    let site = TempDir::new("crawl-nginx");
    std::fs::create_dir_all(site.path().join("tmp")).unwrap();
    site.write("www/sub/index.html", r#"<a href="a.html">a</a> <a href="b.html">b</a> <a href="./">here</a>"#);
    site.write("www/sub/a.html", "<p>a</p>");
    site.write("www/sub/b.html", "<p>b</p>");
    let nginx = start_nginx(&bin, site.path());
    let base = format!("http://127.0.0.1:{}", nginx.port);

    let r = run(&["crawl", "-d", "1", &format!("{base}/sub")], Duration::from_secs(30));
    assert!(r.status.success(), "{r:?}");
    let fetched: Vec<(&str, &str)> = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with("crawled"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], f[2])
        })
        .collect();
    assert_eq!(
        fetched,
        [
            ("200", &*format!("{base}/sub")),
            ("200", &*format!("{base}/sub/a.html")),
            ("200", &*format!("{base}/sub/b.html"))
        ],
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(&format!("{base}/sub -> {base}/sub/")), "{}", r.stdout);
}

#[test]
fn crawl_reports_a_redirect_loop_and_fails() {
    let Some(bin) = util::tool("nginx") else { return };
    let site = TempDir::new("crawl-nginx-loop");
    std::fs::create_dir_all(site.path().join("tmp")).unwrap();
    site.write("www/index.html", "home");
    let nginx = start_nginx(&bin, site.path());
    let url = format!("http://127.0.0.1:{}/loop", nginx.port);
    let r = run(&["crawl", &url], Duration::from_secs(30));
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stdout.contains("too many redirects"), "{}", r.stdout);
    assert!(r.stderr.contains("1 of 1 URLs failed"), "{}", r.stderr);
}
