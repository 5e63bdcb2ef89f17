//! A watch on the raw bytes of HTTP/1.1 requests, for the two ambiguous
//! shapes hyper accepts and then hides from the proxy: `Content-Length`
//! together with `Transfer-Encoding`, and bare-LF line endings in a request
//! head. hyper resolves both safely for itself, but a proxy must refuse them
//! (RFC 9112 §6.1, §2.2): they are how request smuggling starts.
//!
//! The guard follows message framing just far enough to find each request
//! head (skipping `Content-Length` and chunked bodies). When a head is
//! ambiguous it rewrites the head's closing empty line into a header line
//! that starts with NUL (`\0\r\n\r\n`) and ends the stream there, so hyper's
//! own parser refuses the request with 400 and closes the connection; nothing
//! of that request reaches the service, let alone Vaultwarden.
//! Anything it cannot follow (an upgrade, HTTP/2, a head hyper will refuse
//! anyway) turns it off: from then on hyper alone decides, as it would
//! without the guard.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longer heads are hyper's to refuse (431); the guard stops watching.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a request head (in [`Framing::line`]).
    Head,
    /// Inside a body of known length: this many bytes to skip.
    Fixed(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// No longer watching.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line (in [`Framing::line`]).
    Size,
    /// Skipping chunk data, then its CRLF.
    Data(u64),
    /// Skipping the CRLF (or LF) after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one (length of the
    /// current line).
    Trailers(usize),
}

/// The framing watcher, separate from I/O so it can be tested on bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    state: State,
    /// The head or chunk-size line being collected. One buffer, cleared and
    /// reused for every message on the connection: no allocation per request.
    line: Vec<u8>,
}

/// What a complete head said about the message behind it.
enum Verdict {
    /// Ambiguous: refuse.
    Refuse,
    /// Fine; the body (if any) is framed like this.
    Next(State),
}

impl Default for Framing {
    fn default() -> Self {
        Framing { state: State::Head, line: Vec::new() }
    }
}

impl Framing {
    /// Watches `bytes` (freshly read, in order). When they complete an
    /// ambiguous head, returns the offset of that head's last byte: the
    /// stream must end just before it.
    pub fn watch(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.state {
                State::Off => return None,
                State::Fixed(left) => {
                    let take = (*left).min((bytes.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left == 0 {
                        self.next(State::Head);
                    }
                }
                State::Head => {
                    // Empty lines before a request line are allowed and skipped.
                    if self.line.is_empty() && (bytes[i] == b'\r' || bytes[i] == b'\n') {
                        i += 1;
                        continue;
                    }
                    // Up to and including the next line end, in one piece.
                    let rest = &bytes[i..];
                    let take = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |at| at + 1);
                    self.line.extend_from_slice(&rest[..take]);
                    i += take;
                    let head = &self.line;
                    if head.len() > MAX_HEAD {
                        self.next(State::Off);
                    } else if head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n") {
                        match judge(head) {
                            Verdict::Refuse => {
                                self.next(State::Off);
                                return Some(i - 1);
                            }
                            Verdict::Next(next) => self.next(next),
                        }
                    }
                }
                State::Chunked(chunk) => {
                    let b = bytes[i];
                    match chunk {
                        Chunk::Data(left) => {
                            let take = (*left).min((bytes.len() - i) as u64);
                            *left -= take;
                            i += take as usize;
                            if *left == 0 {
                                *chunk = Chunk::DataEnd;
                            }
                            continue;
                        }
                        Chunk::DataEnd => {
                            if b == b'\n' {
                                *chunk = Chunk::Size;
                            }
                        }
                        Chunk::Size => {
                            let line = &mut self.line;
                            if b == b'\n' {
                                let text = String::from_utf8_lossy(line);
                                let digits =
                                    text.trim_end_matches('\r').split(';').next().unwrap_or("").trim();
                                let size = u64::from_str_radix(digits, 16);
                                line.clear();
                                match size {
                                    Ok(0) => *chunk = Chunk::Trailers(0),
                                    Ok(n) => *chunk = Chunk::Data(n),
                                    // hyper will refuse this body itself.
                                    Err(_) => self.next(State::Off),
                                }
                            } else if line.len() > 1024 {
                                self.next(State::Off);
                            } else {
                                line.push(b);
                            }
                        }
                        Chunk::Trailers(len) => {
                            if b == b'\n' {
                                if *len == 0 {
                                    self.state = State::Head;
                                } else {
                                    *len = 0;
                                }
                            } else if b != b'\r' {
                                *len += 1;
                            }
                        }
                    }
                    i += 1;
                }
            }
        }
        None
    }

    /// Moves on to `state` with an empty line buffer. A buffer grown by an
    /// unusually long head is given back; once the guard is off it is freed.
    fn next(&mut self, state: State) {
        self.state = state;
        if state == State::Off || self.line.capacity() > KEEP_LINE {
            self.line = Vec::new();
        } else {
            self.line.clear();
        }
    }
}

/// Line buffer capacity kept between requests: ordinary heads fit.
const KEEP_LINE: usize = 4096;

/// Reads a complete request head for the two shapes hyper would accept.
fn judge(head: &[u8]) -> Verdict {
    if head.starts_with(b"PRI * HTTP/2.0") {
        return Verdict::Next(State::Off); // HTTP/2 with prior knowledge
    }
    let bare_lf = head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    if bare_lf {
        return Verdict::Refuse;
    }
    // Every line ends in CRLF now; read them as bytes, nothing copied.
    let mut lines = head.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or(b"");
    let (mut content_length, mut chunked, mut transfer_encoding) = (None, false, false);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let length = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
            content_length = content_length.or(Some(length));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            // After an upgrade the bytes are not HTTP any more.
            return Verdict::Next(State::Off);
        }
    }
    if transfer_encoding && content_length.is_some() {
        return Verdict::Refuse;
    }
    if request_line.starts_with(b"CONNECT ") {
        return Verdict::Next(State::Off);
    }
    Verdict::Next(match (transfer_encoding, content_length) {
        (true, _) if chunked => State::Chunked(Chunk::Size),
        // Not chunked last, or a bad length: hyper refuses the request.
        (true, _) | (false, Some(None)) => State::Off,
        (false, Some(Some(0))) | (false, None) => State::Head,
        (false, Some(Some(n))) => State::Fixed(n),
    })
}

/// An I/O stream whose reads pass through a [`Framing`] watch.
pub struct H1Guard<IO> {
    inner: IO,
    framing: Framing,
    /// Once a head was refused: the poison bytes still to hand out, after
    /// which reads end (EOF).
    refused: Option<&'static [u8]>,
}

impl<IO> H1Guard<IO> {
    pub fn new(inner: IO) -> Self {
        H1Guard { inner, framing: Framing::default(), refused: None }
    }
}

/// What replaces a refused head's closing empty line: a header line hyper's
/// parser rejects (400), then a proper end of head.
const POISON: &[u8] = b"\0\r\n\r\n";

impl<IO: AsyncRead + Unpin> AsyncRead for H1Guard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(poison) = self.refused {
            let n = poison.len().min(buf.remaining());
            buf.put_slice(&poison[..n]);
            self.refused = Some(&poison[n..]);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if let Some(last) = self.framing.watch(&buf.filled()[before..]) {
                tracing::warn!(
                    "refused an ambiguous request head (Content-Length with Transfer-Encoding, or bare LF)"
                );
                // Drop the closing empty line (`\r\n` or a bare `\n`) and
                // what follows; the poison takes its place.
                let fresh = &buf.filled()[before..];
                let empty_line = if last > 0 && fresh[last - 1] == b'\r' { last - 1 } else { last };
                buf.set_filled(before + empty_line);
                let n = POISON.len().min(buf.remaining());
                buf.put_slice(&POISON[..n]);
                self.refused = Some(&POISON[n..]);
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for H1Guard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns what hyper would read
    /// and whether the guard refused something.
    fn feed(input: &[u8], step: usize) -> (Vec<u8>, bool) {
        let mut framing = Framing::default();
        let mut out = Vec::new();
        for chunk in input.chunks(step) {
            if let Some(at) = framing.watch(chunk) {
                out.extend_from_slice(&chunk[..at]);
                return (out, true);
            }
            out.extend_from_slice(chunk);
        }
        (out, false)
    }

    fn refused(input: &[u8]) -> bool {
        let whole = feed(input, input.len().max(1)).1;
        for step in [1, 2, 3, 7] {
            assert_eq!(feed(input, step).1, whole, "split every {step} bytes");
        }
        whole
    }

    #[test]
    fn one_line_buffer_serves_every_request_and_a_long_head_gives_its_growth_back() {
        let mut framing = Framing::default();
        for _ in 0..3 {
            assert_eq!(framing.watch(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"), None);
            assert!(framing.line.is_empty() && framing.state == State::Head);
        }
        let capacity = framing.line.capacity();
        assert_eq!(framing.watch(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(framing.line.capacity(), capacity, "reused, not reallocated");
        let long = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "x".repeat(20_000));
        assert_eq!(framing.watch(long.as_bytes()), None);
        assert!(framing.line.capacity() <= KEEP_LINE);
        assert_eq!(framing.watch(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), None);
        assert_eq!((framing.state, framing.line.capacity()), (State::Off, 0));
    }

    #[test]
    fn ordinary_traffic_passes_untouched() {
        let traffic: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab\n\ncGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\n\n\n\n\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /notifications/hub HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\x81\x02\n\n",
        ];
        for t in traffic {
            let (out, refused) = feed(t, 3);
            assert!(!refused, "{:?}", String::from_utf8_lossy(t));
            assert_eq!(&out, t);
        }
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        assert!(refused(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(refused(
            b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n"
        ));
        // Also when it comes after an ordinary request on the same connection.
        assert!(refused(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn bare_lf_in_a_head_is_refused() {
        assert!(refused(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nHost: a\r\n\n"));
    }

    #[test]
    fn the_stream_ends_just_before_the_heads_last_byte() {
        for step in [1, 4, 100] {
            let (out, refused) = feed(b"GET / HTTP/1.1\nHost: a\n\nGET /next", step);
            assert!(refused);
            assert_eq!(out, b"GET / HTTP/1.1\nHost: a\n", "step {step}");
        }
    }

    #[tokio::test]
    async fn a_refused_head_ends_in_a_line_hyper_rejects_and_then_eof() {
        use tokio::io::AsyncReadExt;
        for input in [
            &b"GET / HTTP/1.1\nHost: a\n\nGET /next HTTP/1.1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ] {
            // Small reads too: the poison must survive a full buffer.
            let mut guarded = tokio::io::BufReader::with_capacity(7, H1Guard::new(input));
            let mut seen = Vec::new();
            guarded.read_to_end(&mut seen).await.unwrap();
            let head_end = input.windows(2).position(|w| w == b"\n\n" || w == b"\n\r").unwrap() + 1;
            assert_eq!(&seen[..head_end], &input[..head_end]);
            assert_eq!(&seen[head_end..], b"\0\r\n\r\n", "{:?}", String::from_utf8_lossy(&seen));
        }
    }

    #[test]
    fn what_hyper_refuses_itself_switches_the_guard_off() {
        // A bad chunk size: hyper answers 400; the guard stops watching.
        let (_, refused) =
            feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\nX\n\n", 5);
        assert!(!refused);
        // HTTP/2 prior knowledge.
        assert!(!feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\n\n", 3).1);
    }
}
