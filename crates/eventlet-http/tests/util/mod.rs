//! Shared helpers: a server on its own OS thread, raw clients with bounded
//! timeouts, test certificates, and the external programs the tests drive
//! ([`tools`]: skipped with a note outside CI when missing, a failure in CI).
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use eventlet_http::{Body, RemoteAddr, Server};

mod tools;
use http::{Request, Response, StatusCode};
#[allow(unused_imports)]
pub use tools::{in_ci, missing, python_with, tool};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `configure(Server::bind(127.0.0.1:0).remote_addr(true))` serving
/// `handler` on a new OS thread (its own hub) and returns its address.
pub fn spawn_server<C, H>(configure: C, handler: H) -> SocketAddr
where
    C: FnOnce(Server) -> Server + Send + 'static,
    H: Fn(Request<Body>) -> Response<Body> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let server = configure(Server::bind("127.0.0.1:0").unwrap().remote_addr(true));
        tx.send(server.local_addr().unwrap()).unwrap();
        server.serve(handler).unwrap();
    });
    rx.recv_timeout(TIMEOUT).expect("server did not start")
}

/// The routes the tests use.
pub fn routes(req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let with_status = |s: StatusCode, b: Body| {
        let mut r = Response::new(b);
        *r.status_mut() = s;
        r
    };
    match path.as_str() {
        "/" => Response::new(Body::from("hello")),
        "/peer" => {
            let peer = req.extensions().get::<RemoteAddr>().expect("/peer needs a server with remote_addr(true)").0;
            Response::new(Body::from(peer.port().to_string()))
        }
        "/echo" => {
            let body = req.into_body().into_bytes();
            match body {
                Ok(b) => Response::new(Body::from(b)),
                Err(e) => with_status(StatusCode::UNPROCESSABLE_ENTITY, Body::from(e.to_string())),
            }
        }
        "/echo-stream" => Response::new(req.into_body()),
        "/stream" => {
            let n: usize = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(100_000);
            Response::new(Body::from_reader(std::io::Cursor::new(pattern(n))))
        }
        "/slow" => {
            eventlet::sleep(Duration::from_millis(300));
            Response::new(Body::from("slow"))
        }
        // Longer than any stall of a loaded machine: a client timeout
        // shorter than this fires first, whatever the machine does.
        "/stall" => {
            eventlet::sleep(Duration::from_secs(5));
            Response::new(Body::from("stalled"))
        }
        "/panic" => panic!("handler panics on purpose"),
        p if p.starts_with("/redirect/") => {
            let n: u32 = p["/redirect/".len()..].parse().unwrap();
            if n == 0 {
                return Response::new(Body::from("landed"));
            }
            http::Response::builder()
                .status(StatusCode::FOUND)
                .header("Location", format!("/redirect/{}", n - 1))
                .body(Body::empty())
                .unwrap()
        }
        "/ignore" => Response::new(Body::from("ignored")),
        _ => with_status(StatusCode::NOT_FOUND, Body::from("no such page")),
    }
}

/// `n` bytes of a recognisable pattern.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A std client socket with bounded timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Writes `req` on a new connection and reads until the server closes.
pub fn raw(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(req).unwrap();
    read_all(&mut s)
}

/// Reads until end of stream (a reset after the server's reply counts as
/// the end).
pub fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response with a `Content-Length` body from `s`.
pub fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0];
    while !out.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "connection closed inside a head: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&out).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// Runs `program args` and returns (stdout, stderr), asserting success.
pub fn run(program: &str, args: &[&str]) -> (Vec<u8>, String) {
    let out = Command::new(program).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{program} {args:?} failed: {:?}\n{stderr}", out.status);
    (out.stdout, stderr)
}

/// The path of example `name`, built by `cargo test` (built here if not).
pub fn example_binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let bin = deps.parent().unwrap().join("examples").join(name);
    if !bin.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "eventlet-http", "--example", name]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building example {name} failed");
    }
    bin
}

/// Kills the child process when dropped, so a failing test leaves none.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA (`ca.pem`, `ca.key`) and a certificate for 127.0.0.1 and
/// localhost signed by it (`srv.pem`, `srv.key`), in `dir`.
pub fn make_certs(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "eventlet-http test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let srv_key = KeyPair::generate().unwrap();
    let mut srv = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    srv.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let srv_cert = srv.signed_by(&srv_key, &Issuer::from_params(&ca, &ca_key)).unwrap();
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("ca.key", ca_key.serialize_pem()),
        ("srv.pem", srv_cert.pem()),
        ("srv.key", srv_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
}
