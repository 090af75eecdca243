//! A detached green thread's panic is reported on stderr, naming it, and
//! the others go on (run in a child process, whose stderr is read).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

mod util;

#[test]
fn panic_child() {
    if std::env::var_os("EVENTLET_PANIC_CHILD").is_none() {
        return; // only runs as the child of the test below
    }
    let ticks = Rc::new(Cell::new(0u32));
    let t = ticks.clone();
    let ticker = eventlet::spawn(move || {
        while t.get() < 5 {
            eventlet::sleep(Duration::from_millis(5));
            t.set(t.get() + 1);
        }
    });
    eventlet::Builder::new()
        .name("doomed")
        .spawn_n(|| {
            eprintln!("doomed has id {}", eventlet::current().id());
            panic!("boom from a detached green thread");
        })
        .unwrap();
    eventlet::spawn_n(|| panic!("an unnamed one panics too"));
    ticker.join().unwrap();
    eprintln!("the others went on: {} ticks", ticks.get());
}

#[test]
fn a_detached_green_thread_panic_is_reported_with_its_name_and_id() {
    let (status, stderr) = util::run_child_test("panic_child", &[("EVENTLET_PANIC_CHILD", "1")]);
    assert!(status.success(), "the child failed: {stderr}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("doomed has id "))
        .unwrap_or_else(|| panic!("no id in stderr: {stderr}"));
    // The panic hook printed the message, once; the runtime's report names
    // the green thread without repeating it.
    let report = format!("eventlet: green thread 'doomed' (id {id}) panicked (above); the other green threads go on");
    assert!(stderr.contains(&report), "no {report:?} in stderr: {stderr}");
    assert_eq!(stderr.matches("boom from a detached green thread").count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("green thread '<unnamed>' (id "), "stderr: {stderr}");
    assert_eq!(stderr.matches("an unnamed one panics too").count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("the others went on: 5 ticks"), "stderr: {stderr}");
}
