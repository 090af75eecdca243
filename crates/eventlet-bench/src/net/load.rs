//! The load generator: raw mio, one OS thread per load CPU (one by
//! default), each pinned to its CPU.
//!
//! It opens N connections to a server, spread over its threads, keeps a
//! fixed number of requests in flight on each (closed loop: a connection
//! sends its next request, or its next batch of pipelined ones, when the
//! previous answers are complete), and counts completed exchanges and their
//! latencies in a measured window that follows a warm-up. A paced load
//! instead sends each connection's next request no sooner than its interval
//! after the last one (the `balance` scenario's busy and idle connections).
//!
//! It is written to cost as little as it can per exchange, because on a
//! two-core machine it pays for half of the TCP work and is often the
//! limit:
//!
//! - one `read` per readiness event when the answer is complete (nothing
//!   more can be pending), one `write` per request or batch, no allocation
//!   per exchange;
//! - a read that fills less than the buffer drained the socket, so the next
//!   arrival raises a new edge (Linux's epoll wakes an edge-triggered waiter
//!   on every arrival) and no `WouldBlock` read is spent to learn it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::util;

/// The echo scenario's message: 64 bytes, written and read back.
pub(crate) const ECHO_MSG: [u8; 64] = [b'x'; 64];

/// The http scenario's request: the smallest keep-alive HTTP/1.1 GET.
pub(crate) const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// The plaintext scenario's request: TechEmpower's, with the headers its
/// load generator sends.
pub(crate) const PLAINTEXT_REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\
Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7\r\n\
Connection: keep-alive\r\n\r\n";

/// The body every http peer answers with.
pub(crate) const HTTP_BODY: &[u8] = b"Hello, World!";

/// What the connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// 64-byte ping-pong.
    Echo,
    /// `GET /` and a `Content-Length` response.
    Http,
    /// TechEmpower's plaintext request and a `Content-Length` response.
    Plaintext,
}

impl Proto {
    /// The bytes of one request.
    fn request(self) -> &'static [u8] {
        match self {
            Proto::Echo => &ECHO_MSG,
            Proto::Http => HTTP_REQUEST,
            Proto::Plaintext => PLAINTEXT_REQUEST,
        }
    }

    /// The length of the first complete answer at the start of `buf`, or
    /// `None` when more bytes are needed.
    fn answer_len(self, buf: &[u8]) -> Result<Option<usize>, String> {
        match self {
            Proto::Echo => Ok((buf.len() >= ECHO_MSG.len()).then_some(ECHO_MSG.len())),
            Proto::Http | Proto::Plaintext => response_len(buf),
        }
    }
}

/// A paced load: connection `i` sends a request at most every
/// `heavy_interval` if `heavy[i]`, else every `light_interval`.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    pub(crate) light_interval: Duration,
    pub(crate) heavy_interval: Duration,
    pub(crate) heavy: Vec<bool>,
}

/// One measurement: which server, how hard, how long, from where.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The server's address.
    pub(crate) addr: SocketAddr,
    /// The server's process, for its CPU time.
    pub(crate) server_pid: u32,
    /// The CPUs the server runs on (for how busy they were).
    pub(crate) server_cpus: Vec<usize>,
    /// Connections.
    pub(crate) conns: usize,
    /// What they speak.
    pub(crate) proto: Proto,
    /// Requests in flight on each connection (pipelined, sent in one
    /// write); 1: one at a time.
    pub(crate) depth: usize,
    /// A paced load instead of a closed loop flat out.
    pub(crate) pace: Option<Pace>,
    /// Load threads; the connections are shared out among them.
    pub(crate) threads: usize,
    /// The CPUs the load threads are pinned to, round robin.
    pub(crate) load_cpus: Vec<usize>,
    /// Load before the measured window (connection setup happens before it).
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) window: Duration,
    /// An eventlet server's inspection console, to read each hub's
    /// counters at the window's edges.
    pub(crate) console: Option<SocketAddr>,
}

/// One hub of an eventlet server over the measured window, from its
/// console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HubLoad {
    /// Green threads alive at the start of the window (its connections,
    /// plus a few of the server's own).
    pub(crate) green_threads: u64,
    /// Green threads switched to in the window (about one per message).
    pub(crate) switches: u64,
}

/// What one measurement saw in its window.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Completed exchanges (requests, not batches).
    pub(crate) done: u64,
    /// The window's real length.
    pub(crate) elapsed: Duration,
    /// The 99th percentile latency of the completed exchanges (of a whole
    /// batch when pipelined).
    pub(crate) p99: Duration,
    /// CPU time the server used in the window.
    pub(crate) server_cpu: Duration,
    /// CPU time of each of the server's threads in the window, largest first.
    pub(crate) server_threads: Vec<Duration>,
    /// CPU time the load generator's threads used in the window.
    pub(crate) load_cpu: Duration,
    /// CPUs given to the server and to the load.
    pub(crate) server_cpus: usize,
    pub(crate) load_cpus: usize,
    /// The share of the CPUs the server and load run on that other
    /// processes took in the window (`/proc/stat`; 0 when unknown).
    pub(crate) others: f64,
    /// Connections that failed (reset, closed, bad answer) during the run.
    pub(crate) failed: usize,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
    /// Each hub of the server's `Server::workers`, in order, when its
    /// console was read.
    pub(crate) hubs: Vec<HubLoad>,
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

    /// The server's share of its CPUs in the window (1.0 = all of them).
    pub(crate) fn server_share(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9) / self.server_cpus.max(1) as f64
    }

    /// The load generator's share of its CPUs in the window.
    pub(crate) fn load_share(&self) -> f64 {
        self.load_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9) / self.load_cpus.max(1) as f64
    }

    /// The share of the CPUs in use that other processes took.
    pub(crate) fn others_share(&self) -> f64 {
        self.others
    }

    /// The busiest of the `n` busiest server threads against their mean
    /// (1.0: even); `None` without `n` threads that ran.
    pub(crate) fn imbalance(&self, n: usize) -> Option<f64> {
        let top = self.server_threads.get(..n)?;
        max_over_mean(&top.iter().map(Duration::as_secs_f64).collect::<Vec<_>>())
    }

    /// The hub that switched most against the mean of all hubs (1.0:
    /// even); `None` without hub counters.
    pub(crate) fn hub_imbalance(&self) -> Option<f64> {
        max_over_mean(&self.hubs.iter().map(|h| h.switches as f64).collect::<Vec<_>>())
    }
}

/// The largest of `xs` over their mean; `None` if empty or all zero.
fn max_over_mean(xs: &[f64]) -> Option<f64> {
    let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    (mean > 0.0).then(|| xs.iter().copied().fold(0.0, f64::max) / mean)
}

/// Reads each hub of an eventlet `Server::workers` from its console's
/// `hubs` command: lines `hub ID (thread "T", group "G" #I): N green
/// threads, S switches`.
fn read_hubs(console: SocketAddr) -> Result<Vec<HubLoad>> {
    let mut c = std::net::TcpStream::connect_timeout(&console, Duration::from_secs(5))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"hubs\nquit\n")?;
    let mut text = String::new();
    c.read_to_string(&mut text)?;
    let mut hubs: Vec<(usize, HubLoad)> = Vec::new();
    for line in text.lines().filter(|l| l.contains("group \"eventlet-srv\"")) {
        let parse = || -> Option<(usize, HubLoad)> {
            let index = line.split(" #").nth(1)?.split(')').next()?.parse().ok()?;
            let counts = line.split("): ").nth(1)?;
            let mut words = counts.split_whitespace();
            let green_threads = words.next()?.parse().ok()?;
            let switches = words.nth(2)?.parse().ok()?;
            Some((index, HubLoad { green_threads, switches }))
        };
        hubs.push(parse().with_context(|| format!("cannot read the console's line {line:?}"))?);
    }
    hubs.sort_by_key(|h| h.0);
    Ok(hubs.into_iter().map(|h| h.1).collect())
}

/// Runs one measurement: the load threads on their CPUs, this thread
/// taking the server's CPU time at the window's edges.
pub(crate) fn run(spec: &Spec) -> Result<Outcome> {
    let threads = spec.threads.clamp(1, spec.conns.max(1));
    // All connected; then the start time is set; then all go; at the end
    // the connections stay open until the server's counters are read (a
    // server whose connections close is busy closing them).
    let barrier = Arc::new(Barrier::new(threads + 1));
    let start_at = Arc::new(std::sync::Mutex::new(Instant::now()));
    let mut workers = Vec::new();
    for t in 0..threads {
        let ids: Vec<usize> = (t..spec.conns).step_by(threads).collect();
        let cpu = spec.load_cpus.get(t % spec.load_cpus.len().max(1)).copied();
        let (spec, barrier, start_at) = (spec.clone(), barrier.clone(), start_at.clone());
        let w = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    util::pin_self(cpu);
                }
                let conns = connect(&spec, &ids);
                barrier.wait();
                barrier.wait();
                let start = *start_at.lock().unwrap_or_else(|e| e.into_inner());
                let tally = match conns {
                    Ok(mut conns) => drive(&spec, &mut conns, &ids, start),
                    Err(e) => Err(e),
                };
                barrier.wait();
                tally
            })
            .context("cannot start a load thread")?;
        workers.push(w);
    }
    barrier.wait();
    let start = Instant::now();
    *start_at.lock().unwrap_or_else(|e| e.into_inner()) = start;
    barrier.wait();
    let measure_from = start + spec.warmup;
    let until = measure_from + spec.window;
    // The window's marks; the load threads wait at the last barrier, with
    // their connections open, whatever happens here.
    let marks = (|| -> Result<_> {
        std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
        let hubs0 = spec.console.map(read_hubs).transpose()?;
        let start = (Instant::now(), util::cpu_time(spec.server_pid)?, util::thread_cpu_times(spec.server_pid));
        let ticks0 = CpuTicks::read();
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        let end = (Instant::now(), util::cpu_time(spec.server_pid)?, util::thread_cpu_times(spec.server_pid));
        let ticks1 = CpuTicks::read();
        let hubs1 = spec.console.map(read_hubs).transpose()?;
        Ok((start, end, (ticks0, ticks1), (hubs0, hubs1)))
    })();
    barrier.wait();
    let ((t0, server0, threads0), (t1, server1, threads1), (ticks0, ticks1), (hubs0, hubs1)) = marks?;
    let hubs = match (hubs0, hubs1) {
        (Some(a), Some(b)) if a.len() == b.len() => a
            .iter()
            .zip(&b)
            .map(|(a, b)| HubLoad { green_threads: a.green_threads, switches: b.switches.saturating_sub(a.switches) })
            .collect(),
        (Some(_), Some(_)) => bail!("the server's hubs changed during the window"),
        _ => Vec::new(),
    };
    let mut tally = Tally::default();
    for w in workers {
        let part = w.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        tally.merge(part);
    }
    if tally.failed == spec.conns {
        bail!("the server dropped every connection: {}", tally.first_error.unwrap_or_default());
    }
    let mut server_threads: Vec<Duration> = threads1
        .iter()
        .map(|(tid, t)| t.saturating_sub(threads0.iter().find(|(id, _)| id == tid).map_or(Duration::ZERO, |x| x.1)))
        .collect();
    server_threads.sort_by(|a, b| b.cmp(a));
    let elapsed = t1 - t0;
    let server_cpu = server1.saturating_sub(server0);
    let mut used: Vec<usize> = spec.server_cpus.iter().chain(&spec.load_cpus).copied().collect();
    used.sort_unstable();
    used.dedup();
    let busy: f64 = used.iter().map(|&c| CpuTicks::busy_share(&ticks0, &ticks1, c)).sum();
    let ours = (server_cpu + tally.load_cpu).as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
    Ok(Outcome {
        done: tally.done,
        elapsed,
        p99: percentile(&mut tally.latencies, 0.99),
        server_cpu,
        server_threads,
        load_cpu: tally.load_cpu,
        server_cpus: spec.server_cpus.len(),
        load_cpus: spec.load_cpus.len().min(threads).max(1),
        others: if busy > 0.0 { ((busy - ours) / used.len() as f64).max(0.0) } else { 0.0 },
        failed: tally.failed,
        first_error: tally.first_error,
        hubs,
    })
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
        Proto::Http | Proto::Plaintext if !answer.ends_with(HTTP_BODY) => {
            bail!("unexpected answer: {:?}", String::from_utf8_lossy(answer))
        }
        _ => Ok(()),
    }
}

/// One connection of the load.
struct Conn {
    stream: TcpStream,
    /// When the request (or batch) in flight was sent.
    sent: Instant,
    /// Bytes of answers received and not yet consumed (http only).
    inbuf: Vec<u8>,
    /// Echo bytes received so far.
    got: usize,
    /// Answers still due for the request or batch in flight.
    due: usize,
    /// Bytes of the current request or batch not yet written.
    unsent: usize,
    /// Paced: the earliest time of the next send.
    interval: Option<Duration>,
    alive: bool,
}

/// What a load thread counted.
#[derive(Default)]
struct Tally {
    measuring: bool,
    done: u64,
    latencies: Vec<u64>,
    load_cpu: Duration,
    failed: usize,
    first_error: Option<String>,
}

impl Tally {
    fn complete(&mut self, requests: usize, latency: Duration) {
        if self.measuring {
            self.done += requests as u64;
            self.latencies.push(latency.as_nanos() as u64);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.done += other.done;
        self.latencies.extend(other.latencies);
        self.load_cpu += other.load_cpu;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Gives up on `c` (it stays in place, so tokens keep their meaning).
    fn fail(&mut self, c: &mut Conn, poll: &Poll, why: String) {
        c.alive = false;
        let _ = poll.registry().deregister(&mut c.stream);
        self.failed += 1;
        self.first_error.get_or_insert(why);
    }
}

/// Opens the connections `ids` of the load, one after the other.
fn connect(spec: &Spec, ids: &[usize]) -> Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(ids.len());
    for &i in ids {
        // Blocking connects, one after the other: the kernel completes the
        // handshakes while the server accepts, and no SYN is dropped by a
        // burst against a short backlog.
        let s = std::net::TcpStream::connect_timeout(&spec.addr, Duration::from_secs(5))
            .with_context(|| format!("connection {} of {} to {}", i + 1, spec.conns, spec.addr))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let interval = spec.pace.as_ref().map(|p| if p.heavy[i] { p.heavy_interval } else { p.light_interval });
        conns.push(Conn {
            stream: TcpStream::from_std(s),
            sent: Instant::now(),
            inbuf: Vec::new(),
            got: 0,
            due: 0,
            unsent: 0,
            interval,
            alive: true,
        });
    }
    Ok(conns)
}

fn drive(spec: &Spec, conns: &mut [Conn], ids: &[usize], start: Instant) -> Result<Tally> {
    let mut poll = Poll::new()?;
    for (k, c) in conns.iter_mut().enumerate() {
        poll.registry().register(&mut c.stream, Token(k), Interest::READABLE | Interest::WRITABLE)?;
    }
    let one = spec.proto.request();
    let batch: Vec<u8> = one.repeat(spec.depth.max(1));
    let mut tally = Tally { latencies: Vec::with_capacity(1 << 20), ..Tally::default() };
    // Paced connections wait here for their next send: (when, index).
    let mut timers: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    for (k, c) in conns.iter_mut().enumerate() {
        match c.interval {
            // Spread the first sends over one interval.
            Some(iv) => {
                let frac = (ids[k] as f64 * 0.618_033_988_75).fract();
                timers.push(Reverse((start + iv.mul_f64(frac), k)));
            }
            None => {
                if let Err(e) = send(c, &batch, spec.depth) {
                    tally.fail(c, &poll, format!("write: {e}"));
                }
            }
        }
    }
    let measure_from = start + spec.warmup;
    let until = measure_from + spec.window;
    let mut cpu0 = None;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if cpu0.is_none() && now >= measure_from {
            tally.measuring = true;
            cpu0 = Some(thread_cpu_time());
        }
        if now >= until {
            break;
        }
        while let Some(&Reverse((at, k))) = timers.peek() {
            if at > now {
                break;
            }
            timers.pop();
            let c = &mut conns[k];
            if c.alive {
                if let Err(e) = send(c, &batch, spec.depth) {
                    tally.fail(c, &poll, format!("write: {e}"));
                }
            }
        }
        let mut next = if cpu0.is_none() { measure_from } else { until };
        if let Some(&Reverse((at, _))) = timers.peek() {
            next = next.min(at);
        }
        match poll.poll(&mut events, Some(next.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let k = ev.token().0;
            let Some(c) = conns.get_mut(k) else { continue };
            if !c.alive {
                continue;
            }
            if ev.is_writable() && c.unsent > 0 {
                if let Err(e) = flush(c, &batch) {
                    tally.fail(c, &poll, format!("write: {e}"));
                    continue;
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                match on_readable(c, spec.proto, &mut scratch, &mut tally, spec.depth) {
                    Ok(false) => {}
                    Ok(true) => {
                        // The batch is complete: the next one now, or when
                        // its pace allows.
                        let r = match c.interval {
                            Some(iv) => {
                                timers.push(Reverse(((c.sent + iv).max(Instant::now()), k)));
                                Ok(())
                            }
                            None => send(c, &batch, spec.depth),
                        };
                        if let Err(e) = r {
                            tally.fail(c, &poll, format!("write: {e}"));
                        }
                    }
                    Err(why) => tally.fail(c, &poll, why),
                }
            }
        }
    }
    tally.load_cpu = cpu0.map_or(Duration::ZERO, |c0| thread_cpu_time().saturating_sub(c0));
    Ok(tally)
}

/// Starts a new request, or batch of `depth` pipelined ones, on `c`.
fn send(c: &mut Conn, batch: &[u8], depth: usize) -> io::Result<()> {
    c.sent = Instant::now();
    c.unsent = batch.len();
    c.due = depth.max(1);
    flush(c, batch)
}

/// Writes what is left of the batch; `WouldBlock` leaves it for the next
/// writable event.
fn flush(c: &mut Conn, batch: &[u8]) -> io::Result<()> {
    while c.unsent > 0 {
        match c.stream.write(&batch[batch.len() - c.unsent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.unsent -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what arrived and counts the answers that are complete; `Ok(true)`
/// once the whole batch is answered. An error string means the connection
/// is done for.
fn on_readable(
    c: &mut Conn,
    proto: Proto,
    scratch: &mut [u8],
    tally: &mut Tally,
    depth: usize,
) -> Result<bool, String> {
    loop {
        let n = match c.stream.read(scratch) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        if c.due == 0 {
            return Err("the server sent an answer nobody asked for".into());
        }
        match proto {
            Proto::Echo => {
                c.got += n;
                if c.got > ECHO_MSG.len() {
                    return Err("the server sent more than it was sent".into());
                }
                if c.got == ECHO_MSG.len() {
                    c.got = 0;
                    c.due = 0;
                }
            }
            Proto::Http | Proto::Plaintext => {
                c.inbuf.extend_from_slice(&scratch[..n]);
                let mut used = 0;
                while c.due > 0 {
                    match response_len(&c.inbuf[used..])? {
                        Some(len) => {
                            used += len;
                            c.due -= 1;
                        }
                        None => break,
                    }
                }
                c.inbuf.drain(..used);
                if c.due == 0 && !c.inbuf.is_empty() {
                    return Err("the server sent more answers than it was asked for".into());
                }
            }
        }
        if c.due == 0 {
            tally.complete(depth.max(1), c.sent.elapsed());
            // All answered: nothing else can be pending now.
            return Ok(true);
        }
        if n < scratch.len() {
            // Drained: the rest raises a new edge.
            return Ok(false);
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
    let head = &buf[..head_end];
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status = lines.next().unwrap_or_default();
    if !status.starts_with(b"HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {:?}", String::from_utf8_lossy(status)));
    }
    if status.get(8..13) != Some(b" 200 ") && status.get(8..) != Some(b" 200") {
        return Err(format!("the server answered {:?}", String::from_utf8_lossy(status)));
    }
    let mut length = None;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = std::str::from_utf8(value).ok().and_then(|v| v.parse::<usize>().ok());
            length = Some(v.ok_or_else(|| format!("bad Content-Length {:?}", String::from_utf8_lossy(value)))?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(format!("Transfer-Encoding {:?} is not supported", String::from_utf8_lossy(value)));
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
    fn pipelined_answers_are_counted_one_by_one() {
        let mut three = HELLO.repeat(3);
        assert_eq!(response_len(&three), Ok(Some(HELLO.len())));
        three.truncate(HELLO.len() * 2 + 10);
        assert_eq!(response_len(&three[HELLO.len() * 2..]), Ok(None));
        assert!(response_len(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n").is_err());
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
    fn max_over_mean_of_loads() {
        assert_eq!(max_over_mean(&[1.0, 1.0]), Some(1.0));
        assert_eq!(max_over_mean(&[3.0, 1.0]), Some(1.5));
        assert_eq!(max_over_mean(&[0.0, 0.0]), None);
        assert_eq!(max_over_mean(&[]), None);
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
    fn load_runs_pipelined_against_a_local_http_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { break };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    let mut pending = Vec::new();
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        pending.extend_from_slice(&buf[..n]);
                        let mut out = Vec::new();
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            out.extend_from_slice(HELLO);
                        }
                        if s.write_all(&out).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        probe(addr, Proto::Plaintext).unwrap();
        let spec = Spec {
            addr,
            server_pid: std::process::id(),
            server_cpus: vec![0],
            conns: 3,
            proto: Proto::Plaintext,
            depth: 16,
            pace: None,
            threads: 1,
            load_cpus: vec![],
            warmup: Duration::from_millis(20),
            // Long beside a stall of a loaded machine: one as long as the
            // window left nothing in it.
            window: Duration::from_millis(500),
            console: None,
        };
        let out = run(&spec).unwrap();
        assert!(out.done > 0 && out.done % 16 == 0, "{out:?}");
        assert_eq!(out.failed, 0, "{out:?}");
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
        let spec = |threads, pace| Spec {
            addr,
            server_pid: std::process::id(),
            server_cpus: vec![0],
            conns: 4,
            proto: Proto::Echo,
            depth: 1,
            pace,
            threads,
            load_cpus: util::allowed_cpus(),
            warmup: Duration::from_millis(20),
            // Long beside a stall of a loaded machine (see above).
            window: Duration::from_millis(500),
            console: None,
        };
        for threads in [1, 2] {
            let out = run(&spec(threads, None)).unwrap();
            assert!(out.done > 0, "{out:?}");
            assert_eq!(out.failed, 0, "{out:?}");
            assert!(out.p99 > Duration::ZERO);
        }
        // Paced: one connection every 5 ms, three every 50 ms: about 100 +
        // 30 in 500 ms (fewer if the machine stalls, as a paced connection
        // does not catch up; flat out it would be thousands).
        let pace = Pace {
            light_interval: Duration::from_millis(50),
            heavy_interval: Duration::from_millis(5),
            heavy: vec![true, false, false, false],
        };
        let out = run(&spec(1, Some(pace))).unwrap();
        assert!((50..=200).contains(&out.done), "{out:?}");
        assert_eq!(out.failed, 0, "{out:?}");
    }
}
