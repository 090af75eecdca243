//! Shared by the integration tests: run the `eventlet` binary with a time
//! limit, start it as a server and learn its address, kill it by PID when
//! the test ends however it ends, and speak HTTP to it.

#![allow(dead_code, unreachable_pub)]

// The one list of external programs the tests use, and the rule for a
// missing one (skip with a note; in CI, fail), shared with eventlet-http's
// tests.
#[path = "../../../eventlet-http/tests/util/tools.rs"]
mod tools;
#[allow(unused_imports)]
pub use tools::{in_ci, missing, python_with, tool};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_eventlet");

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts the run failed with exactly one line on stderr, `eventlet: ...`,
    /// and returns that line.
    pub fn one_line_error(&self) -> &str {
        assert!(!self.status.success(), "expected a failure: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:?}");
        assert!(lines[0].starts_with("eventlet: "), "{self:?}");
        lines[0]
    }
}

/// A child process that is killed (by its PID, SIGKILL) and reaped when
/// dropped, and whose output is collected by two threads.
pub struct Proc {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
    first_line: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Spawns `eventlet ARGS` with stdin closed and stdout/stderr collected.
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_with_stdin(args, None)
    }

    /// As [`Proc::spawn`], feeding `stdin` to the program.
    pub fn spawn_with_stdin(args: &[&str], stdin: Option<&str>) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eventlet");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            let input = input.to_string();
            thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            });
        }
        let (tx, rx) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let (out, pipe) = (stdout.clone(), child.stdout.take().unwrap());
        readers.push(thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                let mut out = out.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        }));
        let (err, mut pipe) = (stderr.clone(), child.stderr.take().unwrap());
        readers.push(thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                err.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }));
        Proc { child, stdout, stderr, readers, first_line: Some(rx) }
    }

    /// Starts a server (`--listen 127.0.0.1:0` among `args`) and returns it
    /// with the address it printed on its first line.
    pub fn server(args: &[&str]) -> (Proc, String) {
        let mut p = Proc::spawn(args);
        let rx = p.first_line.take().unwrap();
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => panic!("eventlet {args:?} printed no address; stderr: {}", p.stderr()),
        };
        let addr = address_in(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
        (p, addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Its standard error once `done` holds of it, or as it is after 10 s
    /// (the caller's assertions then say what is missing): a server logs
    /// after it has answered, so a client that has its answer may look
    /// before the line is there, however long a fixed wait would be on a
    /// loaded machine.
    pub fn stderr_once(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.stderr();
            if done(&s) || Instant::now() >= deadline {
                return s;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGINT (Ctrl-C) by PID.
    pub fn interrupt(&self) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) with our own child's PID (not yet reaped: `self`
        // owns the `Child`) and a valid signal number touches no memory.
        let r = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(r, 0, "kill -INT {pid}: {}", std::io::Error::last_os_error());
    }

    /// Waits at most `limit` for the process to exit; kills it and panics
    /// if it does not.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running after {limit:?}; stdout: {}\nstderr: {}", self.stdout(), self.stderr());
            }
            thread::sleep(Duration::from_millis(10));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Output { status, stdout: self.stdout(), stderr: self.stderr() }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `eventlet ARGS` to its end, at most `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    Proc::spawn(args).wait(limit)
}

/// The first `127.0.0.1:PORT` in `s`.
pub fn address_in(s: &str) -> Option<String> {
    let at = s.find("127.0.0.1:")?;
    let rest = &s[at + "127.0.0.1:".len()..];
    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!port.is_empty()).then(|| format!("127.0.0.1:{port}"))
}

/// The inspection console's address, from the server's stdout.
pub fn console_of(server: &Proc) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = server.stdout().lines().find(|l| l.starts_with("inspection console on")) {
            return address_in(line).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no console line; stdout: {}", server.stdout());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends console commands, then `quit`; returns everything it said.
pub fn console(addr: &str, commands: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(format!("{commands}quit\n").as_bytes()).unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text
}

/// The green threads alive on each of the first `n` hubs of a server's
/// `Server::workers`, from the console's `hubs` answer.
pub fn server_hubs(hubs: &str, n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let line = hubs
                .lines()
                .find(|l| l.contains(&format!("\"eventlet-srv-{i}\"")))
                .unwrap_or_else(|| panic!("no hub {i}:\n{hubs}"));
            line.split("): ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

/// A port on loopback with nothing listening on it.
pub fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `METHOD TARGET` exactly as given (no normalisation of `..`) with
/// `Connection: close` and reads the whole response, 10 s at most.
pub fn http(addr: &str, method: &str, target: &str) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    HttpResponse { status, head, body: raw[split + 4..].to_vec() }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("eventlet-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `rel` (creating directories).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    pub fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it
/// (`srv.pem`, `srv.key`), in `dir`.
pub fn make_certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "eventlet-cli test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let srv_key = KeyPair::generate().unwrap();
    let srv = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let srv_cert = srv.signed_by(&srv_key, &Issuer::from_params(&ca, &ca_key)).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("srv.pem"), srv_cert.pem()).unwrap();
    std::fs::write(dir.join("srv.key"), srv_key.serialize_pem()).unwrap();
}
