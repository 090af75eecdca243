//! `eventlet echo`: the seed's echo server, one green thread per client,
//! on [`eventlet::Server`] (a cap on clients, a stop handle for Ctrl-C).

use std::io::{Read, Write};

use anyhow::Result;
use eventlet::net::TcpStream;

/// The echo handler: whatever arrives goes back.
pub(crate) fn handle_chunks(mut client: TcpStream) {
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = client.read(&mut buf) {
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

pub(crate) fn run(listen: &str, max_clients: usize, console: Option<&str>) -> Result<()> {
    crate::at_least_one(max_clients, "--max-clients")?;
    let listener = crate::listen(listen)?;
    let addr = listener.local_addr()?;
    let server = eventlet::Server::new(listener, max_clients);
    let stop = server.stop_handle();
    // Ctrl-C is handled before the address is printed: whoever waits for
    // that line may interrupt at once.
    crate::signal::on_interrupt(move || stop.stop())?;
    println!("echo server listening on {addr}");
    crate::console(console)?;
    server.serve(|sock, _peer| {
        let _ = sock.set_nodelay(true);
        handle_chunks(sock)
    })?;
    eprintln!("echo server stopped");
    Ok(())
}
