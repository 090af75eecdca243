//! The external programs the tests drive (curl, wget, nginx, wrk, Python
//! modules, Chromium...) and the one rule for when one is missing: outside
//! CI the test says what it skipped and the command that installs the
//! program, and returns; in CI (`CI` set, as `.ci/run` does) it fails.
//!
//! ```ignore
//! let Some(curl) = util::tool("curl") else { return };
//! ```
//!
//! The same file serves the CLI's and eventlet-greening's tests (their
//! `tests/util` include it), so the table below is the one list of what
//! the tests use.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A program: where to look beside `PATH`, how to ask whether it runs, and
/// the command that installs it (Debian).
struct Known {
    name: &'static str,
    /// Tried before `PATH` (nginx lives in `/usr/sbin`).
    paths: &'static [&'static str],
    /// The arguments of a harmless run (`--version`); the program counts as
    /// there if it runs and either succeeds or names itself (wrk's
    /// `--version` exits 1).
    probe: &'static [&'static str],
    install: &'static str,
}

const KNOWN: &[Known] = &[
    Known { name: "curl", paths: &[], probe: &["--version"], install: "apt-get install -y curl" },
    Known { name: "wget", paths: &[], probe: &["--version"], install: "apt-get install -y wget" },
    Known {
        name: "nginx",
        paths: &["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"],
        probe: &["-v"],
        install: "apt-get install -y nginx-light",
    },
    Known { name: "wrk", paths: &[], probe: &["--version"], install: "apt-get install -y wrk" },
    // eventlet-greening's servers (it includes this file too).
    Known {
        name: "redis-server",
        paths: &["/usr/bin/redis-server", "/usr/local/bin/redis-server"],
        probe: &["--version"],
        install: "apt-get install -y redis-server",
    },
    Known {
        name: "initdb",
        // Debian keeps PostgreSQL's programs off PATH, by major version.
        paths: &[
            "/usr/lib/postgresql/18/bin/initdb",
            "/usr/lib/postgresql/17/bin/initdb",
            "/usr/lib/postgresql/16/bin/initdb",
            "/usr/lib/postgresql/15/bin/initdb",
            "/usr/lib/postgresql/14/bin/initdb",
            "/usr/lib/postgresql/13/bin/initdb",
        ],
        probe: &["--version"],
        install: "apt-get install -y postgresql",
    },
    Known { name: "openssl", paths: &[], probe: &["version"], install: "apt-get install -y openssl" },
    Known { name: "python3", paths: &[], probe: &["--version"], install: "apt-get install -y python3 python3-pip" },
    Known { name: "chromium", paths: &[], probe: &["--version"], install: "apt-get install -y chromium" },
    Known {
        name: "chromedriver",
        paths: &["/usr/bin/chromedriver"],
        probe: &["--version"],
        install: "apt-get install -y chromium-driver",
    },
];

/// Python modules the tests import, with the pip command for each.
const PYTHON_MODULES: &[(&str, &str)] = &[
    ("websockets", "python3 -m pip install websockets"),
    ("requests", "python3 -m pip install requests"),
    ("selenium", "python3 -m pip install selenium"),
];

/// Whether this run is CI's (`CI` set to anything but empty, `0` or `false`):
/// there a missing program fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The test running on this thread, as libtest names its thread.
fn test_name() -> String {
    std::thread::current().name().unwrap_or("a test").to_string()
}

/// Skips the calling test (outside CI) or fails it (in CI): `what` is
/// missing and `install` installs it. The note goes straight to the
/// process's stderr, which the test harness does not capture, so a plain
/// `cargo test` shows it.
pub fn missing(what: &str, install: &str) {
    let all = "every program the tests use: .ci/install-tools (see the README)";
    assert!(!in_ci(), "{what} is required by this test and CI must not skip it; install it: {install} ({all})");
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {}: {what} is not installed; install it with `{install}` ({all})",
        test_name()
    );
}

/// Whether `program` runs with `args`: it started, and it succeeded or
/// named itself in its output.
fn runs(program: &str, name: &str, args: &[&str]) -> bool {
    let Ok(out) = Command::new(program).args(args).stdin(Stdio::null()).output() else { return false };
    let said = |b: &[u8]| String::from_utf8_lossy(b).to_ascii_lowercase().contains(name);
    out.status.success() || said(&out.stdout) || said(&out.stderr)
}

/// The program `name` (one of the table above) as a command to run, or
/// `None` after [`missing`] when it is not installed outside CI.
pub fn tool(name: &str) -> Option<String> {
    let known = KNOWN.iter().find(|k| k.name == name).unwrap_or_else(|| panic!("tools.rs does not know {name}"));
    let found = known
        .paths
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .chain(std::iter::once(name))
        .find(|p| runs(p, name, known.probe));
    if found.is_none() {
        missing(name, known.install);
    }
    found.map(str::to_string)
}

/// `python3`, when it can import `module` (a package of the table above, or
/// a module in one: name the module the test uses, `websockets.sync.client`,
/// as an empty directory left of a package imports as an empty namespace);
/// `None` after [`missing`] otherwise.
pub fn python_with(module: &str) -> Option<String> {
    let package = module.split('.').next().unwrap_or(module);
    let (_, install) =
        PYTHON_MODULES.iter().find(|(m, _)| *m == package).unwrap_or_else(|| panic!("tools.rs does not know {module}"));
    let py = tool("python3")?;
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing(&format!("Python's `{package}`"), install);
        return None;
    }
    Some(py)
}
