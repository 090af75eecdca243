//! permessage-deflate (RFC 7692) under tungstenite, which has none: the
//! negotiation in the handshake, and a byte stream between tungstenite and
//! the connection that inflates the compressed messages a client sends
//! (handing tungstenite plain frames) and deflates the messages tungstenite
//! sends. Browsers offer it on every WebSocket.
//!
//! The compressor keeps its window between messages (context takeover)
//! unless the client asked for `server_no_context_takeover`; windows are
//! 15 bits (a client that limits the server's window is declined, and the
//! connection goes on uncompressed). Control frames and uncompressed
//! messages pass through as they are; a compressed message reaches
//! tungstenite inflated a frame at a time, so its `max_frame_size` and
//! `max_message_size` hold for the inflated bytes (a decompression bomb is
//! stopped at the message limit, having cost no more than that); a message
//! tungstenite sends in fragments goes out uncompressed, which the
//! extension allows.

use std::io::{self, Read, Write};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderMap;

/// What was agreed with the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// Reset the compressor after every message.
    server_no_context_takeover: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the response.
    pub(crate) fn response_header(&self) -> &'static str {
        if self.server_no_context_takeover {
            "permessage-deflate; server_no_context_takeover"
        } else {
            "permessage-deflate"
        }
    }
}

/// The first permessage-deflate offer of the request that this side can
/// accept, if any.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Agreed> {
    for value in headers.get_all(http::header::SEC_WEBSOCKET_EXTENSIONS) {
        let Ok(value) = value.to_str() else { continue };
        'offers: for offer in value.split(',') {
            let mut params = offer.split(';').map(str::trim);
            if !params.next().is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate")) {
                continue;
            }
            let mut agreed = Agreed { server_no_context_takeover: false };
            for p in params {
                let (name, val) = match p.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (p, None),
                };
                match (name.to_ascii_lowercase().as_str(), val) {
                    ("server_no_context_takeover", None) => agreed.server_no_context_takeover = true,
                    ("client_no_context_takeover", None) => {}
                    // Our inflater's window is 15 bits: whatever the client uses fits.
                    ("client_max_window_bits", None) => {}
                    ("client_max_window_bits", Some(v)) if v.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b)) => {}
                    // Our compressor's window is 15 bits only.
                    ("server_max_window_bits", Some("15")) => {}
                    _ => continue 'offers,
                }
            }
            return Some(agreed);
        }
    }
    None
}

/// The four bytes a sync flush ends with, which the extension leaves out.
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// A frame's head, parsed.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Bytes of the head.
    len: usize,
    /// Bytes of the payload.
    payload: u64,
}

/// Parses a frame head at the start of `b`; `None` until it is complete.
fn parse_head(b: &[u8]) -> Option<Head> {
    if b.len() < 2 {
        return None;
    }
    let (fin, rsv1, opcode) = (b[0] & 0x80 != 0, b[0] & 0x40 != 0, b[0] & 0x0f);
    let masked = b[1] & 0x80 != 0;
    let (payload, mut len) = match b[1] & 0x7f {
        126 => (u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?)), 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let m: [u8; 4] = b.get(len..len + 4)?.try_into().ok()?;
        len += 4;
        Some(m)
    } else {
        None
    };
    Some(Head { fin, rsv1, opcode, mask, len, payload })
}

/// Appends a frame of `payload` (FIN set, `first` bits otherwise), masked
/// with an all-zero key when `masked` (so the bytes are the payload's).
fn push_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], masked: bool) {
    out.push(first);
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&[0; 4]);
    }
    out.extend_from_slice(payload);
}

/// Largest plain frame handed to tungstenite: an inflated message goes to
/// it in frames of at most this many bytes (or its `max_frame_size`, if
/// smaller), so tungstenite's limits apply as to any fragmented message
/// and this stream never holds more than a frame of inflated data.
const PLAIN_FRAME: usize = 16 * 1024;

/// Bytes read off the connection at a time.
const READ_SIZE: usize = 16 * 1024;

/// A buffer emptied with more capacity than this is shrunk, so that one
/// large frame does not leave a connection holding its memory for good.
const KEEP_CAPACITY: usize = 64 * 1024;

/// tungstenite's byte stream with permessage-deflate done underneath.
///
/// Received compressed frames are inflated a plain frame at a time, as
/// tungstenite reads: a message of any size (a decompression bomb too)
/// costs this stream one compressed frame and one plain frame of memory,
/// and tungstenite, which receives it as a fragmented message, stops it
/// at its `max_message_size`.
pub(crate) struct DeflateStream<S> {
    inner: S,
    agreed: Agreed,
    /// Largest frame payload accepted from the client (tungstenite's
    /// `max_frame_size`), before it is inflated.
    max_frame: u64,
    /// Largest plain frame made for tungstenite.
    plain_frame: usize,
    inflater: Decompress,
    deflater: Compress,
    /// Bytes read from the connection, not yet whole frames.
    raw_in: Vec<u8>,
    /// Plain frames for tungstenite, from `pos`.
    plain_in: Vec<u8>,
    pos: usize,
    /// A compressed message has begun and not ended: its continuation
    /// frames are compressed too.
    in_message: bool,
    /// The compressed frame being inflated, if any.
    inflating: Option<Inflating>,
    /// Bytes tungstenite wrote, not yet whole frames.
    raw_out: Vec<u8>,
}

/// A compressed frame's payload, unmasked, being inflated.
struct Inflating {
    data: Vec<u8>,
    /// Bytes of `data` inflated so far.
    at: usize,
    /// The opcode of the next plain frame: the message's for its first,
    /// then `0` (continuation).
    opcode: u8,
    /// The frame ends its message.
    fin: bool,
}

impl<S> DeflateStream<S> {
    /// The stream over `inner`; `max_frame` is the largest frame payload
    /// (tungstenite's `max_frame_size`; `None`: no limit).
    pub(crate) fn new(inner: S, agreed: Agreed, max_frame: Option<usize>) -> DeflateStream<S> {
        // The compressor's state is some 300 KB, which its constructor may
        // build on the stack before boxing it: on a thread-pool thread's
        // large stack, not on a green thread's.
        let (inflater, deflater) =
            eventlet::tpool::execute(|| (Decompress::new(false), Compress::new(Compression::default(), false)));
        DeflateStream {
            inner,
            agreed,
            max_frame: max_frame.map_or(u64::MAX, |n| n as u64),
            plain_frame: max_frame.unwrap_or(PLAIN_FRAME).clamp(1, PLAIN_FRAME),
            inflater,
            deflater,
            raw_in: Vec::new(),
            plain_in: Vec::new(),
            pos: 0,
            in_message: false,
            inflating: None,
            raw_out: Vec::new(),
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Puts the next plain frame for tungstenite in `plain_in` (which is
    /// empty): the next piece of the compressed frame being inflated, or
    /// the next whole frame of `raw_in` (a compressed one begins to be
    /// inflated). `Ok(false)`: more bytes must be read first.
    fn next_plain_frame(&mut self) -> Result<bool, Refusal> {
        loop {
            if self.inflating.is_some() {
                self.inflate_some()?;
                return Ok(true);
            }
            let Some(h) = parse_head(&self.raw_in) else { return Ok(false) };
            if h.payload > self.max_frame {
                return Err(Refusal::TooBig);
            }
            let total = usize::try_from(h.payload).ok().and_then(|p| p.checked_add(h.len)).ok_or(Refusal::TooBig)?;
            if self.raw_in.len() < total {
                return Ok(false);
            }
            let compressed = h.opcode < 8 && (h.rsv1 || (h.opcode == 0 && self.in_message));
            if compressed {
                let mut data = self.raw_in[h.len..total].to_vec();
                if let Some(key) = h.mask {
                    data.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
                }
                if h.fin {
                    data.extend_from_slice(&TAIL);
                }
                self.in_message = !h.fin;
                self.inflating = Some(Inflating { data, at: 0, opcode: h.opcode, fin: h.fin });
            } else {
                // Control frames, plain messages: as they are.
                self.plain_in.extend_from_slice(&self.raw_in[..total]);
            }
            self.raw_in.drain(..total);
            shrink(&mut self.raw_in);
            if !compressed {
                return Ok(true);
            }
        }
    }

    /// Inflates the next plain frame's worth of the frame being inflated
    /// into `plain_in`; the last one carries the frame's FIN.
    fn inflate_some(&mut self) -> Result<(), Refusal> {
        let Some(job) = self.inflating.as_mut() else { return Ok(()) };
        let mut out = Vec::with_capacity(self.plain_frame);
        let mut progressed = false;
        // Until the piece is full or the inflater has nothing more to give
        // (its input used up and nothing held back inside it).
        while out.len() < out.capacity() {
            let (in_before, out_before) = (self.inflater.total_in(), out.len());
            let status = self
                .inflater
                .decompress_vec(&job.data[job.at..], &mut out, FlushDecompress::Sync)
                .map_err(|_| Refusal::BadData)?;
            let used = (self.inflater.total_in() - in_before) as usize;
            job.at += used;
            if used == 0 && out.len() == out_before {
                break;
            }
            progressed = true;
            if status == Status::StreamEnd {
                // A final deflate block (RFC 7692 allows one) ends the
                // message's data: what follows it is the tail, and the
                // next message starts a new stream.
                job.at = job.data.len();
                self.inflater.reset(false);
                break;
            }
        }
        if !progressed && job.at < job.data.len() {
            // Input left that the inflater neither takes nor turns into
            // anything: not deflate data.
            return Err(Refusal::BadData);
        }
        // The frame is done once its input is used up and the last call
        // had room left (nothing more is waiting inside the inflater).
        let done = job.at >= job.data.len() && out.len() < out.capacity();
        let fin = done && job.fin;
        push_frame(&mut self.plain_in, if fin { 0x80 } else { 0 } | job.opcode, &out, true);
        job.opcode = 0;
        if done {
            self.inflating = None;
        }
        Ok(())
    }

    /// Turns the whole frames of `raw_out` into what goes on the wire:
    /// whole messages compressed, the rest as they are.
    fn encode_frames(&mut self) -> io::Result<Vec<u8>> {
        let mut wire = Vec::new();
        let mut at = 0;
        while let Some(h) = parse_head(&self.raw_out[at..]) {
            let total = usize::try_from(h.payload).ok().and_then(|p| p.checked_add(h.len)).ok_or_else(too_big)?;
            if self.raw_out.len() - at < total {
                break;
            }
            let frame = self.raw_out[at..at + total].to_vec();
            at += total;
            if h.fin && !h.rsv1 && (h.opcode == 1 || h.opcode == 2) && h.mask.is_none() {
                let packed = self.deflate(&frame[h.len..])?;
                push_frame(&mut wire, 0x80 | 0x40 | h.opcode, &packed, false);
            } else {
                wire.extend_from_slice(&frame);
            }
        }
        self.raw_out.drain(..at);
        shrink(&mut self.raw_out);
        Ok(wire)
    }

    fn deflate(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.deflater.total_in();
            self.deflater
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(format!("compressing a message: {e}")))?;
            input = &input[(self.deflater.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        if self.agreed.server_no_context_takeover {
            self.deflater.reset();
        }
        Ok(out)
    }
}

/// Why a client's compressed frames are refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// A frame over the size limit (RFC 6455: `1009`).
    TooBig,
    /// Data that does not inflate (`1007`).
    BadData,
}

impl<S: Read + Write> Read for DeflateStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.plain_in.len() {
                let n = buf.len().min(self.plain_in.len() - self.pos);
                buf[..n].copy_from_slice(&self.plain_in[self.pos..self.pos + n]);
                self.pos += n;
                if self.pos == self.plain_in.len() {
                    self.plain_in.clear();
                    self.pos = 0;
                    shrink(&mut self.plain_in);
                }
                return Ok(n);
            }
            match self.next_plain_frame() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(refusal) => {
                    // RFC 6455: the close code, then the connection ends.
                    let (code, why): (u16, &str) = match refusal {
                        Refusal::TooBig => (1009, "compressed frame larger than the limit"),
                        Refusal::BadData => (1007, "bad compressed message"),
                    };
                    let mut close = vec![0x88, 2];
                    close.extend_from_slice(&code.to_be_bytes());
                    let _ = self.inner.write_all(&close);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why));
                }
            }
            let at = self.raw_in.len();
            self.raw_in.resize(at + READ_SIZE, 0);
            let n = self.inner.read(&mut self.raw_in[at..]);
            self.raw_in.truncate(at + *n.as_ref().unwrap_or(&0));
            if n? == 0 {
                // What is left is an unfinished frame: tungstenite sees the
                // connection end.
                return Ok(0);
            }
        }
    }
}

/// Gives back the memory of an emptied (or nearly) buffer that grew large.
fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY && buf.len() <= KEEP_CAPACITY / 4 {
        buf.shrink_to(KEEP_CAPACITY / 4);
    }
}

impl<S: Write> Write for DeflateStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.raw_out.extend_from_slice(buf);
        let wire = self.encode_frames()?;
        if !wire.is_empty() {
            self.inner.write_all(&wire)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for DeflateStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateStream")
            .field("inner", &self.inner)
            .field("agreed", &self.agreed)
            .finish_non_exhaustive()
    }
}

fn too_big() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "message larger than the limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection in memory: reads come from `input`, writes are kept.
    struct Mem {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Mem {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Mem {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn compressed(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() / 100 + 4096);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity());
            }
            let before = c.total_in();
            c.compress_vec(input, &mut out, FlushCompress::Sync).unwrap();
            input = &input[(c.total_in() - before) as usize..];
            if input.is_empty() && out.capacity() - out.len() >= 1024 {
                break;
            }
        }
        out.truncate(out.len() - 4);
        out
    }

    /// A decompression bomb (32 MiB of zeros in one compressed frame of
    /// some 32 KB) is inflated a plain frame at a time as it is read: the
    /// stream never holds more than one frame of it (it held the whole
    /// inflated message, and kept that memory for the connection's life).
    #[test]
    fn a_bomb_is_inflated_a_frame_at_a_time() {
        let size = 32 << 20;
        let packed = compressed(&vec![0; size]);
        let mut wire = Vec::new();
        push_frame(&mut wire, 0x80 | 0x40 | 2, &packed, true);
        let mem = Mem { input: io::Cursor::new(wire), output: Vec::new() };
        let mut s = DeflateStream::new(mem, Agreed { server_no_context_takeover: false }, Some(16 << 20));
        let (mut plain, mut frames, mut most) = (0usize, 0usize, 0usize);
        let mut buf = vec![0; 64 * 1024];
        let mut stream = Vec::new();
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            stream.extend_from_slice(&buf[..n]);
            most = most.max(s.plain_in.capacity()).max(s.raw_in.capacity());
            // Parse the plain frames as tungstenite would, dropping them.
            while let Some(h) = parse_head(&stream) {
                let total = h.len + h.payload as usize;
                if stream.len() < total {
                    break;
                }
                assert!(stream[h.len..total].iter().all(|&b| b == 0));
                assert_eq!(h.opcode, if frames == 0 { 2 } else { 0 });
                assert!(!h.rsv1);
                plain += h.payload as usize;
                frames += 1;
                stream.drain(..total);
                if h.fin {
                    assert_eq!(plain, size, "the whole message, once");
                }
            }
        }
        assert!(stream.is_empty());
        assert_eq!(plain, size);
        assert!(frames >= size / PLAIN_FRAME, "{frames} frames");
        assert!(most <= 256 << 10, "the stream held {most} bytes at once");
    }

    /// A frame whose data is not deflate is refused with Close 1007.
    #[test]
    fn garbage_is_refused_with_1007() {
        let mut wire = Vec::new();
        push_frame(&mut wire, 0x80 | 0x40 | 1, &[0xff; 64], true);
        let mem = Mem { input: io::Cursor::new(wire), output: Vec::new() };
        let mut s = DeflateStream::new(mem, Agreed { server_no_context_takeover: false }, None);
        let e = s.read(&mut [0; 1024]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(s.get_ref().output, [0x88, 2, 0x03, 0xef]);
    }
}
