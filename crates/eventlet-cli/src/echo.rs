//! `eventlet echo`: the seed's echo server, one green thread per client,
//! on [`eventlet::Server`] (a cap on clients, a stop handle for Ctrl-C),
//! spread over one hub per core ([`eventlet::Server::workers`]).

use std::io::{Read, Write};
use std::time::Duration;

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

pub(crate) fn run(listen: &str, max_clients: usize, workers: Option<usize>, console: Option<&str>) -> Result<()> {
    crate::at_least_one(max_clients, "--max-clients")?;
    let workers = crate::workers(workers)?;
    let listener = crate::listen(listen)?;
    let addr = listener.local_addr()?;
    // Ctrl-C closes the clients' connections at once, as the end of the
    // process used to.
    let server = eventlet::Server::new(listener, max_clients).workers(workers).shutdown_timeout(Duration::ZERO);
    let stop = server.stop_handle();
    // Ctrl-C is handled before the address is printed: whoever waits for
    // that line may interrupt at once.
    crate::signal::on_interrupt(move || stop.stop())?;
    println!("echo server listening on {addr} ({workers} hub{})", if workers == 1 { "" } else { "s" });
    crate::console(console)?;
    server.serve(|sock, _peer| {
        let _ = sock.set_nodelay(true);
        handle_chunks(sock)
    })?;
    eprintln!("echo server stopped");
    Ok(())
}
