//! Real servers and tools the tests drive (nginx, PostgreSQL, redis, wrk):
//! found on the machine, started in a temp dir, stopped by their PID (and
//! killed by the kernel if the test thread that started one dies first).
//! One file for every test crate that starts them: eventlet's tests and
//! eventlet-greening's include it (`#[path]`), beside a `tools` module
//! (eventlet-http's `tests/util/tools.rs`).
//!
//! Finding them follows [`tools`](super::tools) (eventlet-http's one list
//! of the programs the tests drive): a test that needs a missing one skips
//! with a message saying what to install, except in CI, where
//! `.ci/install-tools` installs them all and a missing one fails the test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `addr` accepts connections, or `child` exits, or `limit`
/// passes; says why not.
pub fn wait_listening(addr: SocketAddr, child: &mut Child, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("it exited ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("it did not listen on {addr} within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("eventlet-{name}-{}-{n}", std::process::id()));
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

/// Makes `cmd`'s process get SIGKILL when the thread that starts it ends,
/// so a test that aborts leaves no server behind.
pub fn dies_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// A child process stopped when dropped: `signal` first, then, if it has
/// not exited within five seconds, SIGKILL.
pub struct Server {
    pub child: Child,
    pub signal: i32,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, self.signal) };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx, or `None` (after saying so) when it is missing outside CI.
pub fn nginx_binary() -> Option<PathBuf> {
    super::tools::tool("nginx").map(PathBuf::from)
}

/// Starts nginx in the foreground serving `dir/www` on a free port with
/// `worker_connections` connections; returns it and its port.
pub fn start_nginx(bin: &Path, dir: &Path, worker_connections: usize) -> (Server, u16) {
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    for _attempt in 0..3 {
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            r#"
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {files};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {d}/www;
    }}
}}
"#,
            files = worker_connections * 2 + 64
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let _ = std::fs::remove_file(dir.join("error.log"));
        let child = dies_with_parent(
            Command::new(bin)
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} failed: {e}", bin.display()));
        let mut server = Server { child, signal: libc::SIGTERM };
        match wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), &mut server.child, Duration::from_secs(10)) {
            Ok(()) => return (server, port),
            Err(why) => {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                if log.contains("Address already in use") {
                    continue;
                }
                panic!("nginx did not start: {why}\n{log}");
            }
        }
    }
    panic!("nginx found no free port in 3 attempts");
}

/// wrk, or `None` (after saying so) when it is missing outside CI.
pub fn wrk_binary() -> Option<PathBuf> {
    super::tools::tool("wrk").map(PathBuf::from)
}

/// PostgreSQL's `initdb` and the `postgres` beside it, or `None` (after
/// saying so) when they are missing outside CI.
pub fn postgres_binaries() -> Option<(PathBuf, PathBuf)> {
    let initdb = PathBuf::from(super::tools::tool("initdb")?);
    let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
    let initdb = if initdb.is_absolute() {
        initdb
    } else {
        // Found on PATH by name.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path).map(|d| d.join("initdb")).find(|p| p.is_file());
        found.and_then(|p| std::fs::canonicalize(p).ok()).unwrap_or(initdb)
    };
    let postgres = initdb.with_file_name("postgres");
    if !postgres.is_file() {
        super::tools::missing("PostgreSQL's server (postgres beside initdb)", "apt-get install -y postgresql");
        return None;
    }
    Some((initdb, postgres))
}

/// The uid and gid PostgreSQL runs as: ours, unless we are root (which
/// PostgreSQL refuses): then the `postgres` user if there is one, else
/// `nobody`.
pub fn unprivileged_ids() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if uid != 0 {
        return (uid, gid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 3 && f[0] == name {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    };
    find("postgres").or_else(|| find("nobody")).unwrap_or((65534, 65534))
}

/// Starts a PostgreSQL server of its own in `dir` (made and owned by an
/// unprivileged user), listening on 127.0.0.1 with trust authentication
/// for the user `postgres`; returns it and its port.
pub fn start_postgres(initdb: &Path, postgres: &Path, dir: &Path, max_connections: usize) -> (Server, u16) {
    let (uid, gid) = unprivileged_ids();
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    let data = dir.join("data");
    let out = Command::new(initdb)
        .args(["-U", "postgres", "-A", "trust", "--no-sync", "--no-locale", "-E", "UTF8", "-D"])
        .arg(&data)
        .uid(uid)
        .gid(gid)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {} failed: {e}", initdb.display()));
    assert!(
        out.status.success(),
        "initdb failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for _attempt in 0..3 {
        let port = free_port();
        let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
        std::os::unix::fs::chown(dir.join("postgres.log"), Some(uid), Some(gid)).unwrap();
        let child = dies_with_parent(
            Command::new(postgres)
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-c", &format!("max_connections={max_connections}")])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "shared_buffers=16MB"])
                .uid(uid)
                .gid(gid)
                .env("LC_ALL", "C")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} failed: {e}", postgres.display()));
        // SIGINT: PostgreSQL's fast shutdown.
        let mut server = Server { child, signal: libc::SIGINT };
        match wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), &mut server.child, Duration::from_secs(30)) {
            Ok(()) => return (server, port),
            Err(why) => {
                let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
                if log.contains("already in use") {
                    continue;
                }
                panic!("PostgreSQL did not start: {why}\n{log}");
            }
        }
    }
    panic!("PostgreSQL found no free port in 3 attempts");
}

/// A redis-server of its own, on a free port, persisting nothing.
pub struct Redis {
    _server: Server,
    _dir: TempDir,
    pub port: u16,
}

impl Redis {
    /// Starts one, or returns `None` (after saying so) when redis-server
    /// is missing outside CI.
    pub fn start() -> Option<Redis> {
        let bin = super::tools::tool("redis-server")?;
        let dir = TempDir::new("redis");
        for _attempt in 0..3 {
            let port = free_port();
            let child = dies_with_parent(
                Command::new(&bin)
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .args(["--maxclients", "10000", "--dir"])
                    .arg(&dir.0)
                    .arg("--logfile")
                    .arg(dir.0.join("redis.log"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} failed: {e}"));
            let mut server = Server { child, signal: libc::SIGTERM };
            match wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), &mut server.child, Duration::from_secs(30)) {
                Ok(()) => return Some(Redis { _server: server, _dir: dir, port }),
                Err(why) => {
                    let log = std::fs::read_to_string(dir.0.join("redis.log")).unwrap_or_default();
                    if log.contains("Address already in use") {
                        continue;
                    }
                    panic!("redis-server did not start: {why}\n{log}");
                }
            }
        }
        panic!("redis-server found no free port in 3 attempts");
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// A PostgreSQL server of its own ([`start_postgres`]: 250 connections).
pub struct Postgres {
    _server: Server,
    _dir: TempDir,
    pub port: u16,
}

impl Postgres {
    /// Starts one, or returns `None` (after saying so) when PostgreSQL is
    /// missing outside CI.
    pub fn start() -> Option<Postgres> {
        let (initdb, postgres) = postgres_binaries()?;
        let dir = TempDir::new("postgres");
        let (server, port) = start_postgres(&initdb, &postgres, &dir.0, 250);
        Some(Postgres { _server: server, _dir: dir, port })
    }

    /// A libpq connection string for it.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10", self.port)
    }
}

/// nginx serving `files` (name, contents) on a free port ([`start_nginx`]).
pub struct Nginx {
    _server: Server,
    _dir: TempDir,
    pub port: u16,
}

impl Nginx {
    /// Starts it, or returns `None` (after saying so) when nginx is missing
    /// outside CI.
    pub fn start(files: &[(String, Vec<u8>)]) -> Option<Nginx> {
        let bin = nginx_binary()?;
        let dir = TempDir::new("nginx");
        let www = dir.0.join("www");
        std::fs::create_dir_all(&www).unwrap();
        for (name, body) in files {
            std::fs::write(www.join(name), body).unwrap();
        }
        let (server, port) = start_nginx(&bin, &dir.0, 4096);
        Some(Nginx { _server: server, _dir: dir, port })
    }
}
