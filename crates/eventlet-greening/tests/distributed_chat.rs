//! The distributed chat example: two server processes and one
//! redis-server; a message a WebSocket client sends to one process reaches
//! a client of the other, through Redis pub/sub.

mod util;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventlet_http::websocket::{self, Message};
use util::{KillOnDrop, Redis};

/// The example's binary, built by `cargo test` beside this test (built
/// here if only this test target was).
fn example() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let bin = deps.parent().unwrap().join("examples").join("distributed_chat");
    if !bin.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "eventlet-greening", "--example", "distributed_chat"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building the example failed");
    }
    bin
}

/// Starts one chat server on a free port; returns it and its address.
fn chat_server(redis: &Redis) -> (KillOnDrop, String) {
    let mut child = Command::new(example())
        .args(["127.0.0.1:0", &redis.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap_or_else(|| panic!("{line:?}"));
    (KillOnDrop(child), addr.to_string())
}

/// Reads text messages until one contains `want` (5 s at most).
fn expect(ws: &mut websocket::WebSocket<eventlet::net::TcpStream>, want: &str) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    ws.get_ref().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        assert!(Instant::now() < until, "never got {want:?}");
        match ws.read().unwrap() {
            Message::Text(t) if t.contains(want) => return t.to_string(),
            _ => {}
        }
    }
}

#[test]
fn a_message_sent_to_one_process_reaches_a_client_of_the_other() {
    let Some(redis) = Redis::start() else { return };
    let (_one, addr1) = chat_server(&redis);
    let (_two, addr2) = chat_server(&redis);
    // Both subscribed (each prints its address only after subscribing).
    let mut admin = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let subs: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg("chat").query(&mut admin).unwrap();
    assert_eq!(subs, vec![("chat".to_string(), 2)]);
    let (mut alice, _) = websocket::connect(&format!("ws://{addr1}/chat")).unwrap();
    let (mut bob, _) = websocket::connect(&format!("ws://{addr2}/chat")).unwrap();
    // Bob, on the second process, sees Alice join the first.
    expect(&mut bob, "joined");
    alice.send(Message::text("hello from the first process")).unwrap();
    let got = expect(&mut bob, "hello from the first process");
    assert!(got.ends_with(": hello from the first process"), "{got}");
    bob.send(Message::text("and back from the second")).unwrap();
    expect(&mut alice, "and back from the second");
}
