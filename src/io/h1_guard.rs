//! A watch on the raw bytes of HTTP/1.1 requests, under hyper's parser, for
//! what hyper accepts and then hides from the proxy: `Content-Length`
//! together with `Transfer-Encoding`, bare-LF line endings, overlong header
//! lines, and chunked bodies whose framing a lenient peer could read
//! differently (bare LF in trailers, long chunk extensions).
//!
//! The guard follows message framing byte for byte as hyper 1.12 does
//! (`proto/h1/decode.rs`): it finds every request head and steps through
//! every `Content-Length` and chunked body. It never stops watching while
//! hyper can still parse a request on the connection. Wherever it cannot be
//! sure it reads the bytes as hyper will, it refuses:
//!
//! - in a head: the head is cut and ends in a line hyper's own parser
//!   rejects (400, or 431 for an overlong line), then the stream ends; hyper
//!   answers and closes, and nothing of that request reaches the service;
//! - in a body: the stream ends before the offending byte; hyper fails the
//!   body ("unexpected EOF"), the proxy aborts the upstream request
//!   (never completed) and answers 400 with `Connection: close`.
//!
//! The one place it stops watching is the end of a request hyper treats as
//! an upgrade (any `Upgrade` header, or `CONNECT`): after it come either
//! tunnel bytes (a 101) or nothing hyper will parse, because the proxy closes
//! the connection after every other answer to such a request
//! ([`close_unless_switched`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A backstop: a head this long is well past hyper's read buffer
/// (`max_buf_size` in `server/conn.rs`, 64 KiB), which refuses it first with its
/// own status (414 or 431). Should hyper not have, the guard hands it these
/// bytes and then ends the stream.
const MAX_HEAD: usize = 128 * 1024;

/// Chunk-extension bytes allowed in one body (hyper allows 16 KiB; no
/// Bitwarden client sends any).
const MAX_EXTENSIONS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a request head (in [`Framing::line`]).
    Head,
    /// Inside a body of known length: this many bytes to skip.
    Fixed(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// After an upgrade request: no longer watching (see the module docs).
    Off,
}

/// Where hyper's chunked decoder is; the names follow its `ChunkedState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The first hex digit of a size.
    Start,
    /// More hex digits, then whitespace, `;` or CR.
    Size,
    /// Whitespace after the size: more of it, `;` or CR.
    SizeLws,
    /// A chunk extension, up to CR.
    Extension,
    /// The LF of a chunk-size line.
    SizeLf,
    /// Chunk data: this many bytes to skip.
    Data(u64),
    /// The CR, then the LF, after chunk data.
    DataCr,
    DataLf,
    /// After the last chunk: CR (end of body) or the start of a trailer.
    EndCr,
    /// The LF ending the body.
    EndLf,
    /// A trailer line (its length so far), up to CR.
    Trailer(usize),
    /// The LF of a trailer line.
    TrailerLf,
}

/// The framing watcher, separate from I/O so it can be tested on bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    state: State,
    /// The head being collected. One buffer, cleared and reused for every
    /// message on the connection: no allocation per request.
    line: Vec<u8>,
    /// Where the current line of the head starts in `line`.
    line_start: usize,
    /// Longest header (or trailer) line allowed, without its line ending.
    max_line: usize,
    /// The chunk size being read.
    size: u64,
    /// Chunk-extension bytes in this body so far.
    extensions: usize,
    /// The request being read asks for an upgrade: stop watching after it.
    upgrade: bool,
}

/// Refuse the bytes of one read from `keep` on: hyper gets `poison` after
/// them, then the end of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub keep: usize,
    pub poison: &'static [u8],
    pub why: &'static str,
}

/// What replaces a refused head's closing empty line: a header line hyper's
/// parser rejects (400), then a proper end of head.
const POISON_400: &[u8] = b"\0\r\n\r\n";

/// What follows the cut of an overlong header line: the line ends (a colon
/// first, so that even a bare name is a well-formed field), then more header
/// lines than hyper takes (`max_headers`, 100): its parser refuses the head
/// with 431.
static POISON_431: [u8; 3 + 4 * 512 + 2] = {
    let mut p = [0u8; 3 + 4 * 512 + 2];
    p[0] = b':';
    p[1] = b'\r';
    p[2] = b'\n';
    let mut i = 3;
    while i < 3 + 4 * 512 {
        p[i] = b'a';
        p[i + 1] = b':';
        p[i + 2] = b'\r';
        p[i + 3] = b'\n';
        i += 4;
    }
    p[i] = b'\r';
    p[i + 1] = b'\n';
    p
};

/// What a complete head said about the message behind it.
enum Verdict {
    /// Ambiguous: refuse.
    Refuse(&'static str),
    /// Fine; the body (if any) is framed like this.
    Next { body: State, upgrade: bool },
}

impl Default for Framing {
    fn default() -> Self {
        Framing::new(8 * 1024)
    }
}

impl Framing {
    /// A watch refusing header and trailer lines longer than `max_line`
    /// bytes (without the line ending).
    pub fn new(max_line: usize) -> Self {
        Framing {
            state: State::Head,
            line: Vec::new(),
            line_start: 0,
            max_line,
            size: 0,
            extensions: 0,
            upgrade: false,
        }
    }

    /// Watches `bytes` (freshly read, in order). Returns where and how to
    /// refuse them, if they must be.
    pub fn watch(&mut self, bytes: &[u8]) -> Option<Refusal> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Off => return None,
                State::Fixed(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    if left == take {
                        self.end_of_message();
                    } else {
                        self.state = State::Fixed(left - take);
                    }
                }
                State::Head => {
                    // Empty lines before a request line are skipped (httparse
                    // does too, and refuses a CR without its LF itself).
                    if self.line.is_empty() && (bytes[i] == b'\r' || bytes[i] == b'\n') {
                        i += 1;
                        continue;
                    }
                    // Up to and including the next line end, in one piece.
                    let rest = &bytes[i..];
                    let end = memchr::memchr(b'\n', rest);
                    let take = end.map_or(rest.len(), |at| at + 1);
                    self.line.extend_from_slice(&rest[..take]);
                    i += take;
                    let current = &self.line[self.line_start..];
                    let mut content = current;
                    if end.is_some() {
                        content = &content[..content.len() - 1];
                    }
                    if let [before @ .., b'\r'] = content {
                        content = before;
                    }
                    // The request line is hyper's (414 past its buffer).
                    if self.line_start > 0 && content.len() > self.max_line {
                        let ending = (current.len() - content.len()).min(take);
                        self.next(State::Head);
                        return Some(Refusal {
                            keep: i - ending,
                            poison: &POISON_431,
                            why: "a header line longer than limits.max_header_line",
                        });
                    }
                    let head_done = end.is_some() && content.is_empty();
                    if !head_done && self.line.len() >= MAX_HEAD {
                        self.next(State::Head);
                        return Some(Refusal { keep: i, poison: b"", why: "a request head over 128 KiB" });
                    }
                    if end.is_none() {
                        continue;
                    }
                    if !content.is_empty() {
                        self.line_start = self.line.len();
                        continue;
                    }
                    // The closing empty line (`\r\n` or `\n`), as far as it is
                    // in this read: on a refusal the poison takes its place.
                    let empty_line = current.len().min(take);
                    match judge(&self.line) {
                        Verdict::Refuse(why) => {
                            self.next(State::Head);
                            return Some(Refusal { keep: i - empty_line, poison: POISON_400, why });
                        }
                        Verdict::Next { body, upgrade } => {
                            self.next(body);
                            self.upgrade = upgrade;
                            if body == State::Head {
                                self.end_of_message();
                            }
                        }
                    }
                }
                State::Chunked(Chunk::Data(left)) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    self.state =
                        State::Chunked(if left == take { Chunk::DataCr } else { Chunk::Data(left - take) });
                }
                State::Chunked(chunk) => {
                    match self.chunk_byte(chunk, bytes[i]) {
                        Ok(Some(next)) => self.state = State::Chunked(next),
                        Ok(None) => self.end_of_message(),
                        Err(why) => {
                            self.next(State::Head);
                            return Some(Refusal { keep: i, poison: b"", why });
                        }
                    }
                    i += 1;
                }
            }
        }
        None
    }

    /// One byte of chunked framing outside chunk data: the next step, `None`
    /// at the end of the body, or why it is refused. Everything hyper's
    /// decoder refuses is refused here too (before hyper sees it), and a
    /// little more: a bare LF anywhere (hyper takes it as part of a trailer
    /// line), more than [`MAX_EXTENSIONS`] bytes of extensions, a trailer
    /// line over the header-line limit.
    fn chunk_byte(&mut self, chunk: Chunk, b: u8) -> Result<Option<Chunk>, &'static str> {
        let hex = match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        };
        Ok(Some(match (chunk, b) {
            (Chunk::Start, _) => {
                self.size = u64::from(hex.ok_or("a chunk size that is not hex")?);
                Chunk::Size
            }
            (Chunk::Size, _) if hex.is_some() => {
                let digit = u64::from(hex.unwrap_or(0));
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or("a chunk size over 64 bits")?;
                Chunk::Size
            }
            (Chunk::Size | Chunk::SizeLws, b' ' | b'\t') => Chunk::SizeLws,
            (Chunk::Size | Chunk::SizeLws, b';') => Chunk::Extension,
            (Chunk::Size | Chunk::SizeLws | Chunk::Extension, b'\r') => Chunk::SizeLf,
            (Chunk::Extension, b'\n') => return Err("a bare LF in a chunk extension"),
            (Chunk::Extension, _) => {
                self.extensions += 1;
                if self.extensions > MAX_EXTENSIONS {
                    return Err("chunk extensions over 1 KiB");
                }
                Chunk::Extension
            }
            (Chunk::SizeLf, b'\n') if self.size == 0 => Chunk::EndCr,
            (Chunk::SizeLf, b'\n') => Chunk::Data(self.size),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Start,
            (Chunk::EndCr, b'\r') => Chunk::EndLf,
            (Chunk::EndLf, b'\n') => return Ok(None),
            (Chunk::EndCr | Chunk::Trailer(_), b'\n') => return Err("a bare LF in a trailer"),
            (Chunk::EndCr, _) => Chunk::Trailer(1),
            (Chunk::Trailer(_), b'\r') => Chunk::TrailerLf,
            (Chunk::Trailer(len), _) => {
                if len >= self.max_line {
                    return Err("a trailer line longer than limits.max_header_line");
                }
                Chunk::Trailer(len + 1)
            }
            (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
            (Chunk::Size | Chunk::SizeLws, _) => return Err("a malformed chunk-size line"),
            (Chunk::SizeLf | Chunk::DataLf | Chunk::EndLf | Chunk::TrailerLf, _) => {
                return Err("a CR without its LF in chunked framing")
            }
            (Chunk::DataCr, _) => return Err("chunk data not followed by CRLF"),
            (Chunk::Data(_), _) => unreachable!("chunk data is skipped in bulk"),
        }))
    }

    /// A message has ended: the next head, or, after an upgrade request,
    /// nothing more to watch.
    fn end_of_message(&mut self) {
        self.next(if self.upgrade { State::Off } else { State::Head });
    }

    /// Moves on to `state` with an empty line buffer. A buffer grown by an
    /// unusually long head is given back; once the guard is off it is freed.
    fn next(&mut self, state: State) {
        self.state = state;
        self.line_start = 0;
        self.size = 0;
        if matches!(state, State::Head | State::Off) {
            self.extensions = 0;
            self.upgrade = false;
        }
        if state == State::Off || self.line.capacity() > KEEP_LINE {
            self.line = Vec::new();
        } else {
            self.line.clear();
        }
    }
}

/// Line buffer capacity kept between requests: ordinary heads fit.
const KEEP_LINE: usize = 4096;

/// Reads a complete request head for the shapes hyper would accept.
fn judge(head: &[u8]) -> Verdict {
    let bare_lf = memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r');
    if bare_lf {
        return Verdict::Refuse("a bare LF in a request head");
    }
    // Every line ends in CRLF now; read them as bytes, nothing copied.
    let mut lines = lines(head).map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or(b"");
    if request_line.starts_with(b"PRI * HTTP/2.0") {
        return Verdict::Refuse("the HTTP/2 preface on an HTTP/1.1 connection");
    }
    // hyper: a CONNECT, or any `Upgrade` header, asks for an upgrade.
    let mut upgrade = request_line.starts_with(b"CONNECT ");
    let (mut content_length, mut chunked, mut transfer_encoding) = (None, false, false);
    for line in lines {
        let Some(colon) = memchr::memchr(b':', line) else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // As hyper: the last `Transfer-Encoding` line decides.
            transfer_encoding = true;
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // hyper takes digits only and refuses differing repeats.
            let digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
            let length =
                std::str::from_utf8(value).ok().filter(|_| digits).and_then(|v| v.parse::<u64>().ok());
            match (length, content_length) {
                (None, _) => return Verdict::Refuse("a malformed Content-Length"),
                (Some(n), Some(m)) if n != m => return Verdict::Refuse("differing Content-Length"),
                (Some(n), _) => content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    if transfer_encoding && content_length.is_some() {
        return Verdict::Refuse("Content-Length with Transfer-Encoding");
    }
    let body = match (transfer_encoding, content_length) {
        (true, _) if chunked => State::Chunked(Chunk::Start),
        (true, _) => return Verdict::Refuse("a Transfer-Encoding that does not end in chunked"),
        (false, Some(0) | None) => State::Head,
        (false, Some(n)) => State::Fixed(n),
    };
    Verdict::Next { body, upgrade }
}

/// `head` split at each LF (the LFs left out), as `split` would, but found
/// with a SIMD search rather than a test per byte.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', head).map(Some).chain([None]).map(move |end| {
        let line = &head[start..end.unwrap_or(head.len())];
        start = end.map_or(head.len(), |e| e + 1);
        line
    })
}

/// Whether hyper will treat `req` as an upgrade (HTTP/1.x only): the guard
/// stops watching after it, so every answer but a 101 must close the
/// connection ([`close_unless_switched`]).
pub fn asks_upgrade<B>(req: &Request<B>) -> bool {
    req.version() < Version::HTTP_2
        && (req.method() == http::Method::CONNECT || req.headers().contains_key(header::UPGRADE))
}

/// After a request that [`asks_upgrade`], any answer but a 101 closes the
/// connection: hyper would otherwise read further (pipelined) requests that
/// the guard no longer watches.
pub fn close_unless_switched<B>(upgrade: bool, resp: &mut Response<B>) {
    if upgrade && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// An I/O stream whose reads pass through a [`Framing`] watch.
pub struct H1Guard<IO> {
    inner: IO,
    framing: Framing,
    /// Once something was refused: the poison bytes still to hand out, after
    /// which reads end (EOF).
    refused: Option<&'static [u8]>,
}

impl<IO> H1Guard<IO> {
    /// Watches `inner`, refusing header lines over `max_header_line` bytes.
    pub fn new(inner: IO, max_header_line: usize) -> Self {
        H1Guard { inner, framing: Framing::new(max_header_line), refused: None }
    }
}

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
            if let Some(refusal) = self.framing.watch(&buf.filled()[before..]) {
                tracing::warn!("refused a request: {}", refusal.why);
                buf.set_filled(before + refusal.keep);
                let n = refusal.poison.len().min(buf.remaining());
                buf.put_slice(&refusal.poison[..n]);
                self.refused = Some(&refusal.poison[n..]);
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

    proptest::proptest! {
        #[test]
        fn lines_are_what_split_gives(head in proptest::collection::vec(proptest::sample::select(b"a:\r\n".to_vec()), 0..64)) {
            let split: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
            proptest::prop_assert_eq!(lines(&head).collect::<Vec<_>>(), split);
        }
    }

    /// Feeds `input` in pieces of `step` bytes; returns what hyper would read
    /// (kept bytes, then the poison) and why the guard refused, if it did.
    fn feed(input: &[u8], step: usize) -> (Vec<u8>, Option<&'static str>) {
        let mut framing = Framing::default();
        let mut out = Vec::new();
        for chunk in input.chunks(step) {
            if let Some(r) = framing.watch(chunk) {
                out.extend_from_slice(&chunk[..r.keep]);
                out.extend_from_slice(r.poison);
                return (out, Some(r.why));
            }
            out.extend_from_slice(chunk);
        }
        (out, None)
    }

    /// Why `input` is refused (the same however it is split), if it is. (What
    /// hyper reads may differ: a CR already handed over stays.)
    fn refusal(input: &[u8]) -> Option<&'static str> {
        let whole = feed(input, input.len().max(1)).1;
        for step in [1, 2, 3, 7] {
            assert_eq!(feed(input, step).1, whole, "split every {step} bytes");
        }
        whole
    }

    fn refused(input: &[u8]) -> bool {
        refusal(input).is_some()
    }

    const CHUNKED: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn chunked(body: &[u8]) -> Vec<u8> {
        [CHUNKED, body].concat()
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
        let long = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "x".repeat(8000));
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
            // What hyper accepts in a chunk-size line: leading zeros, upper
            // case, whitespace before the CRLF or the extension.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000000000000003\r\nabc\r\nA \t\r\n0123456789\r\n1 ;e\r\nx\r\n000\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET /notifications/hub HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\x81\x02\n\n",
            // An upgrade request's own body is watched, then the guard steps aside.
            b"POST /x HTTP/1.1\r\nUpgrade: y\r\nContent-Length: 2\r\n\r\nok\n\n\x00",
        ];
        for t in traffic {
            let (out, refused) = feed(t, 3);
            assert_eq!(refused, None, "{:?}", String::from_utf8_lossy(t));
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
        // And on an upgrade request: the guard reads the whole head first.
        assert!(refused(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn lengths_hyper_would_refuse_are_refused_not_followed() {
        for cl in ["+3", "3, 3", "0x3", "", "-1", "99999999999999999999999"] {
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nabc");
            assert_eq!(refusal(head.as_bytes()), Some("a malformed Content-Length"), "{cl:?}");
        }
        assert!(refused(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"));
        assert!(refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"));
        assert!(refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    }

    #[test]
    fn bare_lf_in_a_head_is_refused() {
        assert!(refused(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nHost: a\r\n\n"));
    }

    #[test]
    fn a_refused_head_loses_its_closing_empty_line_to_the_poison() {
        for step in [1, 4, 100] {
            let (out, refused) = feed(b"GET / HTTP/1.1\nHost: a\n\nGET /next", step);
            assert!(refused.is_some());
            assert_eq!(out, b"GET / HTTP/1.1\nHost: a\n\0\r\n\r\n", "step {step}");
        }
    }

    #[test]
    fn an_overlong_header_line_is_cut_as_soon_as_it_is_too_long_and_ends_in_431_poison() {
        let limit = 8 * 1024;
        let ok = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(limit - 3));
        assert!(!refused(ok.as_bytes()), "exactly the limit");
        // The request line is not a header line.
        assert!(!refused(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3 * limit)).as_bytes()));
        for long in [
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(limit - 2)),
            format!("GET / HTTP/1.1\r\nCookie: {}\r\n\r\n", "v".repeat(60_000)),
            format!("GET / HTTP/1.1\r\n{}", "N".repeat(limit + 1)),
            format!("GET / HTTP/1.1\r\nX: {}\n\n", "v".repeat(limit)),
        ] {
            for step in [1, 7, 1000, long.len()] {
                let (out, why) = feed(long.as_bytes(), step);
                assert_eq!(why, Some("a header line longer than limits.max_header_line"));
                let cut = out.len() - POISON_431.len();
                assert_eq!(&out[cut..], &POISON_431[..]);
                // Cut within the limit plus one read, never at a CR.
                assert!(cut <= 16 + limit + step, "step {step}: {cut}");
                assert_ne!(out[cut - 1], b'\r');
                assert!(!out[..cut].ends_with(b"\n"), "mid-line: {:?}", &out[cut - 4..cut]);
            }
        }
        // A limit of one's own.
        let mut framing = Framing::new(300);
        assert!(framing
            .watch(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(298)).as_bytes())
            .is_some());
    }

    #[test]
    fn a_head_past_hypers_buffer_is_handed_over_and_the_stream_ends() {
        let huge = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(200_000));
        let (out, why) = feed(huge.as_bytes(), 4096);
        assert_eq!(why, Some("a request head over 128 KiB"));
        assert_eq!(out.len(), MAX_HEAD);
        // Many lines, each short: the head is still bounded.
        let many = format!("GET / HTTP/1.1\r\n{}", "X: v\r\n".repeat(40_000));
        assert_eq!(feed(many.as_bytes(), 1000).1, Some("a request head over 128 KiB"));
        // Also when every read ends at a line end.
        let mut framing = Framing::default();
        framing.watch(b"GET / HTTP/1.1\r\n");
        let refused = (0..40_000).find_map(|_| framing.watch(b"X: v\r\n"));
        assert_eq!(refused.map(|r| r.why), Some("a request head over 128 KiB"));
        assert!(framing.line.capacity() <= KEEP_LINE);
    }

    #[test]
    fn a_bare_lf_in_a_trailer_is_refused_before_hyper_skips_differently() {
        // hyper ends trailer lines only at CR: `X: a\n` is part of a line, so
        // it reads `Y: z` and `Content-Length: 60` as trailers and then the
        // next request; the old guard read a head there and skipped 60 bytes.
        let attack = chunked(
            b"0\r\nX: a\n\r\nY: z\r\nContent-Length: 60\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(refusal(&attack), Some("a bare LF in a trailer"));
        let (out, _) = feed(&attack, attack.len());
        assert_eq!(out, chunked(b"0\r\nX: a"), "cut before the LF, then the end of the stream");
        assert!(refused(&chunked(b"0\r\n\n")));
        assert!(refused(&chunked(b"0\r\nX: a\r\n\n")));
    }

    #[test]
    fn chunked_framing_is_followed_exactly_as_hyper_does_and_the_rest_refused() {
        let bad: &[(&[u8], &str)] = &[
            (b"zz\r\n", "a chunk size that is not hex"),
            (b" 5\r\nhello\r\n0\r\n\r\n", "a chunk size that is not hex"),
            (b"0x5\r\nhello\r\n0\r\n\r\n", "a malformed chunk-size line"),
            (b"5 5\r\nhello\r\n", "a malformed chunk-size line"),
            (b"5\nhello\r\n0\r\n\r\n", "a malformed chunk-size line"),
            (b"5;a\nhello\r\n", "a bare LF in a chunk extension"),
            (b"5\r\r\nhello\r\n", "a CR without its LF in chunked framing"),
            (b"ffffffffffffffffff\r\nx\r\n", "a chunk size over 64 bits"),
            (b"5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"5\r\nhello\r0\r\n\r\n", "a CR without its LF in chunked framing"),
            (b"0\r\n\r0", "a CR without its LF in chunked framing"),
        ];
        for (body, why) in bad {
            assert_eq!(refusal(&chunked(body)), Some(*why), "{:?}", String::from_utf8_lossy(body));
        }
        // Sizes up to 64 bits are hyper's to take (and the body limit's to cut).
        assert!(!refused(&chunked(b"ffffffffffffffff\r\nabc")));
        assert!(!refused(&chunked(
            b"0000000000000000000000000000000000000000000000000001\r\nx\r\n0\r\n\r\n"
        )));
    }

    #[test]
    fn chunk_extensions_over_1_kib_per_body_are_refused_not_unwatched() {
        let one = format!("1;{}\r\nx\r\n", "e".repeat(MAX_EXTENSIONS));
        assert!(!refused(&chunked(format!("{one}0\r\n\r\n").as_bytes())));
        // The old guard switched off at a 1 KiB line; hyper took it (16 KiB).
        let long = format!("1;{}\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\nX: y\n\n", "e".repeat(2000));
        assert_eq!(refusal(&chunked(long.as_bytes())), Some("chunk extensions over 1 KiB"));
        let spread = format!("{one}1;e\r\nx\r\n0\r\n\r\n");
        assert_eq!(refusal(&chunked(spread.as_bytes())), Some("chunk extensions over 1 KiB"));
        // Counted per body: the next request starts afresh.
        let two = format!("{one}0\r\n\r\n{}{one}0\r\n\r\n", String::from_utf8_lossy(CHUNKED));
        assert!(!refused(&chunked(two.as_bytes())));
    }

    #[test]
    fn a_trailer_line_over_the_limit_is_refused() {
        let ok = format!("0\r\nT: {}\r\n\r\n", "v".repeat(8 * 1024 - 3));
        assert!(!refused(&chunked(ok.as_bytes())));
        let long = format!("0\r\nT: {}\r\n\r\n", "v".repeat(8 * 1024 - 2));
        assert_eq!(
            refusal(&chunked(long.as_bytes())),
            Some("a trailer line longer than limits.max_header_line")
        );
    }

    #[test]
    fn a_refusal_mid_body_ends_the_stream_before_the_offending_byte() {
        let (out, why) = feed(&chunked(b"5\r\nhelloXXGET /smuggled HTTP/1.1\r\n\r\n"), 4);
        assert!(why.is_some());
        assert_eq!(out, chunked(b"5\r\nhello"));
    }

    #[test]
    fn after_an_upgrade_request_and_its_body_the_guard_steps_aside() {
        for head in [
            &b"GET /x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"[..],
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            b"POST /x HTTP/1.1\r\nupgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        ] {
            let mut framing = Framing::default();
            assert_eq!(framing.watch(head), None);
            assert_eq!(framing.state, State::Off, "{:?}", String::from_utf8_lossy(head));
        }
        // Not before its body has ended.
        let mut framing = Framing::default();
        framing.watch(b"POST /x HTTP/1.1\r\nUpgrade: y\r\nContent-Length: 5\r\n\r\nab");
        assert_eq!(framing.state, State::Fixed(3));
        // An ordinary request after one does not inherit it.
        let mut framing = Framing::default();
        framing.watch(b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1\r\n\r\n");
        assert_eq!(framing.state, State::Head);
    }

    #[test]
    fn only_a_101_keeps_an_upgrade_requests_connection_open() {
        let req = |method: &str, upgrade: bool, version| {
            let mut r = Request::builder().method(method).uri("/").version(version);
            if upgrade {
                r = r.header("upgrade", "websocket");
            }
            r.body(()).unwrap()
        };
        assert!(asks_upgrade(&req("GET", true, Version::HTTP_11)));
        assert!(asks_upgrade(&req("CONNECT", false, Version::HTTP_11)));
        assert!(!asks_upgrade(&req("GET", false, Version::HTTP_11)));
        assert!(!asks_upgrade(&req("CONNECT", false, Version::HTTP_2)), "HTTP/2 has no Connection");
        for (status, upgrade, closes) in
            [(101, true, false), (200, true, true), (404, true, true), (200, false, false)]
        {
            let mut resp = Response::builder().status(status).body(()).unwrap();
            close_unless_switched(upgrade, &mut resp);
            assert_eq!(resp.headers().get("connection").is_some(), closes, "{status} {upgrade}");
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
            let mut guarded = tokio::io::BufReader::with_capacity(7, H1Guard::new(input, 8192));
            let mut seen = Vec::new();
            guarded.read_to_end(&mut seen).await.unwrap();
            let head_end = input.windows(2).position(|w| w == b"\n\n" || w == b"\n\r").unwrap() + 1;
            assert_eq!(&seen[..head_end], &input[..head_end]);
            assert_eq!(&seen[head_end..], b"\0\r\n\r\n", "{:?}", String::from_utf8_lossy(&seen));
        }
    }
}
