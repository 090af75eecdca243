//! `eventlet forward`: eventlet's port forwarder, a server and a client at
//! once. Each accepted connection gets a connection to the target and two
//! green threads, one copying each way. When one side finishes sending
//! (EOF), the other side's write half is shut down, so a half-closed
//! connection stays half-open through the forwarder and the answer still
//! comes back; when a side fails (a reset), both connections are closed.
//! A side that stops reading while bytes wait for it is a failure once a
//! write to it has waited `--write-timeout` (60 s): without it, a target
//! that never reads held the connection, its two green threads and its
//! place under `--max-clients` for good, even after the client had gone.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use eventlet::net::TcpStream;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7000.
    listen: String,
    /// Address to forward to, HOST:PORT (the host is looked up once, at the start).
    target: String,
    /// Most connections forwarded at once (on all hubs together).
    #[arg(short, long, value_name = "N", default_value_t = 5000)]
    max_clients: usize,
    /// Hubs (OS threads) forwarding connections [default: every core this process may use].
    #[arg(short, long, value_name = "N")]
    workers: Option<usize>,
    /// Close a connection (both sides) when a write to either side waits this long: 60, 2.5, 500ms, 1m.
    #[arg(long, value_name = "S", default_value = "60", value_parser = crate::parse_positive_duration)]
    write_timeout: Duration,
    /// Do not log each connection on stderr.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    crate::at_least_one(args.max_clients, "--max-clients")?;
    let workers = crate::workers(args.workers)?;
    let targets = Arc::new(resolve(&args.target)?);
    let listener = crate::listen(&args.listen)?;
    let addr = listener.local_addr()?;
    let server = eventlet::Server::new(listener, args.max_clients).workers(workers).shutdown_timeout(Duration::ZERO);
    let stop = server.stop_handle();
    crate::signal::on_interrupt(move || stop.stop())?;
    println!("forwarding {addr} to {}", args.target);
    let (target, quiet, write_timeout) = (Arc::new(args.target), args.quiet, args.write_timeout);
    server.serve(move |client, peer| {
        let upstream = match eventlet::connect(&targets[..]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("forward: {peer}: cannot connect: {}", crate::about(&target, &e));
                return;
            }
        };
        for s in [&client, &upstream] {
            let _ = s.set_nodelay(true);
            let _ = s.set_write_timeout(Some(write_timeout));
        }
        let (sent, received) = relay(client, upstream);
        if !quiet {
            eprintln!("forward: {peer}: closed, {sent} bytes sent to {target}, {received} received");
        }
    })?;
    eprintln!("forwarder stopped");
    Ok(())
}

/// `HOST:PORT` looked up.
fn resolve(target: &str) -> Result<Vec<SocketAddr>> {
    let bad = || anyhow!("bad target {target:?}: expected HOST:PORT");
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    let addrs = eventlet::net::resolve(host, port).map_err(|e| {
        // The resolver's message names the host already.
        let msg = e.to_string();
        if msg.contains(host) {
            anyhow!("{msg}")
        } else {
            anyhow!("cannot look up {host}: {msg}")
        }
    })?;
    if addrs.is_empty() {
        return Err(anyhow!("cannot look up {host}: no address"));
    }
    Ok(addrs)
}

/// Copies both ways until both are done; the byte counts each way.
fn relay(client: TcpStream, upstream: TcpStream) -> (u64, u64) {
    let client = Rc::new(client);
    let upstream = Rc::new(upstream);
    let (c, u) = (client.clone(), upstream.clone());
    let back = eventlet::spawn(move || pump(&u, &c));
    let sent = pump(&client, &upstream);
    let received = back.join().unwrap_or(0);
    (sent, received)
}

/// Copies `from` to `to` until EOF, then shuts down `to`'s write half; on
/// an error, shuts both connections down (which ends the other pump too).
fn pump(from: &TcpStream, to: &TcpStream) -> u64 {
    let mut buf = vec![0; 32 * 1024];
    let mut total = 0;
    loop {
        let n = match (&*from).read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return total;
            }
            Ok(n) => n,
            Err(_) => break,
        };
        if (&*to).write_all(&buf[..n]).is_err() {
            break;
        }
        total += n as u64;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    total
}
