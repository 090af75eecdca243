//! A broadcast chat over WebSocket, eventlet's `websocket_chat.py` in
//! Rust: open the printed URL in a few browser tabs and type.
//!
//! ```text
//! cargo run --release --example websocket_chat                  # on 127.0.0.1:7000
//! cargo run --release --example websocket_chat -- 0.0.0.0:7000
//! ```
//!
//! `GET /` serves the page; `/chat` upgrades to a WebSocket. Every
//! connection runs on its own green thread, parked reading its socket; a
//! message it reads goes to every member through their [`Sender`]s.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use eventlet_http::websocket::{self, Message, Sender, WebSocketConfig};
use eventlet_http::{Body, Server};
use http::{Request, Response, StatusCode};

const PAGE: &str = include_str!("websocket_chat.html");

/// Longest chat message accepted (longer: the sender is disconnected with
/// close code 1009).
const MAX_MESSAGE: usize = 16 * 1024;

#[derive(Default)]
struct Room {
    next_id: Cell<u64>,
    members: RefCell<HashMap<u64, Sender>>,
}

impl Room {
    fn broadcast(&self, text: &str) {
        // Clone the senders first: a send may park, and others may join or
        // leave meanwhile.
        let members: Vec<(u64, Sender)> = self.members.borrow().iter().map(|(id, s)| (*id, s.clone())).collect();
        for (id, sender) in members {
            if sender.send(Message::text(text)).is_err() {
                self.members.borrow_mut().remove(&id);
            }
        }
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
                room.members.borrow_mut().insert(id, Sender::new(&ws));
                room.broadcast(&format!("* {peer} joined"));
                loop {
                    match ws.read() {
                        Ok(Message::Text(t)) => room.broadcast(&format!("{peer}: {t}")),
                        Ok(_) => {} // pings are answered by tungstenite
                        Err(websocket::Error::Capacity(_)) => {
                            let close = websocket::CloseFrame {
                                code: websocket::CloseCode::Size,
                                reason: "message too long".into(),
                            };
                            let _ = ws.close(Some(close));
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
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let server = Server::bind(addr.as_str())?.remote_addr(true);
    println!("chat on http://{}/", server.local_addr()?);
    let room = Rc::new(Room::default());
    server.serve(move |req| handle(&room, req))
}
