//! Real servers and tools the tests drive (nginx, PostgreSQL, wrk): found
//! on the machine, started in a temp dir, stopped by their PID.
//!
//! Finding them follows [`tools`](super::tools) (eventlet-http's one list
//! of the programs the tests drive): a test that needs a missing one skips
//! with a message saying what to install, except in CI, where
//! `.ci/install-tools` installs them all and a missing one fails the test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
        let dir = std::env::temp_dir().join(format!("eventlet-{name}-{}", std::process::id()));
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
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
    use std::os::unix::process::CommandExt;
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
        let child = Command::new(postgres)
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
            .stderr(log)
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
