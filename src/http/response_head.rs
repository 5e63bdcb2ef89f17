//! Vaultwarden's HTTP/1.1 response head, read strictly, and how the body
//! after it is delimited (RFC 9112 §6.3). Pure: bytes in, a head or an error
//! out; `proxy/exchange.rs` does the reading.
//!
//! Strict because a head read wrongly desynchronises a kept connection: the
//! next client's request would get the rest of this answer. Anything
//! ambiguous (two different lengths, a transfer coding we do not decode, a
//! length with a sign) is an error, which the proxy answers with 502 and the
//! connection is closed.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use super::headers::has_token;

/// The longest head accepted (Vaultwarden's are a few hundred bytes).
pub const MAX_HEAD: usize = 64 * 1024;

/// The most header fields accepted in one head.
pub const MAX_HEADERS: usize = 128;

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: 1xx, 204, 304, or the answer to HEAD.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection may carry another request after this answer's body.
    pub keep_alive: bool,
}

/// Why a response head was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the response head is longer than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("response status {0} is not in 100-599")]
    Status(u16),
    #[error("a response header field is not valid")]
    Field,
    #[error("the Content-Length is not one number")]
    ContentLength,
    #[error("Transfer-Encoding other than chunked")]
    TransferEncoding,
    #[error("a 101 answer to a request that asked for no upgrade")]
    UnaskedUpgrade,
}

/// Parses the head at the start of `buf` (of an answer to a HEAD request
/// when `head_request`) and takes it off `buf`. `Ok(None)`: not all of it is
/// there yet, and `buf` is left as it was. An informational (1xx) head comes
/// back as any other, with [`Framing::Empty`], for the caller to skip.
pub fn parse(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, HeadError> {
    // Where each field's name and value lie in `buf`: the values become
    // slices of the head's bytes rather than copies of their own. (A Vec of
    // the fields there are, not an array of the most there may be: zeroing
    // that cost more than the copies it saves.)
    let (len, code, http11, spans) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Malformed(e)),
        };
        let start = buf.as_ptr() as usize;
        let spans: Vec<(usize, usize, usize, usize)> = resp
            .headers
            .iter()
            .map(|field| {
                let name = field.name.as_ptr() as usize - start;
                let value = field.value.as_ptr() as usize - start;
                (name, name + field.name.len(), value, value + field.value.len())
            })
            .collect();
        (len, resp.code.unwrap_or(0), resp.version == Some(1), spans)
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    if !(100..600).contains(&code) {
        return Err(HeadError::Status(code));
    }
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Status(code))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(HeadError::UnaskedUpgrade);
    }
    let bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for &(name_start, name_end, value_start, value_end) in &spans {
        let name = HeaderName::from_bytes(&bytes[name_start..name_end]).map_err(|_| HeadError::Field)?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(value_start..value_end))
            .map_err(|_| HeadError::Field)?;
        headers.append(name, value);
    }
    let mut keep_alive = http11 && !has_token(&headers, &header::CONNECTION, "close");
    let framing = if status.is_informational()
        || head_request
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if headers.contains_key(header::TRANSFER_ENCODING) {
        // HTTP/1.0 has no transfer codings: such an answer is faulty (RFC 9112 §6.1).
        if !http11 || !chunked_only(&headers) {
            return Err(HeadError::TransferEncoding);
        }
        // Both: the coding wins, and the connection is not trusted with
        // another request (RFC 9112 §6.3). The length never reaches the client.
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
        Framing::Chunked
    } else if let Some(n) = content_length(&mut headers)? {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    // An HTTP/1.0 server's answer without a length ends at the close; with
    // one, it still closes unless it said otherwise, which we do not ask for.
    Ok(Some(Head { status, headers, framing, keep_alive }))
}

/// `Transfer-Encoding` is exactly `chunked` (in one or more fields).
fn chunked_only(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty());
    matches!((codings.next(), codings.next()), (Some(t), None) if t.eq_ignore_ascii_case(b"chunked"))
}

/// The one length every `Content-Length` value states (repeats of the same
/// number are one, and are left as one field), or none.
fn content_length(headers: &mut HeaderMap) -> Result<Option<u64>, HeadError> {
    let mut found: Option<u64> = None;
    let mut fields = 0;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        fields += 1;
        for part in value.as_bytes().split(|b| *b == b',') {
            let n = digits(part.trim_ascii()).ok_or(HeadError::ContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(HeadError::ContentLength);
            }
            found = Some(n);
        }
    }
    if let Some(n) = found {
        if fields > 1 || headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes().contains(&b',')) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    Ok(found)
}

/// 1 to 19 decimal digits, nothing else (no sign, no space): at most
/// 10^19 - 1, which fits a u64.
pub fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, HeadError> {
        parse(&mut BytesMut::from(raw), false)
    }

    fn framing(raw: &str) -> (Framing, bool) {
        let h = head(raw).unwrap().unwrap();
        (h.framing, h.keep_alive)
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
        assert!(parse(&mut buf, false).unwrap().is_none());
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", "and is left as it was");
        assert!(head("").unwrap().is_none());
    }

    #[test]
    fn the_length_is_where_the_head_ends() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        let h = parse(&mut buf, false).unwrap().unwrap();
        assert_eq!(&buf[..], b"hi", "the head is taken off, the body left");
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.headers["content-length"], "2");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(2), true));
    }

    #[test]
    fn bodies_are_delimited_as_rfc_9112_says() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            (Framing::Chunked, true)
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), (Framing::UntilClose, false));
        assert_eq!(framing("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"), (Framing::Empty, true));
        assert_eq!(framing("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), (Framing::Empty, true));
        assert_eq!(framing("HTTP/1.1 100 Continue\r\n\r\n"), (Framing::Empty, true));
        assert_eq!(framing("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), (Framing::Length(0), true));
        let h = parse(&mut BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"), true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Empty, "the answer to HEAD has no body");
        assert_eq!(h.headers["content-length"], "9", "and says how long GET's would be");
    }

    #[test]
    fn a_closing_or_http_1_0_answer_is_not_kept() {
        assert!(!framing("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n").1);
        assert!(!framing("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\n").1);
        assert_eq!(framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"), (Framing::Length(1), false));
    }

    #[test]
    fn a_coding_and_a_length_is_chunked_never_kept_and_loses_the_length() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(!h.headers.contains_key("content-length"));
    }

    #[test]
    fn repeats_of_one_length_are_one() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(4));
        assert_eq!(h.headers.get_all("content-length").iter().count(), 1);
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.headers["content-length"], "4");
    }

    #[test]
    fn ambiguous_or_odd_heads_are_refused() {
        let refused = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", HeadError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 4, 5\r\n\r\n", HeadError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\n", HeadError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HeadError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", HeadError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", HeadError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", HeadError::ContentLength),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HeadError::TransferEncoding),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncoding,
            ),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", HeadError::TransferEncoding),
            ("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HeadError::TransferEncoding),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", HeadError::UnaskedUpgrade),
            ("HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", HeadError::Status(600)),
            ("HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", HeadError::Status(99)),
        ];
        for (raw, want) in refused {
            assert_eq!(head(raw).err(), Some(want), "{raw:?}");
        }
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length : 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            "ICY 200 OK\r\n\r\n",
        ] {
            assert!(matches!(head(raw), Err(HeadError::Malformed(_))), "{raw:?}: {:?}", head(raw));
        }
    }

    #[test]
    fn a_head_too_long_or_with_too_many_fields_is_refused() {
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(head(&long).err(), Some(HeadError::TooLarge));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: a\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(head(&many).err(), Some(HeadError::TooLarge));
        let most =
            format!("HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n", "X: a\r\n".repeat(MAX_HEADERS - 1));
        assert!(head(&most).unwrap().is_some());
    }

    #[test]
    fn digits_are_only_digits() {
        assert_eq!(digits(b"0"), Some(0));
        assert_eq!(digits(b"9999999999999999999"), Some(9_999_999_999_999_999_999));
        for bad in [&b""[..], b"1 ", b" 1", b"+1", b"1a", b"10000000000000000000"] {
            assert_eq!(digits(bad), None, "{bad:?}");
        }
    }
}
