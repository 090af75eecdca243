//! The examples run and do what they say.

use std::process::Command;

mod util;
use util::example_binary;

#[test]
fn connect_example_gathers_replies_in_spawn_order() {
    let out = Command::new(example_binary("connect")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected: Vec<String> = (0..10).map(|i| format!("reply to request {i}")).collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
}
