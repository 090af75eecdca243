//! The peers that are not Rust: Go (built once per run from `peers/*.go`)
//! and Python eventlet and gevent (`peers/*.py`), found when installed and
//! skipped with a reason when not; and `setup`, which installs them.
//!
//! The sources are compiled into this binary (`include_str!`) and written
//! to a scratch directory at run time, so the harness runs from anywhere.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util;

/// `peers/echo.go`.
pub(crate) const ECHO_GO: &str = include_str!("../../peers/echo.go");
/// `peers/http.go`.
pub(crate) const HTTP_GO: &str = include_str!("../../peers/http.go");
/// `peers/echo_eventlet.py`.
pub(crate) const ECHO_EVENTLET_PY: &str = include_str!("../../peers/echo_eventlet.py");
/// `peers/echo_gevent.py`.
pub(crate) const ECHO_GEVENT_PY: &str = include_str!("../../peers/echo_gevent.py");
/// `peers/http_eventlet.py`.
pub(crate) const HTTP_EVENTLET_PY: &str = include_str!("../../peers/http_eventlet.py");
/// `peers/http_gevent.py`.
pub(crate) const HTTP_GEVENT_PY: &str = include_str!("../../peers/http_gevent.py");

/// What to tell the user when a peer's runtime is missing.
pub(crate) const NOT_INSTALLED: &str = "not installed (run `eventlet-bench setup`)";

/// A directory of this run's peer sources and binaries, removed on drop.
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A fresh directory under the system's temporary directory.
    pub(crate) fn new() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("eventlet-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch { dir })
    }

    /// Writes `text` to `name` in the directory and returns its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds the Go program `name` (`echo.go`, ...) from `source` into the
/// scratch directory; `Err` holds the reason to print beside `go: `.
pub(crate) fn go_build(scratch: &Scratch, name: &str, source: &str) -> Result<PathBuf, String> {
    let go = util::which("go").ok_or_else(|| NOT_INSTALLED.to_string())?;
    let src = scratch.write(name, source).map_err(|e| format!("{e:#}"))?;
    let exe = src.with_extension("");
    let out = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .current_dir(&scratch.dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run go build: {e}"))?;
    if !out.status.success() {
        return Err(format!("go build {name} failed: {}", last_line(&out.stderr)));
    }
    Ok(exe)
}

/// The Python interpreter that can import `module` (`eventlet`, `gevent`):
/// its real path, so that the PID the harness watches is Python's own and
/// not a launcher's (pyenv shims). `Err` holds the reason to print.
pub(crate) fn python_with(module: &str) -> Result<PathBuf, String> {
    let python = util::which("python3").ok_or_else(|| NOT_INSTALLED.to_string())?;
    let code = format!("import sys, warnings; warnings.simplefilter('ignore'); import {module}; print(sys.executable)");
    let out = Command::new(python)
        .arg("-c")
        .arg(code)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || exe.is_empty() {
        return Err(NOT_INSTALLED.to_string());
    }
    Ok(PathBuf::from(exe))
}

/// `eventlet-bench setup`: installs Go and wrk with apt-get, and Python
/// eventlet and gevent with pip, each only when missing; says what it did.
pub(crate) fn setup() -> Result<()> {
    let apt_wanted: Vec<&str> = [("go", "golang-go"), ("wrk", "wrk")]
        .into_iter()
        .filter(|(tool, _)| !util::have(tool))
        .map(|(_, package)| package)
        .collect();
    if apt_wanted.is_empty() {
        println!("setup: go and wrk are already installed");
    } else {
        if !util::have("apt-get") {
            bail!("setup needs apt-get to install {} (install them by hand elsewhere)", apt_wanted.join(" "));
        }
        println!("setup: apt-get update");
        run_quiet(Command::new("apt-get").arg("update").arg("-qq"))?;
        println!("setup: apt-get install -y {}", apt_wanted.join(" "));
        run_quiet(
            Command::new("apt-get")
                .args(["install", "-y", "-qq"])
                .args(&apt_wanted)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }

    let pip_wanted: Vec<&str> = ["eventlet", "gevent"].into_iter().filter(|m| python_with(m).is_err()).collect();
    if pip_wanted.is_empty() {
        println!("setup: python eventlet and gevent are already installed");
    } else {
        if !util::have("python3") {
            bail!("setup needs python3 to install {} with pip", pip_wanted.join(" "));
        }
        println!("setup: python3 -m pip install {}", pip_wanted.join(" "));
        let pip = || {
            let mut c = Command::new("python3");
            c.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]).args(&pip_wanted);
            c
        };
        if let Err(e) = run_quiet(&mut pip()) {
            // Debian's own Python refuses pip installs outside a venv (PEP 668).
            if !format!("{e:#}").contains("externally-managed") {
                return Err(e);
            }
            println!("setup: python3 -m pip install --break-system-packages {}", pip_wanted.join(" "));
            run_quiet(pip().arg("--break-system-packages"))?;
        }
    }

    for (what, ok) in [
        ("go", util::have("go")),
        ("wrk", util::have("wrk")),
        ("python eventlet", python_with("eventlet").is_ok()),
        ("python gevent", python_with("gevent").is_ok()),
    ] {
        if !ok {
            bail!("setup finished but {what} is still missing");
        }
    }
    println!("setup: done (go, wrk, python eventlet and gevent are installed)");
    Ok(())
}

/// Runs `cmd` with its output captured; an error carries the command and
/// the last line it printed.
fn run_quiet(cmd: &mut Command) -> Result<()> {
    let what = format!("{} {}", cmd.get_program().to_string_lossy(), {
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        args.join(" ")
    });
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        let why = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) { &out.stderr } else { &out.stdout };
        bail!("{what} failed ({}): {}", out.status, last_line(why));
    }
    Ok(())
}

/// The last non-empty line of a program's output.
fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: String = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").trim().into();
    // pip's PEP 668 message spans lines; keep the word the caller looks for.
    if text.contains("externally-managed-environment") {
        format!("externally-managed environment: {all}")
    } else {
        all
    }
}
