//! The tokio bridge (feature `tokio`): tokio's reactor and timers inside
//! green threads, tokio tasks awaiting green threads, blocking from async
//! code refused, wake-ups from other threads, and cancellation both ways.

use std::cell::Cell;
use std::future::IntoFuture;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod util;
use util::on_fresh_thread;

/// Sets its flag when dropped.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn tokio_timers_progress_while_green_threads_run() {
    on_fresh_thread(|| {
        let start = Instant::now();
        let slept = Rc::new(Cell::new(0));
        let sleepers: Vec<_> = (0..100)
            .map(|i| {
                let slept = slept.clone();
                eventlet::spawn(move || {
                    eventlet::block_on(tokio::time::sleep(Duration::from_millis(50)));
                    slept.set(slept.get() + 1);
                    i
                })
            })
            .collect();
        // Green threads that sleep the green way and one that only yields,
        // until every tokio sleep has ended (not for a fixed time, which a
        // stalled machine could spend before it first runs): the hub is
        // never idle meanwhile, and tokio's timers must still fire.
        let green = eventlet::spawn(|| {
            for _ in 0..10 {
                eventlet::sleep(Duration::from_millis(5));
            }
        });
        let s = slept.clone();
        let yielder = eventlet::spawn(move || {
            let mut n = 0u64;
            while s.get() < 100 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "tokio's timers stalled beside a yielding green thread"
                );
                eventlet::yield_now();
                n += 1;
            }
            n
        });
        let sum: u64 = sleepers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 4950);
        green.join().unwrap();
        assert!(yielder.join().unwrap() > 0);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(50));
        assert!(took < Duration::from_secs(2), "100 concurrent 50 ms tokio sleeps took {took:?}");
    });
}

#[test]
fn tokio_is_current_in_green_threads_and_its_tasks_run() {
    on_fresh_thread(|| {
        // Before any block_on: the handle is there, and a task spawned from
        // green code runs while the hub runs.
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let h = eventlet::spawn(move || {
            assert!(tokio::runtime::Handle::try_current().is_ok());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                r.store(true, Ordering::SeqCst);
            });
        });
        h.join().unwrap();
        let start = Instant::now();
        while !ran.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
            eventlet::sleep(Duration::from_millis(1));
        }
        assert!(ran.load(Ordering::SeqCst), "a tokio task spawned from a green thread never ran");
        // The root sees it too.
        assert!(tokio::runtime::Handle::try_current().is_ok());
    });
}

#[test]
fn green_io_and_tokio_io_on_one_thread() {
    on_fresh_thread(|| {
        // A tokio echo server (a task), a green client; a green echo
        // server, a tokio client (in block_on): all at once.
        let tokio_listener = eventlet::block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let tokio_addr = tokio_listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tokio_listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0; 1024];
                    loop {
                        let n = s.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).await.unwrap();
                    }
                });
            }
        });
        let green_listener = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let green_addr = green_listener.local_addr().unwrap();
        eventlet::spawn_n(move || loop {
            let (mut s, _) = green_listener.accept().unwrap();
            eventlet::spawn_n(move || {
                let mut buf = [0; 1024];
                loop {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).unwrap();
                }
            });
        });
        let mut clients = Vec::new();
        for i in 0..50u32 {
            clients.push(eventlet::spawn(move || {
                let mut s = eventlet::net::TcpStream::connect(tokio_addr).unwrap();
                for j in 0..20u32 {
                    let msg = format!("{i}:{j}");
                    s.write_all(msg.as_bytes()).unwrap();
                    let mut back = vec![0; msg.len()];
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg.as_bytes());
                }
            }));
            clients.push(eventlet::spawn(move || {
                eventlet::block_on(async move {
                    let mut s = tokio::net::TcpStream::connect(green_addr).await.unwrap();
                    for j in 0..20u32 {
                        let msg = format!("{i}/{j}");
                        s.write_all(msg.as_bytes()).await.unwrap();
                        let mut back = vec![0; msg.len()];
                        s.read_exact(&mut back).await.unwrap();
                        assert_eq!(back, msg.as_bytes());
                    }
                })
            }));
        }
        for c in clients {
            c.join().unwrap();
        }
    });
}

#[test]
fn blocking_from_async_code_panics_clearly() {
    on_fresh_thread(|| {
        let r = eventlet::block_on(async { tokio::spawn(async { eventlet::sleep(Duration::from_millis(1)) }).await });
        let e = r.unwrap_err();
        assert!(e.is_panic());
        let p = e.into_panic();
        let msg = p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str));
        let msg = msg.unwrap_or("");
        assert!(msg.contains("async code must not block"), "{msg:?}");
        // The hub is fine afterwards.
        assert_eq!(eventlet::spawn(|| 3).join().unwrap(), 3);
        assert_eq!(eventlet::block_on(async { tokio::spawn(async { 4 }).await.unwrap() }), 4);
    });
}

#[test]
fn wakes_from_other_threads_reach_a_green_thread_in_block_on() {
    on_fresh_thread(|| {
        let (to_green, mut from_os) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let (to_os, from_green) = std::sync::mpsc::channel::<u32>();
        let os = std::thread::spawn(move || {
            for i in 0..2000 {
                to_green.send(i).unwrap();
                assert_eq!(from_green.recv().unwrap(), i);
            }
        });
        let green = eventlet::spawn(move || {
            let mut n = 0;
            while let Some(i) = eventlet::block_on(from_os.recv()) {
                to_os.send(i).unwrap();
                n += 1;
            }
            n
        });
        // The green side first: a plain join would hold up the hub.
        assert_eq!(green.join().unwrap(), 2000);
        os.join().unwrap();
    });
}

#[test]
fn kill_and_timeout_cancel_a_tokio_future() {
    on_fresh_thread(|| {
        let dropped = Arc::new(AtomicBool::new(false));
        let d = dropped.clone();
        let h = eventlet::spawn(move || {
            eventlet::block_on(async move {
                let _f = Flag(d);
                tokio::time::sleep(Duration::from_secs(60)).await;
            })
        });
        eventlet::sleep(Duration::from_millis(10));
        let start = Instant::now();
        h.kill();
        assert!(h.join().unwrap_err().is::<eventlet::Killed>());
        assert!(dropped.load(Ordering::SeqCst), "kill did not drop the future");
        assert!(start.elapsed() < Duration::from_secs(5));

        let dropped = Arc::new(AtomicBool::new(false));
        let d = dropped.clone();
        let r = eventlet::with_timeout(Duration::from_millis(20), move || {
            eventlet::block_on(async move {
                let _f = Flag(d);
                tokio::time::sleep(Duration::from_secs(60)).await;
            })
        });
        assert!(r.is_err());
        assert!(dropped.load(Ordering::SeqCst), "the timeout did not drop the future");
        assert!(start.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn dropping_the_awaiting_future_kills_the_green_thread() {
    on_fresh_thread(|| {
        let unwound = Arc::new(AtomicBool::new(false));
        let u = unwound.clone();
        let work = eventlet::spawn(move || {
            let _f = Flag(u);
            eventlet::sleep(Duration::from_secs(60));
        });
        let thread = work.thread();
        let r = eventlet::block_on(
            async move { tokio::time::timeout(Duration::from_millis(20), work.into_future()).await },
        );
        assert!(r.is_err(), "the timeout did not fire");
        let start = Instant::now();
        while !thread.is_finished() && start.elapsed() < Duration::from_secs(5) {
            eventlet::sleep(Duration::from_millis(1));
        }
        assert!(unwound.load(Ordering::SeqCst), "the green thread was not killed");

        // The Send form, from a tokio task on the same hub.
        let unwound = Arc::new(AtomicBool::new(false));
        let u = unwound.clone();
        let hub = eventlet::hub::handle();
        let r = eventlet::block_on(async move {
            tokio::spawn(async move {
                let work = hub
                    .spawn_future(move || {
                        let _f = Flag(u);
                        eventlet::sleep(Duration::from_secs(60));
                    })
                    .unwrap();
                tokio::time::timeout(Duration::from_millis(20), work).await.is_err()
            })
            .await
            .unwrap()
        });
        assert!(r);
        let start = Instant::now();
        while !unwound.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
            eventlet::sleep(Duration::from_millis(1));
        }
        assert!(unwound.load(Ordering::SeqCst), "the spawn_future green thread was not killed");
    });
}

#[test]
fn tokio_tasks_await_green_work_on_their_hub() {
    on_fresh_thread(|| {
        // Green work that blocks the green way: a Queue between two green
        // threads, and sleeps.
        let q = eventlet::Queue::<u32>::new();
        let q2 = q.clone();
        eventlet::spawn_n(move || {
            for i in 0..100 {
                eventlet::sleep(Duration::from_micros(100));
                q2.put(i).unwrap();
            }
        });
        let hub = eventlet::hub::handle();
        let q = Rc::new(q);
        let got = Rc::new(Cell::new(0u32));
        let (qq, g) = (q.clone(), got.clone());
        let sum = eventlet::block_on(async move {
            let mut tasks = Vec::new();
            for i in 0..100u32 {
                let hub = hub.clone();
                tasks.push(tokio::spawn(async move {
                    hub.spawn_future(move || {
                        eventlet::sleep(Duration::from_millis(1));
                        i * 2
                    })
                    .unwrap()
                    .await
                    .unwrap()
                }));
            }
            // A JoinHandle awaited directly (not Send: on the block_on future).
            let local = eventlet::spawn(move || {
                let mut s = 0;
                for _ in 0..100 {
                    s += qq.get().unwrap();
                }
                g.set(s);
                s
            });
            let mut sum = 0;
            for t in tasks {
                sum += t.await.unwrap();
            }
            sum + local.await.unwrap()
        });
        assert_eq!(got.get(), 4950);
        assert_eq!(sum, 9900 + 4950);
    });
}

#[test]
fn a_multithreaded_runtime_awaits_a_hub_thread() {
    let hub = eventlet::hub::start("green-work").unwrap();
    let handle = hub.handle().clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let total = rt.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let handle = handle.clone();
            tasks.push(tokio::spawn(async move {
                handle
                    .spawn_future(move || {
                        eventlet::sleep(Duration::from_millis(1));
                        (i, std::thread::current().name().map(str::to_owned))
                    })
                    .unwrap()
                    .await
                    .unwrap()
            }));
        }
        let mut total = 0;
        for t in tasks {
            let (i, name) = t.await.unwrap();
            assert_eq!(name.as_deref(), Some("green-work"));
            total += i;
        }
        total
    });
    assert_eq!(total, 199 * 200 / 2);
    drop(rt);
    hub.join();
}

#[test]
fn a_hub_thread_that_used_tokio_ends() {
    let hub = eventlet::hub::start("tokio-user").unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    hub.handle()
        .spawn(move || {
            eventlet::block_on(tokio::time::sleep(Duration::from_millis(5)));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                d.fetch_add(1, Ordering::SeqCst);
            });
        })
        .unwrap();
    // Returns once the green thread and the tokio task are done.
    hub.join();
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[test]
fn a_group_hub_that_used_tokio_finishes_its_tasks() {
    let group = eventlet::hub::Group::with_hubs(1).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let h = group
        .spawn(move || {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                d.fetch_add(1, Ordering::SeqCst);
            });
        })
        .unwrap();
    h.join().unwrap();
    // Returns once the group's green threads and its tokio tasks are done.
    group.join();
    assert_eq!(done.load(Ordering::SeqCst), 1, "the group ended before its tokio task ran");
}

/// The message of a caught panic.
fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn block_on_where_another_runtime_is_driven_panics_and_the_hub_goes_on() {
    on_fresh_thread(|| {
        // The hub first, then a runtime of the user's driven on its thread.
        assert_eq!(eventlet::spawn(|| 1).join().unwrap(), 1);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async { eventlet::block_on(tokio::time::sleep(Duration::from_millis(1))) })
        }));
        let p = refused.expect_err("nested runtimes cannot both block this thread");
        assert!(message(p.as_ref()).contains("within a runtime"), "{}", message(p.as_ref()));
        // The thread's hub is whole: green threads, timers, block_on.
        let j = eventlet::spawn(|| {
            eventlet::sleep(Duration::from_millis(2));
            2
        });
        assert_eq!(j.join().unwrap(), 2);
        eventlet::sleep(Duration::from_millis(1));
        eventlet::block_on(tokio::time::sleep(Duration::from_millis(1)));
    });

    // A multi-threaded runtime's worker: the same, task after task.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    for _ in 0..3 {
        let refused = rt.block_on(async { tokio::spawn(async { eventlet::block_on(async { 3 }) }).await });
        // A ready future needs no wait: that is allowed anywhere.
        assert_eq!(refused.unwrap(), 3);
        let refused = rt.block_on(async {
            tokio::spawn(async { eventlet::block_on(tokio::time::sleep(Duration::from_millis(1))) }).await
        });
        let e = refused.expect_err("a worker cannot drive the hub's runtime");
        assert!(message(e.into_panic().as_ref()).contains("within a runtime"));
        let joined = rt.block_on(async {
            tokio::spawn(async {
                let j = eventlet::spawn(|| {
                    eventlet::sleep(Duration::from_millis(1));
                    4
                });
                j.join().unwrap()
            })
            .await
        });
        assert_eq!(joined.unwrap(), 4, "the worker's hub is broken after the refusal");
    }
}

/// Runs the child case `case` of this binary's `child` test, asserting
/// that it exited with success and finished.
fn child_ok(case: &str) {
    let (status, stderr) = util::run_child_test("child", &[("EVENTLET_TOKIO_CHILD", case)]);
    assert!(status.success(), "child case {case} failed ({status}): {stderr}");
    assert!(stderr.contains(&format!("case {case} done")), "child case {case} did not finish: {stderr}");
}

/// The child cases (alone in their process: they count descriptors, or
/// may crash it); each ends by printing `case NAME done`.
#[test]
fn child() {
    let Ok(case) = std::env::var("EVENTLET_TOKIO_CHILD") else { return };
    match case.as_str() {
        "stale-waker-holds-no-runtime" => stale_waker_holds_no_runtime(),
        "first-hub-after-tokio-context-destroyed" => first_hub_after_tokio_context_destroyed(),
        other => panic!("unknown child case {other}"),
    }
    eprintln!("case {case} done");
}

#[test]
fn a_waker_kept_after_its_hub_thread_exited_holds_no_runtime() {
    child_ok("stale-waker-holds-no-runtime");
}

/// A waker of a green thread, kept after its hub's thread exited, keeps
/// that hub's shared part (its wake-up queue) and nothing else: not its
/// tokio runtime's descriptors, whether or not the hub's loop ever waited
/// in tokio.
fn stale_waker_holds_no_runtime() {
    fn kept_waker(wait_in_tokio: bool) -> std::task::Waker {
        std::thread::spawn(move || {
            if wait_in_tokio {
                // The loop waits in tokio (the root parks meanwhile).
                eventlet::block_on(async { tokio::time::sleep(Duration::from_millis(2)).await });
            }
            eventlet::block_on(std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())))
        })
        .join()
        .unwrap()
    }
    let before = util::open_fds();
    let plain = kept_waker(false);
    let plain_fds = util::open_fds() - before;
    drop(plain);
    assert_eq!(util::open_fds(), before);
    let used = kept_waker(true);
    let used_fds = util::open_fds() - before;
    assert_eq!(used_fds, plain_fds, "a stale waker of a hub that waited in tokio keeps its runtime's descriptors open");
    drop(used);
    assert_eq!(util::open_fds(), before);
}

/// A waker tokio defers (a `yield_now`, or a tokio resource polled once
/// the cooperative budget of the hub's turn is spent) is woken by tokio
/// after its next turn of the driver, and dropped if its `block_on` returns
/// first. The hub's loop is that `block_on`'s future and returns whenever
/// the root goes on, so a green thread whose waker was deferred in the
/// turn the root was woken in must still be woken.
#[test]
fn a_waker_tokio_defers_when_the_root_goes_on_still_wakes() {
    on_fresh_thread(|| {
        // The hub drives tokio from here on.
        eventlet::block_on(async {});
        for round in 0..50 {
            // Both run in one turn: `yielder` defers its waker, then `waker`
            // ends, which wakes the root joining it.
            let yielder = eventlet::spawn(|| {
                eventlet::block_on(async {
                    tokio::task::yield_now().await;
                    7
                })
            });
            let waker = eventlet::spawn(|| ());
            waker.join().unwrap();
            match eventlet::with_timeout(Duration::from_secs(5), move || yielder.join()) {
                Ok(v) => assert_eq!(v.unwrap(), 7),
                Err(_) => panic!("round {round}: the deferred green thread was never woken"),
            }
        }
    });
}

/// The same with the budget: green threads that poll a tokio resource
/// after the turn's cooperative budget is spent are deferred, while the
/// root is woken in that turn.
#[test]
fn green_threads_past_tokio_budget_when_the_root_goes_on_still_wake() {
    on_fresh_thread(|| {
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        let rx = Rc::new(rx);
        for round in 0..20 {
            // Many green threads each poll a ready tokio resource in one
            // turn: the turn's budget (128) runs out among them.
            let readers: Vec<_> = (0..300)
                .map(|_| {
                    let mut rx = (*rx).clone();
                    eventlet::spawn(move || {
                        eventlet::block_on(async move {
                            rx.changed().await.unwrap();
                            *rx.borrow_and_update()
                        })
                    })
                })
                .collect();
            let ender = eventlet::spawn(|| ());
            tx.send(round + 1).unwrap();
            ender.join().unwrap();
            for r in readers {
                match eventlet::with_timeout(Duration::from_secs(5), move || r.join()) {
                    Ok(v) => assert_eq!(v.unwrap(), round + 1),
                    Err(_) => panic!("round {round}: a green thread deferred by tokio's budget was never woken"),
                }
            }
        }
    });
}

#[test]
fn a_hub_first_made_in_a_thread_local_destructor_after_tokios_works() {
    child_ok("first-hub-after-tokio-context-destroyed");
}

/// A thread's first eventlet call in a thread-local's destructor, after
/// tokio's thread-local context is destroyed: the hub is made without a
/// runtime (none could be entered there) and runs green threads. It
/// aborted the process (tokio's panic on entering, in a destructor).
fn first_hub_after_tokio_context_destroyed() {
    struct AtExit(Arc<AtomicUsize>);
    impl Drop for AtExit {
        fn drop(&mut self) {
            let j = eventlet::spawn(|| {
                eventlet::sleep(Duration::from_millis(1));
                5
            });
            self.0.fetch_add(j.join().unwrap(), Ordering::SeqCst);
            self.0.fetch_add(eventlet::block_on(async { 6 }), Ordering::SeqCst);
        }
    }
    thread_local! {
        static AT_EXIT: std::cell::RefCell<Option<AtExit>> = const { std::cell::RefCell::new(None) };
    }
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        AT_EXIT.with_borrow_mut(|a| *a = Some(AtExit(n2)));
        // Touched after it, tokio's context is destroyed before it.
        assert!(tokio::runtime::Handle::try_current().is_err());
    })
    .join()
    .unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 11);
}
