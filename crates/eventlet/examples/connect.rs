//! Gathering results from several connections with a `GreenPile`: each
//! green thread connects to a server, sends a request and reads the reply;
//! the pile hands the replies back in the order the work was spawned.
//!
//! ```text
//! cargo run --release --example connect
//! ```
//!
//! It starts its own echo server on loopback, so it runs offline.

use std::io::{Read, Write};
use std::net::SocketAddr;

use eventlet::net::TcpListener;
use eventlet::GreenPile;

/// Connects to `addr`, sends `msg`, and returns what comes back.
fn ask(addr: SocketAddr, msg: String) -> std::io::Result<String> {
    let mut sock = eventlet::connect(addr)?;
    sock.write_all(msg.as_bytes())?;
    sock.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    sock.read_to_string(&mut reply)?;
    Ok(reply)
}

fn main() -> std::io::Result<()> {
    // A tiny echo server that answers slowly, longer for earlier clients,
    // so replies arrive out of order.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = eventlet::Server::new(listener, 100);
    let stop = server.stop_handle();
    eventlet::spawn_n(move || {
        server
            .serve(|mut sock, _| {
                let mut msg = String::new();
                if sock.read_to_string(&mut msg).is_ok() {
                    let n: u64 = msg.trim_start_matches("request ").parse().unwrap_or(0);
                    eventlet::sleep(std::time::Duration::from_millis(50 - 5 * n.min(9)));
                    let _ = sock.write_all(format!("reply to {msg}").as_bytes());
                }
            })
            .expect("accept loop failed");
    });

    let pile = GreenPile::new(10);
    for i in 0..10 {
        pile.spawn(move || ask(addr, format!("request {i}")));
    }
    for reply in pile {
        println!("{}", reply?);
    }
    stop.stop();
    Ok(())
}
