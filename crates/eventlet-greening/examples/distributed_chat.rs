//! eventlet's distributed chat (its `distributed_websocket_chat.py` used
//! ZeroMQ), over Redis pub/sub with the unmodified `redis` crate: run
//! several of these processes, behind a load balancer or on ports of their
//! own, and they share one room. This is how a green-thread service grows
//! past one process or one machine: many processes, one real broker
//! between them.
//!
//! ```text
//! redis-server --port 6379 &
//! cargo run --release -p eventlet-greening --example distributed_chat -- 127.0.0.1:7000 redis://127.0.0.1:6379/
//! cargo run --release -p eventlet-greening --example distributed_chat -- 127.0.0.1:7001 redis://127.0.0.1:6379/
//! ```
//!
//! Open `http://127.0.0.1:7000/` and `http://127.0.0.1:7001/` in a few
//! browser tabs and type: every tab sees every message.
//!
//! Each WebSocket connection runs on a green thread of eventlet-http's
//! server. A message it reads goes to a queue; one green thread publishes
//! the queue to the Redis channel `chat`, and another, subscribed to it,
//! hands what arrives (from this process and the others) to every local
//! member. The redis calls block — `get_message` waits for the next
//! message for as long as it takes — and the monkey patch turns that wait
//! into a park of one green thread, so the server goes on serving.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use eventlet_http::websocket::{self, Message, Sender};
use eventlet_http::{Body, Server};
use http::{Request, Response, StatusCode};

const PAGE: &str = include_str!("../../eventlet-http/examples/websocket_chat.html");

/// The members connected to this process.
#[derive(Default)]
struct Room {
    next_id: Cell<u64>,
    members: RefCell<HashMap<u64, Sender>>,
}

impl Room {
    /// Hands `text` to every local member (a send may park: clone the
    /// senders first).
    fn deliver(&self, text: &str) {
        let members: Vec<(u64, Sender)> = self.members.borrow().iter().map(|(id, s)| (*id, s.clone())).collect();
        for (id, sender) in members {
            if sender.send(Message::text(text)).is_err() {
                self.members.borrow_mut().remove(&id);
            }
        }
    }
}

fn handle(room: &Rc<Room>, outbox: &Rc<eventlet::Queue<String>>, req: Request<Body>) -> Response<Body> {
    match req.uri().path() {
        "/" => Response::builder().header("Content-Type", "text/html; charset=utf-8").body(Body::from(PAGE)).unwrap(),
        "/chat" => {
            let (room, outbox) = (room.clone(), outbox.clone());
            let peer = req.extensions().get::<eventlet_http::RemoteAddr>().map(|a| a.0.to_string()).unwrap_or_default();
            websocket::upgrade(&req, move |mut ws| {
                let id = room.next_id.get();
                room.next_id.set(id + 1);
                room.members.borrow_mut().insert(id, Sender::new(&ws));
                // An unbounded queue that nobody closes: `put` cannot fail.
                let _ = outbox.put(format!("* {peer} joined"));
                while let Ok(m) = ws.read() {
                    if let Message::Text(t) = m {
                        let _ = outbox.put(format!("{peer}: {t}"));
                    }
                }
                room.members.borrow_mut().remove(&id);
                let _ = outbox.put(format!("* {peer} left"));
            })
        }
        _ => {
            let mut r = Response::new(Body::from("not found\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    eventlet::monkey_patch();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let redis = redis::Client::open(url.as_str())?;
    let room = Rc::new(Room::default());
    let outbox = Rc::new(eventlet::Queue::<String>::new());

    // Everything said here goes to the channel, in order.
    let mut publisher = redis.get_connection()?;
    let out = outbox.clone();
    eventlet::spawn_n(move || {
        while let Ok(text) = out.get() {
            if let Err(e) = redis::cmd("PUBLISH").arg("chat").arg(&text).query::<i64>(&mut publisher) {
                eprintln!("distributed_chat: publish failed: {e}");
                std::process::exit(1);
            }
        }
    });

    // Everything said anywhere comes back from the channel.
    let mut subscriber = redis.get_connection()?;
    let r = room.clone();
    let subscribed = Rc::new(eventlet::Event::new());
    let s = subscribed.clone();
    eventlet::spawn_n(move || {
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe("chat").expect("subscribe to the chat channel");
        s.send(()).expect("sent once");
        loop {
            match pubsub.get_message().and_then(|m| m.get_payload::<String>()) {
                Ok(text) => r.deliver(&text),
                Err(e) => {
                    eprintln!("distributed_chat: redis subscription failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    });
    subscribed.wait();

    let server = Server::bind(addr.as_str())?.remote_addr(true);
    println!("chat on http://{}/ (room shared through {url})", server.local_addr()?);
    server.serve(move |req| handle(&room, &outbox, req))?;
    Ok(())
}
