//! The load generator: raw mio on one OS thread, pinned to the load CPU.
//!
//! It opens N connections to a server, keeps exactly one request in flight
//! on each (closed loop: a connection sends its next request when the
//! previous answer is complete), and counts completed exchanges and their
//! latencies in a measured window that follows a warm-up. It is written to
//! cost as little as it can per exchange, because on a two-core machine it
//! pays for half of the TCP work and is often the limit:
//!
//! - one `read` per readiness event when the answer is complete (one
//!   request in flight means nothing more can be pending), one `write` per
//!   request, no allocation per exchange;
//! - a read that fills less than the buffer drained the socket, so the next
//!   arrival raises a new edge (Linux's epoll wakes an edge-triggered waiter
//!   on every arrival) and no `WouldBlock` read is spent to learn it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::util;

/// The echo scenario's message: 64 bytes, written and read back.
pub(crate) const ECHO_MSG: [u8; 64] = [b'x'; 64];

/// The http scenario's request: the smallest keep-alive HTTP/1.1 GET.
pub(crate) const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// The body every http peer answers with.
pub(crate) const HTTP_BODY: &[u8] = b"Hello, World!";

/// What the connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// 64-byte ping-pong.
    Echo,
    /// `GET /` and a `Content-Length` response.
    Http,
}

impl Proto {
    /// The bytes of one request.
    fn request(self) -> &'static [u8] {
        match self {
            Proto::Echo => &ECHO_MSG,
            Proto::Http => HTTP_REQUEST,
        }
    }

    /// The length of the first complete answer at the start of `buf`, or
    /// `None` when more bytes are needed.
    fn answer_len(self, buf: &[u8]) -> Result<Option<usize>, String> {
        match self {
            Proto::Echo => Ok((buf.len() >= ECHO_MSG.len()).then_some(ECHO_MSG.len())),
            Proto::Http => response_len(buf),
        }
    }
}

/// One measurement: which server, how hard, how long.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The server's address.
    pub(crate) addr: SocketAddr,
    /// The server's process, for its CPU time.
    pub(crate) server_pid: u32,
    /// Connections, each with one request in flight.
    pub(crate) conns: usize,
    /// What they speak.
    pub(crate) proto: Proto,
    /// Load before the measured window (connection setup happens before it).
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) window: Duration,
}

/// What one measurement saw in its window.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Completed exchanges.
    pub(crate) done: u64,
    /// The window's real length.
    pub(crate) elapsed: Duration,
    /// The 99th percentile latency of the completed exchanges.
    pub(crate) p99: Duration,
    /// CPU time the server used in the window.
    pub(crate) server_cpu: Duration,
    /// CPU time the load generator's thread used in the window.
    pub(crate) load_cpu: Duration,
    /// How busy the server CPU and the load CPU were in the window, whoever
    /// used them (`/proc/stat`; 0 when unknown).
    pub(crate) busy: [f64; 2],
    /// Connections that failed (reset, closed, bad answer) during the run.
    pub(crate) failed: usize,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
}

impl Outcome {
    /// Exchanges per second.
    pub(crate) fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Server CPU microseconds per exchange.
    pub(crate) fn server_us_per_op(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / (self.done.max(1) as f64)
    }

    /// The server's share of one core in the window (1.0 = a full core).
    pub(crate) fn server_share(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The load generator's share of one core in the window.
    pub(crate) fn load_share(&self) -> f64 {
        self.load_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The largest share of the server's or the load's CPU that other
    /// processes took in the window.
    pub(crate) fn others_share(&self) -> f64 {
        (self.busy[0] - self.server_share()).max(self.busy[1] - self.load_share()).max(0.0)
    }
}

/// Runs one measurement on a fresh OS thread pinned to the load CPU (so the
/// caller's own affinity is left alone) and waits for it.
pub(crate) fn run(spec: &Spec) -> Result<Outcome> {
    let spec = spec.clone();
    std::thread::Builder::new()
        .name("load".into())
        .spawn(move || {
            util::pin_self(util::LOAD_CPU);
            drive(&spec)
        })
        .context("cannot start the load thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
}

/// Sends one request on a fresh blocking connection and checks the answer
/// (an echo of the message; `200` with the hello body): proves a peer
/// speaks the protocol before it is measured.
pub(crate) fn probe(addr: SocketAddr, proto: Proto) -> Result<()> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(proto.request())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let len = loop {
        if let Some(len) = proto.answer_len(&buf).map_err(anyhow::Error::msg)? {
            break len;
        }
        let n = s.read(&mut chunk).context("reading the first answer")?;
        if n == 0 {
            bail!("the server closed the connection before answering");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let answer = &buf[..len];
    match proto {
        Proto::Echo if answer != ECHO_MSG => bail!("the server did not echo the message back"),
        Proto::Http if !answer.ends_with(HTTP_BODY) => {
            bail!("unexpected answer: {:?}", String::from_utf8_lossy(answer))
        }
        _ => Ok(()),
    }
}

/// One connection of the load.
struct Conn {
    stream: TcpStream,
    /// When the request in flight was sent.
    sent: Instant,
    /// Bytes of the answer received so far (http only; echo only counts).
    inbuf: Vec<u8>,
    /// Echo bytes received so far.
    got: usize,
    /// Bytes of the current request not yet written.
    unsent: usize,
    alive: bool,
}

/// Counters of the measured phase.
struct Tally {
    measuring: bool,
    done: u64,
    latencies: Vec<u64>,
}

impl Tally {
    fn complete(&mut self, latency: Duration) {
        if self.measuring {
            self.done += 1;
            self.latencies.push(latency.as_nanos() as u64);
        }
    }
}

/// Connections given up on.
#[derive(Default)]
struct Failures {
    count: usize,
    first: Option<String>,
}

impl Failures {
    /// Gives up on `c` (it stays in place, so tokens keep their meaning).
    fn add(&mut self, c: &mut Conn, poll: &Poll, why: String) {
        c.alive = false;
        let _ = poll.registry().deregister(&mut c.stream);
        self.count += 1;
        self.first.get_or_insert(why);
    }
}

fn drive(spec: &Spec) -> Result<Outcome> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        // Blocking connects, one after the other: the kernel completes the
        // handshakes while the server accepts, and no SYN is dropped by a
        // burst against a short backlog.
        let s = std::net::TcpStream::connect_timeout(&spec.addr, Duration::from_secs(5))
            .with_context(|| format!("connection {} of {} to {}", i + 1, spec.conns, spec.addr))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(s);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn { stream, sent: Instant::now(), inbuf: Vec::new(), got: 0, unsent: 0, alive: true });
    }

    let request = spec.proto.request();
    let mut tally = Tally { measuring: false, done: 0, latencies: Vec::with_capacity(1 << 20) };
    let mut failures = Failures::default();
    for c in conns.iter_mut() {
        if let Err(e) = send(c, request) {
            failures.add(c, &poll, format!("write: {e}"));
        }
    }

    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let until = measure_from + spec.window;
    let mut marks = None;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if marks.is_none() && now >= measure_from {
            tally.measuring = true;
            marks = Some((now, util::cpu_time(spec.server_pid)?, thread_cpu_time(), CpuTicks::read()));
        }
        if now >= until {
            break;
        }
        if failures.count == conns.len() {
            bail!("the server dropped every connection: {}", failures.first.unwrap_or_default());
        }
        let next = if marks.is_none() { measure_from } else { until };
        match poll.poll(&mut events, Some(next.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0) else { continue };
            if !c.alive {
                continue;
            }
            if ev.is_writable() && c.unsent > 0 {
                if let Err(e) = flush(c, request) {
                    failures.add(c, &poll, format!("write: {e}"));
                    continue;
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                if let Err(why) = on_readable(c, spec.proto, request, &mut scratch, &mut tally) {
                    failures.add(c, &poll, why);
                }
            }
        }
    }
    let end = Instant::now();
    let server_end = util::cpu_time(spec.server_pid)?;
    let load_end = thread_cpu_time();
    let ticks_end = CpuTicks::read();
    let (t0, server0, load0, ticks0) = marks.context("the measured window never started")?;
    Ok(Outcome {
        done: tally.done,
        elapsed: end - t0,
        p99: percentile(&mut tally.latencies, 0.99),
        server_cpu: server_end.saturating_sub(server0),
        load_cpu: load_end.saturating_sub(load0),
        busy: [util::SERVER_CPU, util::LOAD_CPU].map(|cpu| CpuTicks::busy_share(&ticks0, &ticks_end, cpu)),
        failed: failures.count,
        first_error: failures.first,
    })
}

/// Starts a new request on `c`.
fn send(c: &mut Conn, request: &[u8]) -> io::Result<()> {
    c.sent = Instant::now();
    c.unsent = request.len();
    flush(c, request)
}

/// Writes what is left of the request; `WouldBlock` leaves it for the next
/// writable event.
fn flush(c: &mut Conn, request: &[u8]) -> io::Result<()> {
    while c.unsent > 0 {
        match c.stream.write(&request[request.len() - c.unsent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.unsent -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what arrived, completes the answer when whole and sends the next
/// request. An error string means the connection is done for.
fn on_readable(
    c: &mut Conn,
    proto: Proto,
    request: &[u8],
    scratch: &mut [u8],
    tally: &mut Tally,
) -> Result<(), String> {
    loop {
        let n = match c.stream.read(scratch) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        let complete = match proto {
            Proto::Echo => {
                c.got += n;
                if c.got > ECHO_MSG.len() {
                    return Err("the server sent more than it was sent".into());
                }
                let whole = c.got == ECHO_MSG.len();
                if whole {
                    c.got = 0;
                }
                whole
            }
            Proto::Http => {
                c.inbuf.extend_from_slice(&scratch[..n]);
                match response_len(&c.inbuf)? {
                    Some(len) if len == c.inbuf.len() => {
                        c.inbuf.clear();
                        true
                    }
                    Some(_) => return Err("the server sent more than one answer".into()),
                    None => false,
                }
            }
        };
        if complete {
            tally.complete(c.sent.elapsed());
            // One request in flight: nothing else can be pending now.
            return send(c, request).map_err(|e| format!("write: {e}"));
        }
        if n < scratch.len() {
            // Drained: the rest of the answer raises a new edge.
            return Ok(());
        }
    }
}

/// The length of the complete HTTP/1.x response at the start of `buf`
/// (head and `Content-Length` body), `None` while incomplete, or why it
/// cannot be used: not `200`, chunked, or no `Content-Length`.
pub(crate) fn response_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("response head larger than 64 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    if !parts.next().unwrap_or_default().starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {status:?}"));
    }
    if parts.next() != Some("200") {
        return Err(format!("the server answered {status:?}"));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>().map_err(|_| format!("bad Content-Length {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("Transfer-Encoding {:?} is not supported", value.trim()));
        }
    }
    let length = length.ok_or("response without Content-Length")?;
    let total = head_end + 4 + length;
    Ok((buf.len() >= total).then_some(total))
}

/// The `q` quantile (0..=1) of `xs`, in nanoseconds (reorders `xs`).
fn percentile(xs: &mut [u64], q: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let i = ((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1;
    let (_, x, _) = xs.select_nth_unstable(i);
    Duration::from_nanos(*x)
}

/// Per-CPU busy and total clock ticks from `/proc/stat`.
struct CpuTicks(Vec<(u64, u64)>);

impl CpuTicks {
    /// The counters now (empty when `/proc/stat` cannot be read).
    fn read() -> CpuTicks {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        CpuTicks(stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).map(parse_cpu_line).collect())
    }

    /// The share of `cpu`'s time that was busy between `a` and `b`.
    fn busy_share(a: &CpuTicks, b: &CpuTicks, cpu: usize) -> f64 {
        match (a.0.get(cpu), b.0.get(cpu)) {
            (Some(&(busy0, total0)), Some(&(busy1, total1))) if total1 > total0 => {
                busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64
            }
            _ => 0.0,
        }
    }
}

/// (busy, total) ticks of one `cpuN ...` line of `/proc/stat`: busy is all
/// but idle and iowait (the 4th and 5th numbers).
fn parse_cpu_line(line: &str) -> (u64, u64) {
    let xs: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = xs.iter().sum();
    let idle = xs.get(3).copied().unwrap_or(0) + xs.get(4).copied().unwrap_or(0);
    (total - idle.min(total), total)
}

/// CPU time of the calling thread (finer than `/proc`'s clock ticks).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write into; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

    #[test]
    fn response_len_waits_for_head_and_body() {
        assert_eq!(response_len(b""), Ok(None));
        assert_eq!(response_len(&HELLO[..20]), Ok(None));
        assert_eq!(response_len(&HELLO[..HELLO.len() - 1]), Ok(None));
        assert_eq!(response_len(HELLO), Ok(Some(HELLO.len())));
        let mut two = HELLO.to_vec();
        two.extend_from_slice(HELLO);
        assert_eq!(response_len(&two), Ok(Some(HELLO.len())));
    }

    #[test]
    fn response_len_reads_any_header_case_and_empty_bodies() {
        let r = b"HTTP/1.0 200 OK\r\nCONTENT-LENGTH:0\r\n\r\n";
        assert_eq!(response_len(r), Ok(Some(r.len())));
    }

    #[test]
    fn response_len_refuses_what_it_cannot_frame() {
        assert!(response_len(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").is_err());
        assert!(response_len(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(response_len(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n").is_err());
        assert!(response_len(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(response_len(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn cpu_lines_split_busy_from_idle() {
        assert_eq!(parse_cpu_line("cpu1 10 1 5 80 4 0 0 0 0 0"), (16, 100));
        let a = CpuTicks(vec![(0, 0), (10, 100)]);
        let b = CpuTicks(vec![(0, 0), (60, 200)]);
        assert_eq!(CpuTicks::busy_share(&a, &b, 1), 0.5);
        assert_eq!(CpuTicks::busy_share(&a, &b, 0), 0.0);
        assert_eq!(CpuTicks::busy_share(&a, &b, 7), 0.0);
    }

    #[test]
    fn percentile_picks_the_rank() {
        let mut xs: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut xs, 0.99), Duration::from_nanos(99));
        assert_eq!(percentile(&mut xs, 0.5), Duration::from_nanos(50));
        assert_eq!(percentile(&mut [7], 0.99), Duration::from_nanos(7));
        assert_eq!(percentile(&mut [], 0.99), Duration::ZERO);
    }

    #[test]
    fn load_runs_against_a_local_echo_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { break };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        probe(addr, Proto::Echo).unwrap();
        let spec = Spec {
            addr,
            server_pid: std::process::id(),
            conns: 4,
            proto: Proto::Echo,
            warmup: Duration::from_millis(20),
            window: Duration::from_millis(100),
        };
        let out = run(&spec).unwrap();
        assert!(out.done > 0, "{out:?}");
        assert_eq!(out.failed, 0, "{out:?}");
        assert!(out.p99 > Duration::ZERO);
    }
}
