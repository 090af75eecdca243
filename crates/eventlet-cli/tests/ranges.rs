//! `eventlet serve` as download tools expect of a file server: byte ranges
//! (`curl -r`, `curl -C -`, `wget -c` resume), `416` past the end,
//! conditional requests (`304`), and HTTPS from the command line
//! (`--tls-cert`, `--tls-key`) driven by curl and by `eventlet load
//! --cacert`.

mod util;

use std::process::Command;
use std::time::Duration;

use util::{Proc, TempDir};

/// `n` bytes that do not repeat soon.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn out(cmd: &mut Command) -> std::process::Output {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn curl_ranges_resume_and_conditional_requests() {
    let Some(curl) = util::tool("curl") else { return };
    let site = TempDir::new("ranges-curl");
    let data = noise(300_000);
    site.write("big.bin", &data);
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);
    let url = format!("http://{addr}/big.bin");

    // curl -r 0-9: 206 with the ten bytes and Content-Range.
    let o = out(Command::new(&curl).args(["-s", "-D", "-", "-r", "0-9", &url]));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{text}");
    assert!(
        text.contains("Content-Range: bytes 0-9/300000\r\n") || text.contains("content-range: bytes 0-9/300000\r\n"),
        "{text}"
    );
    assert!(o.stdout.ends_with(&data[..10]));
    // The last 100 bytes.
    let o = out(Command::new(&curl).args(["-s", "-r", "-100", &url]));
    assert_eq!(o.stdout, &data[data.len() - 100..]);

    // curl -C -: resumes a partial download to the whole file.
    let partial = site.path().join("download.bin");
    std::fs::write(&partial, &data[..123_456]).unwrap();
    out(Command::new(&curl).args(["-s", "-C", "-", "-o", partial.to_str().unwrap(), &url]));
    assert!(std::fs::read(&partial).unwrap() == data, "curl -C - did not resume to the same file");

    // Past the end: 416 with the length.
    let o = out(Command::new(&curl).args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-r", "400000-", &url]));
    assert_eq!(o.stdout, b"416");

    // Conditional: the ETag and Last-Modified come back as 304.
    let o = out(Command::new(&curl).args(["-s", "-I", &url]));
    let head = String::from_utf8_lossy(&o.stdout).into_owned();
    let field = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    assert_eq!(field("accept-ranges").as_deref(), Some("bytes"), "{head}");
    let etag = field("etag").expect("an ETag");
    let last_modified = field("last-modified").expect("a Last-Modified");
    let code = |extra: &[&str]| {
        let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
        args.extend_from_slice(extra);
        args.push(&url);
        String::from_utf8(out(Command::new(&curl).args(&args)).stdout).unwrap()
    };
    assert_eq!(code(&["-H", &format!("If-None-Match: {etag}")]), "304");
    assert_eq!(code(&["-H", "If-None-Match: \"other\""]), "200");
    assert_eq!(code(&["-H", &format!("If-Modified-Since: {last_modified}")]), "304");
    assert_eq!(code(&["-H", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"]), "200");
    // If-Range with the current ETag keeps the range; with another, the whole file.
    assert_eq!(code(&["-r", "0-9", "-H", &format!("If-Range: {etag}")]), "206");
    assert_eq!(code(&["-r", "0-9", "-H", "If-Range: \"stale\""]), "200");
    // Several ranges: the whole file (RFC 9110 allows it).
    assert_eq!(code(&["-r", "0-9,20-29"]), "200");
}

#[test]
fn wget_continue_resumes() {
    let Some(wget) = util::tool("wget") else { return };
    let site = TempDir::new("ranges-wget");
    let data = noise(200_000);
    site.write("file.bin", &data);
    let (_server, addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);
    let dest = TempDir::new("ranges-wget-dest");
    let partial = dest.path().join("file.bin");
    std::fs::write(&partial, &data[..50_000]).unwrap();
    let o = out(Command::new(&wget).current_dir(dest.path()).args(["-c", "-S", &format!("http://{addr}/file.bin")]));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("206 Partial Content"), "wget did not resume: {log}");
    assert!(std::fs::read(&partial).unwrap() == data, "wget -c did not resume to the same file");
}

#[test]
fn serve_over_tls_for_curl_and_load_with_cacert() {
    let Some(curl) = util::tool("curl") else { return };
    let site = TempDir::new("serve-tls");
    site.write("hello.txt", "over tls\n");
    util::make_certs(site.path());
    let p = |f: &str| site.path().join(f).display().to_string();
    let (cert, key, ca) = (p("srv.pem"), p("srv.key"), p("ca.pem"));
    let (_server, addr) =
        Proc::server(&["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key, site.str()]);
    let url = format!("https://{addr}/hello.txt");
    let o = out(Command::new(&curl).args(["-s", "--cacert", &ca, &url]));
    assert_eq!(o.stdout, b"over tls\n");
    // HTTP/1.0 over TLS (ALPN http/1.0).
    let o = out(Command::new(&curl).args(["-s", "--http1.0", "--cacert", &ca, &url]));
    assert_eq!(o.stdout, b"over tls\n");

    // eventlet load trusts the CA given with --cacert... (for two seconds:
    // the four connections' debug-build handshakes are in the measured
    // run, and a loaded machine may spend half a second on them)
    let r =
        util::run(&["load", "http", &url, "-c", "4", "-d", "2s", "--json", "--cacert", &ca], Duration::from_secs(20));
    assert!(r.status.success(), "{r:?}");
    let json: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert!(json["requests"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    assert!(json.get("first_error").is_some(), "--json names the first error (null here): {json}");
    // ...and refuses the certificate without it (one line, the host named).
    let r = util::run(&["load", "http", &url, "-d", "500ms"], Duration::from_secs(20));
    let line = r.one_line_error();
    assert!(line.contains("127.0.0.1") && line.to_lowercase().contains("cert"), "{line}");
}
