//! permessage-deflate (RFC 7692) under tungstenite, which has none: the
//! negotiation in the handshake, and a byte stream between tungstenite and
//! the connection that inflates the compressed messages a client sends
//! (handing tungstenite plain frames) and deflates the messages tungstenite
//! sends. Browsers offer it on every WebSocket.
//!
//! The compressor keeps its window between messages (context takeover)
//! unless the client asked for `server_no_context_takeover`; windows are
//! 15 bits (a client that limits the server's window is declined, and the
//! connection goes on uncompressed). Fragmented and control frames pass
//! through as they are; a message tungstenite sends in fragments goes out
//! uncompressed, which the extension allows.

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

/// tungstenite's byte stream with permessage-deflate done underneath.
pub(crate) struct DeflateStream<S> {
    inner: S,
    agreed: Agreed,
    /// Largest message inflated (tungstenite's `max_message_size`).
    limit: usize,
    inflater: Decompress,
    deflater: Compress,
    /// Bytes read from the connection, not yet whole frames.
    raw_in: Vec<u8>,
    /// Plain frames for tungstenite, from `pos`.
    plain_in: Vec<u8>,
    pos: usize,
    /// The compressed message being received: its opcode and payload.
    message: Option<(u8, Vec<u8>)>,
    /// Bytes tungstenite wrote, not yet whole frames.
    raw_out: Vec<u8>,
}

impl<S> DeflateStream<S> {
    pub(crate) fn new(inner: S, agreed: Agreed, limit: usize) -> DeflateStream<S> {
        // The compressor's state is some 300 KB, which its constructor may
        // build on the stack before boxing it: on a thread-pool thread's
        // large stack, not on a green thread's.
        let (inflater, deflater) =
            eventlet::tpool::execute(|| (Decompress::new(false), Compress::new(Compression::default(), false)));
        DeflateStream {
            inner,
            agreed,
            limit,
            inflater,
            deflater,
            raw_in: Vec::new(),
            plain_in: Vec::new(),
            pos: 0,
            message: None,
            raw_out: Vec::new(),
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Turns the whole frames of `raw_in` into plain ones in `plain_in`.
    /// A frame or message over the limit: `Err(too_big)`.
    fn decode_frames(&mut self) -> io::Result<()> {
        let mut at = 0;
        while let Some(h) = parse_head(&self.raw_in[at..]) {
            let total = h.len as u64 + h.payload;
            if total > self.limit as u64 + 14 {
                return Err(too_big());
            }
            let total = total as usize;
            if self.raw_in.len() - at < total {
                break;
            }
            let frame = &self.raw_in[at..at + total];
            at += total;
            let compressed = h.opcode < 8 && (h.rsv1 || (h.opcode == 0 && self.message.is_some()));
            if !compressed {
                // Control frames, plain messages: as they are.
                self.plain_in.extend_from_slice(frame);
                continue;
            }
            let mut payload = frame[h.len..].to_vec();
            if let Some(key) = h.mask {
                payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
            }
            match &mut self.message {
                Some((_, data)) => data.extend_from_slice(&payload),
                None => self.message = Some((h.opcode, payload)),
            }
            if self.message.as_ref().is_some_and(|(_, d)| d.len() > self.limit) {
                return Err(too_big());
            }
            if h.fin {
                let (opcode, mut data) = self.message.take().unwrap_or_default();
                data.extend_from_slice(&TAIL);
                let plain = self.inflate(&data)?;
                push_frame(&mut self.plain_in, 0x80 | opcode, &plain, true);
            }
        }
        self.raw_in.drain(..at);
        Ok(())
    }

    /// Turns the whole frames of `raw_out` into what goes on the wire:
    /// whole messages compressed, the rest as they are.
    fn encode_frames(&mut self) -> io::Result<Vec<u8>> {
        let mut wire = Vec::new();
        let mut at = 0;
        while let Some(h) = parse_head(&self.raw_out[at..]) {
            let total = h.len + usize::try_from(h.payload).map_err(|_| too_big())?;
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
        Ok(wire)
    }

    fn inflate(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() * 3);
        let mut input = data;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(4096));
            }
            let before = (self.inflater.total_in(), self.inflater.total_out());
            let status = self
                .inflater
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad compressed message: {e}")))?;
            let used = (self.inflater.total_in() - before.0) as usize;
            input = &input[used..];
            if out.len() > self.limit {
                return Err(too_big());
            }
            let progressed = used > 0 || self.inflater.total_out() > before.1;
            if input.is_empty() && out.len() < out.capacity() || status == Status::StreamEnd || !progressed {
                return Ok(out);
            }
        }
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
                }
                return Ok(n);
            }
            let at = self.raw_in.len();
            self.raw_in.resize(at + 16 * 1024, 0);
            let n = self.inner.read(&mut self.raw_in[at..]);
            self.raw_in.truncate(at + *n.as_ref().unwrap_or(&0));
            if n? == 0 {
                // What is left is an unfinished frame: tungstenite sees the
                // connection end.
                return Ok(0);
            }
            if let Err(e) = self.decode_frames() {
                if e.kind() == io::ErrorKind::InvalidData {
                    // RFC 6455: 1009 for a message too big, 1007 for data
                    // that does not inflate; then the connection ends.
                    let code: u16 = if e.to_string().contains("larger") { 1009 } else { 1007 };
                    let mut close = vec![0x88, 2];
                    close.extend_from_slice(&code.to_be_bytes());
                    let _ = self.inner.write_all(&close);
                }
                return Err(e);
            }
        }
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
    io::Error::new(io::ErrorKind::InvalidData, "compressed message larger than the limit")
}
