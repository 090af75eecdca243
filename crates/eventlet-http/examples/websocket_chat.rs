//! A broadcast chat over WebSocket, eventlet's `websocket_chat.py` in
//! Rust: open the printed URL in a few browser tabs and type.
//!
//! ```text
//! cargo run --release --example websocket_chat                  # on 127.0.0.1:7000
//! cargo run --release --example websocket_chat -- 0.0.0.0:7000
//! cargo run --release --example websocket_chat -- 127.0.0.1:7443 cert.pem key.pem   # https and wss
//! ```
//!
//! `GET /` serves the page; `/chat` upgrades to a WebSocket. Every
//! connection runs on its own green thread, parked reading its socket; a
//! message it reads goes into every member's [`Outbox`], a bounded queue
//! that a writer green thread of that member's sends from. A member whose
//! outbox is full (it stopped reading) is let go, so it never holds up the
//! room.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use eventlet_http::websocket::{self, Message, Outbox, WebSocketConfig};
use eventlet_http::{Body, Server};
use http::{Request, Response, StatusCode};

const PAGE: &str = include_str!("websocket_chat.html");

/// Longest chat message accepted (longer: the sender is disconnected with
/// close code 1009).
const MAX_MESSAGE: usize = 16 * 1024;
/// Messages a member may have waiting before it counts as gone.
const OUTBOX: usize = 64;

#[derive(Default)]
struct Room {
    next_id: Cell<u64>,
    members: RefCell<HashMap<u64, Outbox>>,
}

impl Room {
    /// Queues `text` for every member; never waits. A member whose outbox
    /// is full is disconnected (its reader then leaves the room).
    fn broadcast(&self, text: &str) {
        self.members.borrow_mut().retain(|_, outbox| match outbox.try_send(Message::text(text)) {
            Ok(()) => true,
            Err(_) => {
                outbox.disconnect();
                false
            }
        });
    }
}

fn handle(room: &Rc<Room>, req: Request<Body>) -> Response<Body> {
    match req.uri().path() {
        "/" => Response::builder().header("Content-Type", "text/html; charset=utf-8").body(Body::from(PAGE)).unwrap(),
        "/chat" => {
            let room = room.clone();
            let peer = req.extensions().get::<eventlet_http::RemoteAddr>().map(|a| a.0.to_string()).unwrap_or_default();
            let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE));
            websocket::upgrade_with_config(&req, config, move |mut ws| {
                let id = room.next_id.get();
                room.next_id.set(id + 1);
                room.members.borrow_mut().insert(id, Outbox::new(&ws, OUTBOX));
                room.broadcast(&format!("* {peer} joined"));
                loop {
                    match ws.read() {
                        Ok(Message::Text(t)) => room.broadcast(&format!("{peer}: {t}")),
                        Ok(_) => {} // pings are answered by tungstenite
                        Err(websocket::Error::Capacity(_)) => {
                            // The socket has sent Close 1009: wait for the reply.
                            while ws.read().is_ok() {}
                            break;
                        }
                        Err(_) => break, // closed (the close handshake is done) or gone
                    }
                }
                room.members.borrow_mut().remove(&id);
                room.broadcast(&format!("* {peer} left"));
            })
        }
        _ => {
            let mut r = Response::new(Body::from("not found\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let mut server = Server::bind(addr.as_str())?.remote_addr(true);
    let scheme = match (args.next(), args.next()) {
        (Some(cert), Some(key)) => {
            server = server.tls_files(cert, key)?;
            "https"
        }
        _ => "http",
    };
    println!("chat on {scheme}://{}/", server.local_addr()?);
    let room = Rc::new(Room::default());
    server.serve(move |req| handle(&room, req))
}
