//! Request heads: parsing (`httparse`, in place in the read buffer), the
//! limits on them, and what the server reads out of them (framing of the
//! body, `Connection`, `Expect`).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use super::incoming::Framing;
use super::reader::Reader;
use super::{MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};
use crate::transport::Transport;

pub(super) struct Head {
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    /// Which of the headers the server itself acts on are present (the
    /// `HAS_*` bits): most requests have none, and then their lookups in
    /// `headers` are skipped.
    pub(super) special: u8,
}

const HAS_CONNECTION: u8 = 1;
const HAS_TRANSFER_ENCODING: u8 = 2;
const HAS_CONTENT_LENGTH: u8 = 4;
const HAS_EXPECT: u8 = 8;
const HAS_HOST: u8 = 16;
/// A second `Host` header (set while parsing, not by [`special_bit`]).
const HAS_SECOND_HOST: u8 = 32;

/// The `HAS_*` bit of a header name (0 for the others).
fn special_bit(name: &HeaderName) -> u8 {
    if name == header::CONNECTION {
        HAS_CONNECTION
    } else if name == header::TRANSFER_ENCODING {
        HAS_TRANSFER_ENCODING
    } else if name == header::CONTENT_LENGTH {
        HAS_CONTENT_LENGTH
    } else if name == header::EXPECT {
        HAS_EXPECT
    } else if name == header::HOST {
        HAS_HOST
    } else {
        0
    }
}

impl Head {
    /// The request line as the access log shows it.
    pub(super) fn line(&self) -> String {
        let minor = if self.version == Version::HTTP_10 { 0 } else { 1 };
        format!("{} {} HTTP/1.{minor}", self.method, self.uri)
    }

    /// Whether the client asks to keep the connection open after this
    /// request (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    #[inline]
    pub(super) fn wants_keep_alive(&self) -> bool {
        match (self.version, self.special & HAS_CONNECTION != 0) {
            (Version::HTTP_11, false) => true,
            (Version::HTTP_11, true) => !has_token(&self.headers, header::CONNECTION, "close"),
            (_, false) => false,
            (_, true) => has_token(&self.headers, header::CONNECTION, "keep-alive"),
        }
    }

    /// Whether the request names its host as HTTP/1.1 requires: exactly
    /// one `Host` header (RFC 9112 §3.2; HTTP/1.0 may go without).
    #[inline]
    pub(super) fn host_ok(&self) -> bool {
        self.version != Version::HTTP_11 || self.special & (HAS_HOST | HAS_SECOND_HOST) == HAS_HOST
    }

    /// Whether the client waits for `100 Continue` before sending its body.
    #[inline]
    pub(super) fn expects_continue(&self) -> bool {
        self.version == Version::HTTP_11
            && self.special & HAS_EXPECT != 0
            && self.headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    }

    /// How the request body is framed, or the status to refuse it with.
    #[inline]
    pub(super) fn framing(&self) -> Result<Framing, StatusCode> {
        if self.special & (HAS_TRANSFER_ENCODING | HAS_CONTENT_LENGTH) == 0 {
            return Ok(Framing::Length(0));
        }
        let te: Vec<&HeaderValue> = self.headers.get_all(header::TRANSFER_ENCODING).iter().collect();
        let cl: Vec<&HeaderValue> = self.headers.get_all(header::CONTENT_LENGTH).iter().collect();
        if !te.is_empty() {
            if !cl.is_empty() || self.version == Version::HTTP_10 {
                return Err(StatusCode::BAD_REQUEST);
            }
            let mut codings = Vec::new();
            for v in te {
                let v = v.to_str().map_err(|_| StatusCode::BAD_REQUEST)?;
                codings.extend(v.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()));
            }
            return match codings.as_slice() {
                [only] if only == "chunked" => Ok(Framing::ChunkSize),
                [.., last] if last == "chunked" => Err(StatusCode::NOT_IMPLEMENTED),
                _ => Err(StatusCode::BAD_REQUEST),
            };
        }
        let mut len: Option<u64> = None;
        for v in cl {
            for part in v.to_str().map_err(|_| StatusCode::BAD_REQUEST)?.split(',') {
                let part = part.trim();
                if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(StatusCode::BAD_REQUEST);
                }
                let n: u64 = part.parse().map_err(|_| StatusCode::BAD_REQUEST)?;
                if len.is_some_and(|l| l != n) {
                    return Err(StatusCode::BAD_REQUEST);
                }
                len = Some(n);
            }
        }
        Ok(Framing::Length(len.unwrap_or(0)))
    }
}

pub(super) enum HeadError {
    /// The client closed or went idle between requests: just close.
    Closed,
    /// Answer with this status, then close.
    Status(StatusCode),
}

/// Whether any `name` header lists `token` (any case).
pub(crate) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| value_has_token(v, token))
}

/// Whether a comma-separated header value lists `token` (any case).
pub(super) fn value_has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Tries to parse a complete head out of the buffer; `Ok(None)` when more
/// bytes are needed.
#[inline]
pub(super) fn parse_head<S: Transport>(r: &mut Reader<S>) -> Result<Option<Head>, HeadError> {
    let buf = r.buffered();
    // Empty lines before a request line are ignored (RFC 9112 §2.2).
    let lead = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let body = &buf[lead..];
    let line_len = body.iter().position(|&b| b == b'\n');
    if line_len.unwrap_or(body.len()) > MAX_REQUEST_LINE {
        return Err(HeadError::Status(StatusCode::URI_TOO_LONG));
    }
    // Left uninitialised: filling 100 headers before every parse cost more
    // than the parse of a small request.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(body, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if body.len() > MAX_HEAD {
                return Err(HeadError::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
            }
            if lead > 0 {
                r.consume(lead);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
        }
        Err(httparse::Error::Version) => return Err(HeadError::Status(StatusCode::HTTP_VERSION_NOT_SUPPORTED)),
        Err(_) => return Err(HeadError::Status(StatusCode::BAD_REQUEST)),
    };
    if n > MAX_HEAD {
        return Err(HeadError::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
    let bad = || HeadError::Status(StatusCode::BAD_REQUEST);
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| bad())?;
    // The path and the header values become slices of one copy of the
    // head, not a copy (an allocation) each: a browser's request carries
    // ten headers or so.
    let head = Bytes::copy_from_slice(&body[..n]);
    let within = |part: &[u8]| {
        let at = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        match n.checked_sub(at) {
            Some(room) if part.len() <= room => head.slice(at..at + part.len()),
            // Not borrowed from the head (an empty value may not be).
            _ => Bytes::copy_from_slice(part),
        }
    };
    let uri = Uri::from_maybe_shared(within(req.path.unwrap_or("").as_bytes())).map_err(|_| bad())?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    let mut special = 0;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_maybe_shared(within(h.value)).map_err(|_| bad())?;
        let bit = special_bit(&name);
        if bit & special & HAS_HOST != 0 {
            special |= HAS_SECOND_HOST;
        }
        special |= bit;
        map.append(name, value);
    }
    r.consume(lead + n);
    Ok(Some(Head { method, uri, version, headers: map, special }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(extra: &[(&str, &str)], version: Version) -> Head {
        let mut headers = HeaderMap::new();
        for (k, v) in extra {
            headers.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let mut special = 0;
        for name in headers.keys() {
            special |= special_bit(name);
            if headers.get_all(name).iter().nth(1).is_some() && special_bit(name) == HAS_HOST {
                special |= HAS_SECOND_HOST;
            }
        }
        Head { method: Method::POST, uri: Uri::from_static("/"), version, headers, special }
    }

    #[test]
    fn framing_rules() {
        let v11 = Version::HTTP_11;
        let framing = |h: &[(&str, &str)]| head(h, v11).framing();
        assert_eq!(framing(&[]), Ok(Framing::Length(0)));
        assert_eq!(framing(&[("content-length", "12")]), Ok(Framing::Length(12)));
        assert_eq!(framing(&[("content-length", "12, 12")]), Ok(Framing::Length(12)));
        assert_eq!(framing(&[("content-length", "12"), ("content-length", "13")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(framing(&[("content-length", "+12")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(framing(&[("transfer-encoding", "Chunked")]), Ok(Framing::ChunkSize));
        assert_eq!(framing(&[("transfer-encoding", "chunked"), ("content-length", "3")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(framing(&[("transfer-encoding", "gzip, chunked")]), Err(StatusCode::NOT_IMPLEMENTED));
        assert_eq!(framing(&[("transfer-encoding", "gzip")]), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn keep_alive_and_continue() {
        assert!(head(&[], Version::HTTP_11).wants_keep_alive());
        assert!(!head(&[("connection", "Close")], Version::HTTP_11).wants_keep_alive());
        assert!(!head(&[], Version::HTTP_10).wants_keep_alive());
        assert!(head(&[("connection", "foo, keep-alive")], Version::HTTP_10).wants_keep_alive());
        assert!(head(&[("expect", "100-Continue")], Version::HTTP_11).expects_continue());
        assert!(!head(&[("expect", "100-continue")], Version::HTTP_10).expects_continue());
        assert!(!head(&[], Version::HTTP_11).host_ok());
        assert!(head(&[("host", "x")], Version::HTTP_11).host_ok());
        assert!(!head(&[("host", "x"), ("host", "y")], Version::HTTP_11).host_ok());
        assert!(head(&[], Version::HTTP_10).host_ok());
    }
}
