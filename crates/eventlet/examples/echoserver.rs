//! The server-side pattern: an echo server, one green thread per client.
//!
//! ```text
//! cargo run --release --example echoserver            # listens on 0.0.0.0:6000
//! cargo run --release --example echoserver 127.0.0.1:0
//! ```

use std::io::{Read, Write};

use eventlet::net::{TcpListener, TcpStream};
use eventlet::GreenPool;

fn handle(mut client: TcpStream) {
    loop {
        let mut c = [0; 1];
        if client.read(&mut c).unwrap_or(0) == 0 {
            break;
        }
        if client.write_all(&c).is_err() {
            break;
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "0.0.0.0:6000".into());

    let server = TcpListener::bind(&addr)?;
    println!("echo server listening on {}", server.local_addr()?);
    let pool = GreenPool::new(10_000);
    loop {
        let (new_sock, _address) = server.accept()?;
        pool.spawn_n(move || handle(new_sock));
    }
}
