//! eventlet's chat server example: every line a client sends goes to every
//! other connected client.
//!
//! ```text
//! cargo run --example chat_server                 # listens on 127.0.0.1:3001
//! cargo run --example chat_server 0.0.0.0:3001
//! nc 127.0.0.1 3001                               # in several terminals
//! ```

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Write};
use std::rc::Rc;

use eventlet::net::{TcpListener, TcpStream};

/// The connected clients, each with a number to tell the sender apart.
#[derive(Debug, Default)]
pub struct Participants {
    clients: RefCell<Vec<(u64, Rc<TcpStream>)>>,
}

impl Participants {
    /// How many clients are connected.
    pub fn len(&self) -> usize {
        self.clients.borrow().len()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.clients.borrow().is_empty()
    }
}

/// Reads `reader`'s lines until it hangs up, sending each to every other
/// participant; a participant that cannot be written to is dropped.
fn read_chat_forever(id: u64, conn: Rc<TcpStream>, participants: Rc<Participants>) {
    let mut reader = BufReader::new(&*conn);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        print!("Chat: {line}");
        // Copy the list: writing blocks, and others may join or leave.
        let others: Vec<_> = participants.clients.borrow().iter().filter(|(i, _)| *i != id).cloned().collect();
        for (other, sock) in others {
            if (&*sock).write_all(line.as_bytes()).is_err() {
                participants.clients.borrow_mut().retain(|(i, _)| *i != other);
            }
        }
        line.clear();
    }
    participants.clients.borrow_mut().retain(|(i, _)| *i != id);
}

/// Accepts clients on `server` forever, one green thread each.
pub fn serve(server: TcpListener, participants: Rc<Participants>) -> io::Result<()> {
    for id in 0.. {
        let (conn, _address) = server.accept()?;
        let conn = Rc::new(conn);
        participants.clients.borrow_mut().push((id, conn.clone()));
        let p = participants.clone();
        eventlet::spawn_n(move || read_chat_forever(id, conn, p));
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3001".into());
    let server = TcpListener::bind(&addr)?;
    println!("chat server listening on {}", server.local_addr()?);
    serve(server, Rc::default())
}
