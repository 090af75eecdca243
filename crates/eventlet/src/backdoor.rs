//! An inspection console: connect with `nc` and see what every green
//! thread of a hub is doing.
//!
//! Python eventlet's `backdoor` opens a Python prompt inside the running
//! program. Rust has no interpreter to offer, so this console answers a few
//! commands about the hubs of the process (the one it runs on, and every
//! hub of every [`Group`](crate::hub::Group); see [`hub::inspect`]):
//! `threads` lists their green threads (id, name, state, the descriptor or
//! timer each waits for), `stats` shows their counters, `hubs` one line per
//! hub, `help` lists the commands and `quit` ends the session. A hub held
//! by a green thread that does not yield cannot answer: after a second the
//! console says so and goes on.
//!
//! ```no_run
//! use eventlet::net::TcpListener;
//!
//! // In the program to inspect, on the hub whose green threads matter:
//! let console = TcpListener::bind("127.0.0.1:3000")?;
//! eventlet::spawn_n(move || {
//!     if let Err(e) = eventlet::backdoor::serve(console) {
//!         eprintln!("backdoor: {e}");
//!     }
//! });
//! // ... then, from a shell: `nc 127.0.0.1 3000`, and type `threads`.
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Bind it to loopback: anyone who can connect sees the names of the
//! program's green threads. Each session is a green thread of the hub the
//! console runs on and shows up in its listing. A hostile client cannot
//! make it buffer without bound ([`MAX_LINE`]), hold it for good (sessions
//! are bounded in number and end when idle or not read) or stop it (out of
//! descriptors, [`serve`] backs off and goes on).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use crate::hub;
use crate::net::{TcpListener, TcpStream};

const HELP: &str = "commands:\n  threads   the green threads of every hub: id, name, state, what each waits for\n  \
                    stats     every hub's counters\n  hubs      one line per hub\n  help      this list\n  \
                    quit      end the session\n";

/// How many sessions run at once; more clients wait in the listener's
/// backlog until one ends.
pub const MAX_SESSIONS: usize = 16;

/// How long a session waits for its client's next command before it ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a session waits for its client to take an answer (a client
/// that never reads) before it ends.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts console sessions on `listener`, each on its own green thread,
/// at most [`MAX_SESSIONS`] at once, through a [`Server`](crate::Server):
/// running out of descriptors (a flood of clients) makes it back off, not
/// stop. A session ends after [`IDLE_TIMEOUT`] without a command, or when
/// its client does not take an answer within [`WRITE_TIMEOUT`].
///
/// # Errors
///
/// An error of `accept` that is not about one connection or a passing
/// shortage (see [`Server`](crate::Server)).
pub fn serve(listener: TcpListener) -> io::Result<()> {
    crate::Server::new(listener, MAX_SESSIONS).serve(|conn, _| {
        if conn.set_read_timeout(Some(IDLE_TIMEOUT)).is_ok() && conn.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok() {
            // A client that goes away mid-session is not an error worth a word.
            let _ = session(conn);
        }
    })
}

/// The longest command line a session reads; a longer one ends it (so a
/// client cannot make the process buffer without bound).
pub const MAX_LINE: usize = 4096;

/// Runs one session: a prompt, a command, its answer, until `quit` or EOF.
///
/// # Errors
///
/// I/O errors of the connection; `InvalidData` for a line longer than
/// [`MAX_LINE`] bytes (the session says so, then ends).
pub fn session(conn: TcpStream) -> io::Result<()> {
    let mut out = &conn;
    let mut lines = BufReader::new(&conn);
    out.write_all(b"eventlet console; type `help`\n> ")?;
    let mut line = Vec::new();
    loop {
        line.clear();
        // A command is a short line: read at most `MAX_LINE` bytes of one.
        if (&mut lines).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            out.write_all(format!("line too long (over {MAX_LINE} bytes); closing\n").as_bytes())?;
            return Err(io::Error::new(io::ErrorKind::InvalidData, "console line too long"));
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            out.write_all(b"not UTF-8; type `help`\n> ")?;
            continue;
        };
        match text.trim() {
            "" => {}
            "threads" | "ps" => {
                let mut text = String::new();
                for r in hub::inspect() {
                    text.push_str(&format!("{r}\n"));
                    let Some((_, threads)) = &r.answer else { continue };
                    text.push_str(&format!("{:>10}  {:<20}  {:<8}  waits for\n", "id", "name", "state"));
                    for t in threads {
                        text.push_str(&format!("{t}\n"));
                    }
                }
                out.write_all(text.as_bytes())?;
            }
            "stats" => {
                let mut text = String::new();
                for r in hub::inspect() {
                    text.push_str(&format!("{r}\n"));
                    let Some((s, _)) = &r.answer else { continue };
                    text.push_str(&format!(
                        "  green threads {}\n  ready {}\n  timers {}\n  io registrations {}\n  io waiters {}\n  \
                         stacks in use {}\n  stacks pooled {}\n  switches {}\n",
                        s.green_threads,
                        s.ready,
                        s.timers,
                        s.io_registrations,
                        s.io_waiters,
                        s.stacks_in_use,
                        s.stacks_pooled,
                        s.switches
                    ));
                }
                out.write_all(text.as_bytes())?;
            }
            "hubs" => {
                let text: String = hub::inspect().iter().map(|r| format!("{r}\n")).collect();
                out.write_all(text.as_bytes())?;
            }
            "help" | "?" => out.write_all(HELP.as_bytes())?,
            "quit" | "exit" => return Ok(()),
            other => out.write_all(format!("unknown command {other:?}; type `help`\n").as_bytes())?,
        }
        out.write_all(b"> ")?;
    }
}
