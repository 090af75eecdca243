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
    // The child lives until a green thread kills it after twenty ticks of
    // the ticker (not for a fixed time, which a stalled hub could spend
    // without ticking): that happens only if the wait lets the hub run
    // others. A wait that blocked the hub would see the child exit by
    // itself, 10 s later, with no tick.
    let mut child = Command::new("sleep").arg("10").spawn().unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let t = ticks.clone();
    let killer = eventlet::spawn(move || {
        while t.get() < 20 {
            eventlet::sleep(ms(1));
        }
        // SAFETY: kill with a signal number; the child is not reaped
        // before the wait below returns, so the pid is still its own.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        Instant::now()
    });
    let status = child.wait().unwrap();
    let seen = Instant::now();
    assert!(ticks.get() >= 20, "only {} ticks: the hub was blocked", ticks.get());
    assert!(!status.success(), "the child exited by itself: the hub was blocked");
    let killed = killer.join().unwrap();
    let late = seen - killed;
    assert!(late < Duration::from_secs(5), "the exit was seen {late:?} after the kill");
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
    // Each child waits for a gate file (at most 2 s), which is made once
    // all thirty green threads are in `output()` at once: they run
    // together, whatever the machine's speed. (One after another, each
    // would wait out its 2 s, and the count would never reach thirty.)
    const N: usize = 30;
    let gate = std::env::temp_dir().join(format!("eventlet-many-children-{}", std::process::id()));
    let _ = std::fs::remove_file(&gate);
    let script =
        format!("i=0; while [ ! -e {} ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done; echo $1", gate.display());
    let inside = Rc::new(Cell::new(0));
    let most = Rc::new(Cell::new(0));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (script, inside, most) = (script.clone(), inside.clone(), most.clone());
            eventlet::spawn(move || {
                inside.set(inside.get() + 1);
                most.set(most.get().max(inside.get()));
                let out = Command::new("sh").args(["-c", &script, "sh", &i.to_string()]).output().unwrap();
                inside.set(inside.get() - 1);
                String::from_utf8(out.stdout).unwrap()
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while most.get() < N && Instant::now() < deadline {
        eventlet::sleep(ms(1));
    }
    std::fs::write(&gate, b"").unwrap();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), format!("{i}\n"));
    }
    std::fs::remove_file(&gate).unwrap();
    assert_eq!(most.get(), N, "the children did not run together");
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
    // The child writes its pid before it sleeps; a loaded machine may not
    // have run it that far when the timeout fires: then again, with a
    // longer timeout.
    let mut pid = None;
    for timeout in [ms(300), ms(1000), ms(3000)] {
        let _ = std::fs::remove_file(&dir);
        let script = format!(
            "echo $$ > {tmp} && mv {tmp} {dir}; exec sleep 30",
            tmp = dir.with_extension("tmp").display(),
            dir = dir.display()
        );
        let r =
            eventlet::with_timeout(timeout, || eventlet::process::Command::new("sh").args(["-c", &script]).output());
        assert!(!matches!(r, Ok(Ok(_))), "sleep 30 finished within {timeout:?}?");
        if let Ok(text) = std::fs::read_to_string(&dir) {
            pid = Some(text.trim().parse::<u32>().unwrap());
            break;
        }
    }
    let _ = std::fs::remove_file(&dir);
    let _ = std::fs::remove_file(dir.with_extension("tmp"));
    let pid = pid.expect("the child never got to write its pid");
    let proc_dir = format!("/proc/{pid}");
    let started = std::time::Instant::now();
    while std::path::Path::new(&proc_dir).exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "child {pid} still there (running or a zombie)");
        eventlet::sleep(std::time::Duration::from_millis(10));
    }
}
