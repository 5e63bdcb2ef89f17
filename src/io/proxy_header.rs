//! The PROXY protocol header (HAProxy's v1 text or v2 binary) a relay in
//! front sends before the client's first TLS byte, to say whose connection
//! it carries. `ppp` parses it; this module only finds where it ends, so
//! that not one byte of the TLS handshake behind it is taken off the socket.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The longest header accepted. A v1 line is at most 107 bytes; a v2 header
/// is 16 bytes and its addresses (at most 216), plus TLVs that relays fill
/// with a unique ID, the TLS SNI or a cloud's endpoint ID.
pub const MAX_HEADER: usize = 1024;

const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("the connection closed before its PROXY header ended")]
    Closed,
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    #[error("the PROXY header is longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
}

/// How much of a header the bytes so far make.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// No end yet: every byte so far belongs to the header.
    Incomplete,
    /// The header is this many bytes (the rest is the client's).
    Complete(usize),
    /// Not a header ([`HeaderError::Missing`]) or too long ([`HeaderError::TooLong`]).
    NotAHeader,
    TooLong,
}

fn frame(buf: &[u8]) -> Frame {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if buf.len() < V2_FIXED {
            return Frame::Incomplete;
        }
        let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        return match total {
            t if t > MAX_HEADER => Frame::TooLong,
            t if buf.len() >= t => Frame::Complete(t),
            _ => Frame::Incomplete,
        };
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Frame::NotAHeader;
    }
    let scan = &buf[..buf.len().min(V1_MAX)];
    match scan.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Frame::Complete(end + 2),
        None if buf.len() >= V1_MAX => Frame::TooLong,
        None => Frame::Incomplete,
    }
}

/// The client's address a complete header names; `None` when the relay
/// speaks for itself (v2 LOCAL, its health checks; v1 UNKNOWN; addresses of
/// a family other than IP), and the connection's own peer stands.
fn source(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::{v1, v2, HeaderResult};
    let malformed = |e: &dyn std::fmt::Display| HeaderError::Malformed(e.to_string());
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (_, v2::Addresses::IPv6(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
        }),
        HeaderResult::V1(Err(e)) => Err(malformed(&e)),
        HeaderResult::V2(Err(e)) => Err(malformed(&e)),
    }
}

/// Reads the PROXY header off `tcp`, and not a byte more: the bytes are
/// peeked and only the header's are consumed. A header sent in pieces is
/// waited for (the caller bounds the wait); at most [`MAX_HEADER`] bytes are
/// ever held.
pub async fn read(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    use tokio::io::AsyncReadExt;
    let mut header = Vec::new();
    let mut peeked = vec![0; MAX_HEADER];
    loop {
        let room = MAX_HEADER - header.len();
        let n = tcp.peek(&mut peeked[..room]).await?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        let before = header.len();
        header.extend_from_slice(&peeked[..n]);
        // An incomplete header's bytes are all the header's: consumed, so
        // that the next peek waits for more instead of seeing them again.
        let complete = match frame(&header) {
            Frame::NotAHeader => return Err(HeaderError::Missing),
            Frame::TooLong => return Err(HeaderError::TooLong),
            Frame::Complete(len) => {
                header.truncate(len);
                true
            }
            Frame::Incomplete => false,
        };
        tcp.read_exact(&mut peeked[..header.len() - before]).await?;
        if complete {
            return source(&header);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_TCP4: &[u8] =
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x07\x0a\x00\x00\x01\x30\x39\x01\xbb";

    #[test]
    fn a_v1_header_ends_at_its_line_end() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 12345 443\r\n\x16\x03\x01";
        assert_eq!(frame(h), Frame::Complete(h.len() - 3));
        assert_eq!(source(&h[..h.len() - 3]).unwrap(), Some("192.0.2.7:12345".parse().unwrap()));
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
        assert_eq!(source(v6).unwrap(), Some("[2001:db8::7]:4000".parse().unwrap()));
        assert_eq!(source(b"PROXY UNKNOWN\r\n").unwrap(), None);
    }

    #[test]
    fn a_v2_header_is_as_long_as_its_length_field_says() {
        let mut h = V2_TCP4.to_vec();
        assert_eq!(frame(&h), Frame::Complete(28));
        assert_eq!(source(&h).unwrap(), Some("192.0.2.7:12345".parse().unwrap()));
        h.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(frame(&h), Frame::Complete(28), "the TLS bytes behind it are not the header's");
        // LOCAL: the relay's own health check.
        let mut local = V2_TCP4.to_vec();
        local[12] = 0x20;
        assert_eq!(source(&local).unwrap(), None);
    }

    #[test]
    fn every_prefix_of_a_header_waits_for_more() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 12345 443\r\n";
        for header in [&v1[..], V2_TCP4] {
            for cut in 0..header.len() {
                assert_eq!(frame(&header[..cut]), Frame::Incomplete, "{cut} bytes of {header:?}");
            }
        }
    }

    #[test]
    fn what_is_not_a_header_is_refused_at_its_first_wrong_byte() {
        assert_eq!(frame(b"\x16\x03\x01\x02\x00"), Frame::NotAHeader);
        assert_eq!(frame(b"GET / HTTP/1.1\r\n"), Frame::NotAHeader);
        assert_eq!(frame(b"PROXX"), Frame::NotAHeader);
        assert_eq!(frame(b"\r\n\r\n\0\r\nQUIX"), Frame::NotAHeader);
    }

    #[test]
    fn headers_past_the_bounds_are_refused_before_they_end() {
        let endless = [b"PROXY ".as_slice(), &[b'1'; V1_MAX]].concat();
        assert_eq!(frame(&endless), Frame::TooLong);
        let mut huge = V2_TCP4[..16].to_vec();
        huge[14..16].copy_from_slice(&(MAX_HEADER as u16).to_be_bytes());
        assert_eq!(frame(&huge), Frame::TooLong);
    }

    #[test]
    fn malformed_headers_are_errors_not_addresses() {
        for bad in [
            &b"PROXY TCP4 999.0.2.7 10.0.0.1 1 443\r\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 443\r\n",
            b"PROXY TCP9 192.0.2.7 10.0.0.1 1 443\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 443\r\n",
            b"PROXY \r\n",
        ] {
            assert!(matches!(source(bad), Err(HeaderError::Malformed(_))), "{bad:?}");
        }
        let mut wrong_version = V2_TCP4.to_vec();
        wrong_version[12] = 0x31;
        assert!(matches!(source(&wrong_version), Err(HeaderError::Malformed(_))));
        // An IPv4 family whose address block is too short for two addresses.
        let mut short = V2_TCP4.to_vec();
        short[15] = 4;
        short.truncate(20);
        assert!(matches!(source(&short), Err(HeaderError::Malformed(_))));
    }
}
