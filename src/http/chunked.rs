//! The chunked transfer coding (RFC 9112 §7.1): decoding Vaultwarden's
//! answers, and the start of each chunk of a request body of unknown length. Pure: the decoder
//! takes bytes from a buffer the caller fills and never reads on its own.
//!
//! Strict and bounded: a size line, the CRLF after each chunk and the
//! trailer section are checked byte for byte and capped, so a malformed or
//! endless answer is an error, never a guess about where the body ends.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The longest chunk-size line, extensions included.
const MAX_SIZE_LINE: usize = 4096;
/// The longest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;
/// The most trailer fields.
const MAX_TRAILER_FIELDS: usize = 32;

/// What [`Decoder::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes (part or all of a chunk).
    Data(Bytes),
    /// The end of the body, with its trailer fields if it had any.
    End(Option<HeaderMap>),
    /// Nothing complete yet: read more into the buffer.
    More,
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("malformed chunk size line")]
    Size,
    #[error("a chunk is not followed by CRLF")]
    Delimiter,
    #[error("malformed or too long trailer section")]
    Trailers,
    #[error("data after the end of the chunked body")]
    AfterEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk: this many bytes to go.
    Data(u64),
    /// After a chunk's data: its CRLF.
    Crlf,
    /// After the last (zero) chunk: trailer fields and the final CRLF.
    Trailers,
    Done,
}

/// Decodes one chunked body.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { state: State::Size }
    }
}

impl Decoder {
    /// Takes what it can from the front of `buf`. Bytes after the end are
    /// left in `buf` (the caller decides what they mean).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line_end) = memchr::memchr(b'\n', &buf[..buf.len().min(MAX_SIZE_LINE)]) else {
                        if buf.len() >= MAX_SIZE_LINE {
                            return Err(ChunkError::Size);
                        }
                        return Ok(Decoded::More);
                    };
                    let size = size_line(&buf[..=line_end])?;
                    buf.advance(line_end + 1);
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 { State::Crlf } else { State::Data(left) };
                    return Ok(Decoded::Data(data));
                }
                State::Crlf => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|b| *b != b'\r') {
                            return Err(ChunkError::Delimiter);
                        }
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::Delimiter);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
                    let window = &buf[..buf.len().min(MAX_TRAILERS)];
                    match httparse::parse_headers(window, &mut fields) {
                        Ok(httparse::Status::Complete((len, fields))) => {
                            let trailers = trailers(fields)?;
                            buf.advance(len);
                            self.state = State::Done;
                            return Ok(Decoded::End(trailers));
                        }
                        Ok(httparse::Status::Partial) if buf.len() < MAX_TRAILERS => {
                            return Ok(Decoded::More)
                        }
                        _ => return Err(ChunkError::Trailers),
                    }
                }
                State::Done => return Err(ChunkError::AfterEnd),
            }
        }
    }
}

/// The size of a chunk-size line (`1a2b;ext=1\r\n`): hex digits, then
/// nothing, or extensions after `;` (or whitespace), then CRLF.
fn size_line(line: &[u8]) -> Result<u64, ChunkError> {
    let line = line.strip_suffix(b"\r\n").ok_or(ChunkError::Size)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // 15 hex digits: under 2^60, so no sum of chunks overflows.
    if digits == 0 || digits > 15 {
        return Err(ChunkError::Size);
    }
    let (hex, rest) = line.split_at(digits);
    // Only whitespace before an extension's `;` (RFC 9112 §7.1.1's BWS).
    let after_space = rest.iter().position(|b| *b != b' ' && *b != b'\t').map_or(&[][..], |at| &rest[at..]);
    if !matches!(after_space.first(), None | Some(b';')) {
        return Err(ChunkError::Size);
    }
    // Extensions are ignored, but never a bare CR inside them.
    if rest.iter().any(|b| *b == b'\r' || *b == 0) {
        return Err(ChunkError::Size);
    }
    let hex = std::str::from_utf8(hex).map_err(|_| ChunkError::Size)?;
    u64::from_str_radix(hex, 16).map_err(|_| ChunkError::Size)
}

fn trailers(fields: &[httparse::Header<'_>]) -> Result<Option<HeaderMap>, ChunkError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| ChunkError::Trailers)?;
        let value = HeaderValue::from_bytes(f.value).map_err(|_| ChunkError::Trailers)?;
        map.append(name, value);
    }
    Ok(Some(map))
}

/// Writes the start of a chunk of `len` bytes (`len` > 0) into `out`.
pub fn chunk_start(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    debug_assert!(len > 0, "a chunk of 0 bytes is the end");
    // Into `out` itself: no string of its own per chunk.
    let _ = write!(out, "{len:x}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The end of a chunked body with `trailers`.
    fn end(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers.into_iter().flatten() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The data, the trailers and what was left after the end.
    type Whole = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Decodes `input` fed in pieces of `step` bytes.
    fn decode_in_steps(input: &[u8], step: usize) -> Result<Whole, ChunkError> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Decoded::Data(b) => data.extend_from_slice(&b),
                Decoded::End(t) => return Ok((data, t, buf.to_vec())),
                Decoded::More => {
                    if fed == input.len() {
                        return Err(ChunkError::Trailers);
                    }
                    let next = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn a_body_with_extensions_and_trailers() {
        let raw = b"5 ;name=v\r\nhello\r\n1\r\n \r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, raw.len()] {
            let (data, trailers, rest) = decode_in_steps(raw, step).unwrap();
            assert_eq!(data, b"hello ");
            assert_eq!(trailers.unwrap()["x-sum"], "1");
            // Fed in small steps, the bytes after the end may not have come yet.
            assert!(b"NEXT".starts_with(&rest), "{step}: {rest:?}");
        }
        let (data, trailers, rest) = decode_in_steps(b"0\r\n\r\n", 1).unwrap();
        assert!(data.is_empty() && trailers.is_none() && rest.is_empty());
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let cases: [(&[u8], ChunkError); 14] = [
            (b"5 x\r\n", ChunkError::Size),
            (b"5\tanything\r\n", ChunkError::Size),
            (b"x\r\n", ChunkError::Size),
            (b"\r\n", ChunkError::Size),
            (b"5\n", ChunkError::Size),
            (b"-5\r\n", ChunkError::Size),
            (b"0x5\r\n", ChunkError::Size),
            (b"1000000000000000\r\n", ChunkError::Size),
            (b"5\rX\r\n", ChunkError::Size),
            (b"5;a\rb\r\n", ChunkError::Size),
            (b"2\r\nabX\r\n", ChunkError::Delimiter),
            (b"2\r\nab\n0\r\n\r\n", ChunkError::Delimiter),
            (b"0\r\nbad field\r\n\r\n", ChunkError::Trailers),
            (b"0\r\nX: a\r\n b\r\n\r\n", ChunkError::Trailers),
        ];
        for (raw, want) in cases {
            for step in [1, raw.len()] {
                assert_eq!(
                    decode_in_steps(raw, step).err(),
                    Some(want.clone()),
                    "{:?}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"1"[..]);
        buf.extend_from_slice(&[b'0'; MAX_SIZE_LINE]);
        assert_eq!(d.decode(&mut buf), Err(ChunkError::Size));
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"1;"[..]);
        buf.extend_from_slice(&[b'a'; MAX_SIZE_LINE]);
        assert_eq!(d.decode(&mut buf), Err(ChunkError::Size));
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"0\r\n"[..]);
        for _ in 0..MAX_TRAILERS / 8 {
            buf.extend_from_slice(b"X: abc\r\n");
        }
        assert_eq!(d.decode(&mut buf), Err(ChunkError::Trailers));
        let mut d = Decoder { state: State::Done };
        assert_eq!(d.decode(&mut BytesMut::new()), Err(ChunkError::AfterEnd));
    }

    fn encode(chunks: &[Vec<u8>], trailers: Option<&HeaderMap>) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            chunk_start(c.len(), &mut out);
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        end(trailers, &mut out);
        out
    }

    proptest! {
        #[test]
        fn what_is_encoded_decodes_to_the_same_bytes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            step in 1usize..64,
            with_trailer in any::<bool>(),
        ) {
            let mut t = HeaderMap::new();
            t.insert("x-digest", HeaderValue::from_static("abc"));
            let raw = encode(&chunks, with_trailer.then_some(&t));
            let (data, trailers, rest) = decode_in_steps(&raw, step).unwrap();
            prop_assert_eq!(data, chunks.concat());
            prop_assert_eq!(trailers, with_trailer.then_some(t));
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panic(raw in proptest::collection::vec(any::<u8>(), 0..200), step in 1usize..16) {
            let _ = decode_in_steps(&raw, step);
        }
    }
}
