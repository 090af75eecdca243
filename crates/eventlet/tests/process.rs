//! Child processes: green pipes and a green wait that park only the
//! calling green thread, exit statuses, captured output.

mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::process::Command;
use eventlet::{JoinHandle, Killed};
use util::{assert_clean, ms};

/// A green thread counting 1 ms sleeps until stopped.
fn ticker() -> (Rc<Cell<u32>>, JoinHandle<()>) {
    let ticks = Rc::new(Cell::new(0));
    let t = ticks.clone();
    let h = eventlet::spawn(move || loop {
        eventlet::sleep(ms(1));
        t.set(t.get() + 1);
    });
    (ticks, h)
}

fn stop(h: JoinHandle<()>) {
    h.kill();
    assert!(h.join().unwrap_err().is::<Killed>());
}

#[test]
fn cat_echoes_through_green_pipes_while_another_green_thread_ticks() {
    let (ticks, tick) = ticker();
    let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    // Far more than a pipe holds (64 KiB): both sides must block and
    // park many times.
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut stdin = child.stdin.take().unwrap();
    let to_send = data.clone();
    let writer = eventlet::spawn(move || {
        stdin.write_all(&to_send).unwrap();
        // Dropping stdin closes the pipe: cat sees EOF.
    });
    let mut echoed = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "cat's output differs from its input");
    assert!(child.wait().unwrap().success());
    assert!(ticks.get() > 0, "the ticker never ran while the pipes were busy");
    stop(tick);
    assert_clean();
}

#[test]
fn exit_status_comes_back() {
    let status = Command::new("sh").args(["-c", "exit 3"]).status().unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(!status.success());
    let mut child = Command::new("true").spawn().unwrap();
    assert!(child.wait().unwrap().success());
    // Waiting again returns the same status.
    assert!(child.wait().unwrap().success());
    assert_clean();
}

#[test]
fn output_captures_stdout_and_stderr() {
    let out = Command::new("echo").arg("hello world").output().unwrap();
    assert_eq!(out.stdout, b"hello world\n");
    assert!(out.stderr.is_empty());
    assert!(out.status.success());

    let out = Command::new("sh").args(["-c", "echo out; echo err >&2; exit 2"]).output().unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status.code(), Some(2));

    // Big outputs on both streams at once: neither pipe may fill up while
    // the other is read.
    let script = "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2";
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert_eq!((out.stdout.len(), out.stderr.len()), (300_000, 200_000));

    // output()'s defaults (stdin empty, output captured) are not kept for a
    // later spawn, which inherits as in std.
    let mut cmd = Command::new("cat");
    assert_eq!(cmd.output().unwrap().stdout, b"");
    let mut child = cmd.stdin(Stdio::null()).spawn().unwrap();
    assert!(child.stdout.is_none());
    child.wait().unwrap();
    assert_clean();
}

#[test]
fn wait_parks_only_the_caller() {
    let (ticks, tick) = ticker();
    let start = Instant::now();
    let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
    assert!(child.wait().unwrap().success());
    let took = start.elapsed();
    assert!(took >= ms(200));
    assert!(took < ms(2000), "the exit was seen late: {took:?}");
    assert!(ticks.get() >= 20, "only {} ticks in {took:?}: the hub was blocked", ticks.get());
    stop(tick);
    assert_clean();
}

#[test]
fn wait_timeout_and_kill() {
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let start = Instant::now();
    assert_eq!(child.wait_timeout(ms(30)).unwrap(), None);
    assert!(start.elapsed() >= ms(30));
    assert_eq!(child.try_wait().unwrap(), None);
    child.kill().unwrap();
    let status = child.wait_timeout(Duration::from_secs(10)).unwrap().expect("killed child exited");
    assert!(!status.success());
    assert_clean();
}

#[test]
fn a_green_thread_killed_in_wait_leaves_a_usable_child() {
    let child = Rc::new(RefCell::new(Command::new("sleep").arg("30").spawn().unwrap()));
    let c = child.clone();
    let waiter = eventlet::spawn(move || c.borrow_mut().wait().map(|s| s.success()));
    eventlet::sleep(ms(20));
    waiter.kill();
    assert!(waiter.join().unwrap_err().is::<Killed>());
    let mut child = child.borrow_mut();
    assert_eq!(child.try_wait().unwrap(), None);
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    assert_clean();
}

#[test]
fn a_missing_program_is_an_error() {
    let e = Command::new("/nonexistent/eventlet-no-such-program").spawn().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(Command::new("/nonexistent/eventlet-no-such-program").output().is_err());
}

#[test]
fn many_children_at_once() {
    let handles: Vec<_> = (0..30)
        .map(|i| {
            eventlet::spawn(move || {
                let out = Command::new("sh").args(["-c", &format!("sleep 0.05; echo {i}")]).output().unwrap();
                String::from_utf8(out.stdout).unwrap()
            })
        })
        .collect();
    let start = Instant::now();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), format!("{i}\n"));
    }
    // Run together (not one after another, which would take 1.5 s).
    assert!(start.elapsed() < ms(1200), "{:?}", start.elapsed());
    assert_clean();
}

#[test]
fn wait_parks_on_the_reactor_not_on_a_polling_timer() {
    let mut child = Command::new("sleep").arg("1").spawn().unwrap();
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    let watcher = eventlet::spawn(move || {
        eventlet::sleep(ms(100));
        // The waiter below is parked on the child's pidfd: one I/O waiter,
        // and no timer but this green thread's own (which has fired).
        s.set(Some(eventlet::hub::stats()));
    });
    let status = child.wait().unwrap();
    assert!(status.success());
    watcher.join().unwrap();
    let stats = seen.get().expect("the watcher ran while the child lived");
    assert_eq!(stats.io_waiters, 1, "{stats:?}");
    assert_eq!(stats.timers, 0, "{stats:?}");
    assert_clean();
}

/// `output()` under a timeout: the child, which the caller never sees, is
/// killed and reaped, not left running and then a zombie.
#[test]
fn output_cut_short_by_a_timeout_kills_and_reaps_the_child() {
    let dir = std::env::temp_dir().join(format!("eventlet-output-reap-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let script = format!("echo $$ > {}; exec sleep 30", dir.display());
    let r = eventlet::with_timeout(std::time::Duration::from_millis(300), || {
        eventlet::process::Command::new("sh").args(["-c", &script]).output()
    });
    assert!(!matches!(r, Ok(Ok(_))), "sleep 30 finished within 300 ms?");
    let pid: u32 = std::fs::read_to_string(&dir).unwrap().trim().parse().unwrap();
    let _ = std::fs::remove_file(&dir);
    let proc_dir = format!("/proc/{pid}");
    let started = std::time::Instant::now();
    while std::path::Path::new(&proc_dir).exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "child {pid} still there (running or a zombie)");
        eventlet::sleep(std::time::Duration::from_millis(10));
    }
}
