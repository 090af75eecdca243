//! Helpers of the greening tests: the real servers they start (redis,
//! PostgreSQL, nginx), each in a temp dir and killed by PID when dropped,
//! and the switch that runs a test with the patch off.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../eventlet-http/tests/util/tools.rs"]
pub mod tools;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that makes [`patch`] leave the patch off (set for the
/// child processes of [`run_unpatched`]).
pub const UNPATCHED: &str = "EVENTLET_TEST_UNPATCHED";

/// Turns the monkey patch on, unless this process runs a test with it off
/// (see [`run_unpatched`]). Returns whether it is on.
pub fn patch() -> bool {
    if std::env::var_os(UNPATCHED).is_some() {
        assert!(!eventlet::patcher::is_monkey_patched());
        return false;
    }
    eventlet::monkey_patch();
    true
}

/// Runs the (ignored) test `name` of this test binary in a child process
/// with the patch off, and asserts that it ran and passed.
pub fn run_unpatched(name: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1", "--include-ignored"])
        .env(UNPATCHED, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("1 passed"), "{name} with the patch off:\n{stdout}\n{stderr}");
}

/// Ends the whole test process with a message if it is still running after
/// `limit` (a test that would otherwise hang, say in an `accept` whose
/// client died); dropping the guard disarms it.
pub fn fail_after(limit: Duration, what: &'static str) -> FailAfter {
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let a = armed.clone();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        if a.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("{what} did not finish within {limit:?}: failing the test process");
            std::process::exit(101);
        }
    });
    FailAfter(armed)
}

/// Disarms [`fail_after`] when dropped.
pub struct FailAfter(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for FailAfter {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Raises this process's open-file limit to its hard limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        r.rlim_cur
    }
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child process when dropped, so a failing test leaves none.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("eventlet-greening-{name}-{}-{n}", std::process::id()));
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

/// A command whose process gets SIGKILL when the thread that started it
/// ends (so a test that aborts leaves no server behind).
fn dies_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// Waits until `port` on 127.0.0.1 accepts connections, or `child` exits
/// (then panics with `log`'s contents).
fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A redis-server of its own, on a free port, persisting nothing.
pub struct Redis {
    _process: KillOnDrop,
    _dir: TempDir,
    pub port: u16,
}

impl Redis {
    /// Starts one, or returns `None` (the test is skipped; in CI it fails)
    /// when redis-server is not installed.
    pub fn start() -> Option<Redis> {
        let bin = tools::tool("redis-server")?;
        let dir = TempDir::new("redis");
        let port = free_port();
        let log = dir.0.join("redis.log");
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--maxclients", "10000", "--dir"])
            .arg(&dir.0)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = dies_with_parent(&mut cmd).spawn().unwrap();
        wait_listening(&mut child, port, "redis-server", &log);
        Some(Redis { _process: KillOnDrop(child), _dir: dir, port })
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// A PostgreSQL server of its own, started as an unprivileged user when
/// the tests run as root (PostgreSQL refuses root), trusting local
/// connections, on a free port.
pub struct Postgres {
    _process: KillOnDrop,
    _dir: TempDir,
    pub port: u16,
}

impl Postgres {
    /// Starts one, or returns `None` (skipped; in CI a failure) when the
    /// server is not installed.
    pub fn start() -> Option<Postgres> {
        let initdb = tools::tool("initdb")?;
        // `postgres` lives beside `initdb` (or on PATH with it).
        let bindir = Path::new(&initdb).parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = TempDir::new("postgres");
        // PostgreSQL will not run as root: as root, run it as the
        // `postgres` user (the Debian package makes one) or `nobody`.
        // SAFETY: geteuid has no preconditions.
        let ids = if unsafe { libc::geteuid() } == 0 { Some(unprivileged()) } else { None };
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&dir.0, Some(uid), Some(gid)).unwrap();
        }
        let as_user = |program: &Path| {
            let mut c = match ids {
                Some((uid, gid)) => {
                    let mut c = Command::new("setpriv");
                    c.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--clear-groups").arg(program);
                    c
                }
                None => Command::new(program),
            };
            c.env("LC_ALL", "C").current_dir(&dir.0);
            c
        };
        let data = dir.0.join("data");
        let log = dir.0.join("initdb.log");
        let out = as_user(&bindir.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let _ = std::fs::write(&log, &out.stdout);
        let port = free_port();
        let log = dir.0.join("postgres.log");
        let logf = std::fs::File::create(&log).unwrap();
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
        }
        let mut cmd = as_user(&bindir.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir.0)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=250"])
            .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        let mut child = dies_with_parent(&mut cmd).spawn().unwrap();
        wait_listening(&mut child, port, "postgres", &log);
        Some(Postgres { _process: KillOnDrop(child), _dir: dir, port })
    }

    /// A libpq connection string for it.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10", self.port)
    }
}

/// The uid and gid of `postgres`, else `nobody`.
fn unprivileged() -> (u32, u32) {
    for user in ["postgres", "nobody"] {
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, user]).output().ok()?;
            String::from_utf8(out.stdout).ok()?.trim().parse().ok()
        };
        if let (Some(u), Some(g)) = (id("-u"), id("-g")) {
            return (u, g);
        }
    }
    panic!("no unprivileged user (postgres or nobody) to run PostgreSQL as");
}

/// nginx serving `files` (name, contents) on a free port, one process in
/// the foreground.
pub struct Nginx {
    _process: KillOnDrop,
    _dir: TempDir,
    pub port: u16,
}

impl Nginx {
    /// Starts it, or returns `None` (skipped; in CI a failure) when nginx
    /// is not installed.
    pub fn start(files: &[(String, Vec<u8>)]) -> Option<Nginx> {
        let bin = tools::tool("nginx")?;
        let dir = TempDir::new("nginx");
        let www = dir.0.join("www");
        std::fs::create_dir_all(&www).unwrap();
        for (name, body) in files {
            std::fs::write(www.join(name), body).unwrap();
        }
        let port = free_port();
        let d = dir.0.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/tmp;\n proxy_temp_path {d}/tmp;\n\
             fastcgi_temp_path {d}/tmp;\n uwsgi_temp_path {d}/tmp;\n scgi_temp_path {d}/tmp;\n\
             keepalive_requests 100000;\n server {{\n  listen 127.0.0.1:{port};\n  root {d}/www;\n }}\n}}\n"
        );
        std::fs::create_dir_all(dir.0.join("tmp")).unwrap();
        let conf_path = dir.0.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.0.join("error.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-p").arg(&dir.0).arg("-c").arg(&conf_path).arg("-e").arg(&log);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = dies_with_parent(&mut cmd).spawn().unwrap();
        wait_listening(&mut child, port, "nginx", &log);
        Some(Nginx { _process: KillOnDrop(child), _dir: dir, port })
    }
}
