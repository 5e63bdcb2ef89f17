//! One request and its answer over an HTTP/1.1 connection to Vaultwarden:
//! the head written, the body streamed (with its length, or chunked), the
//! answer's head read while the body is still going, and the answer's body
//! read by the client's own task as the client takes it.
//!
//! Our own rather than hyper's client: hyper's runs each connection in a
//! task of its own and hands every request and answer across channels
//! (three tasks and their wake-ups per request, 12.4k instructions, and the
//! cache lines of a second HTTP/1.1 state machine: BENCHMARKS.md). Here the
//! request's task does the system calls itself. The wire rules are in the
//! pure `http::response_head` and `http::chunked`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body::{BoxError, ProxyBody};
use super::pool::{Conn, Idle};
use crate::http::chunked::{self, Decoded, Decoder};
use crate::http::headers;
use crate::http::request_head::{self, Sending};
use crate::http::response_head::{self, Framing, Head};

/// A request as it goes to Vaultwarden: its head in bytes and what the
/// exchange must know of it.
pub struct Outgoing {
    head: Vec<u8>,
    sending: Sending,
    /// The answer has no body whatever its head says.
    head_request: bool,
    /// Safe to send again if a kept connection closed with no answer: GET,
    /// HEAD, OPTIONS (RFC 9110 §9.2.1). Not every idempotent method: a
    /// Bitwarden client's body-less DELETE of a cipher, run twice, answers
    /// 404 to a deletion that worked. Anything else goes again only if
    /// none of it could be written.
    safe: bool,
    /// How long a write of the body may wait for Vaultwarden to read.
    stall: Duration,
}

impl Outgoing {
    pub fn new(parts: &http::request::Parts, body_follows: bool, stall: Duration) -> Outgoing {
        let sending = Sending::of(parts, body_follows);
        Outgoing {
            head: request_head::encode(parts, sending),
            sending,
            head_request: parts.method == Method::HEAD,
            safe: parts.method.is_safe(),
            stall,
        }
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// A kept connection closed with nothing of an answer on it and nothing
    /// of the request body taken: the request may go again on another (the
    /// cause is Vaultwarden ending an idle connection, not worth a word).
    Unanswered,
    /// The client's body failed (too large, too slow, malformed).
    Body(BoxError),
    /// Vaultwarden's side failed.
    Upstream(BoxError),
}

/// What went wrong on Vaultwarden's side, in words for the log.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error("Vaultwarden closed the connection before answering")]
    ClosedBeforeAnswer,
    #[error("Vaultwarden closed the connection in the middle of the answer's body")]
    ClosedMidBody,
    #[error("more than {MAX_INFORMATIONAL} informational answers")]
    EndlessInformational,
    #[error("the request body is longer than its Content-Length")]
    BodyTooLong,
    #[error("the request body is shorter than its Content-Length")]
    BodyTooShort,
    #[error("Vaultwarden read none of the request body for {0:?}")]
    Stalled(Duration),
}

/// Whether `e` is Vaultwarden leaving the request body unread too long.
pub fn stalled(e: &BoxError) -> bool {
    matches!(e.downcast_ref::<Broken>(), Some(Broken::Stalled(_)))
}

/// The most 1xx heads skipped before the answer.
const MAX_INFORMATIONAL: usize = 8;

/// The first read of an answer, and how far later reads grow when they fill up.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

/// Sends `req` and `body` on `conn` and reads the answer's head. `reused`:
/// `conn` was kept from an earlier request. The answer's body, once read
/// to the end with the request sent whole, puts `conn` back into `idle`.
pub async fn exchange(
    mut conn: Conn,
    reused: bool,
    req: &Outgoing,
    body: Option<&mut ProxyBody>,
    idle: &Arc<Idle>,
) -> Result<Response<UpstreamBody>, Failure> {
    let mut progress = Progress::default();
    let mut sent: Option<Result<(), SendError>> = None;
    let answer = {
        let (mut rd, mut wr) = conn.tcp.split();
        let sending = send(&mut wr, req, body, &mut progress);
        let reading = read_head(&mut rd, &mut conn.buf, req.head_request);
        tokio::pin!(sending, reading);
        loop {
            tokio::select! {
                biased;
                answer = &mut reading => break answer,
                done = &mut sending, if sent.is_none() => match done {
                    // The client broke its body: nothing more to wait for.
                    Err(SendError::Body(e)) => return Err(Failure::Body(e)),
                    // Vaultwarden may have answered and closed (a refusal
                    // before the whole body), or stopped reading: an answer
                    // is still read, for as long as it may take.
                    Err(e) => {
                        sent = Some(Err(e));
                        match tokio::time::timeout(req.stall, &mut reading).await {
                            Ok(answer) => break answer,
                            Err(_) => break Err(ReadError { error: Broken::ClosedBeforeAnswer.into(), answered: false }),
                        }
                    }
                    Ok(()) => sent = Some(Ok(())),
                },
            }
        }
    };
    let head = match answer {
        Ok(head) => head,
        Err(e) => {
            let again = req.safe || !progress.head_written;
            if reused && !e.answered && !progress.body_taken && again {
                return Err(Failure::Unanswered);
            }
            return Err(Failure::Upstream(match sent {
                Some(Err(SendError::Write(w))) => w,
                _ => e.error,
            }));
        }
    };
    // An answer before the whole request went: the rest of the body is
    // not sent, and the connection goes with this request.
    let keep = head.keep_alive && matches!(sent, Some(Ok(())));
    let Head { status, headers, framing, .. } = head;
    let mut resp = Response::new(UpstreamBody::new(conn, framing, keep, idle));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

enum SendError {
    Write(BoxError),
    Body(BoxError),
}

/// How far a request got, for whether it may be sent again.
#[derive(Default)]
struct Progress {
    /// The whole head was handed to the system.
    head_written: bool,
    /// Some of the client's body was taken: it cannot be sent again.
    body_taken: bool,
}

/// Writes all of `buf` within `stall`.
async fn write_within<B: Buf>(
    wr: &mut tokio::net::tcp::WriteHalf<'_>,
    buf: &mut B,
    stall: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout(stall, wr.write_all_buf(buf)).await {
        Ok(written) => written.map_err(|e| SendError::Write(e.into())),
        Err(_) => Err(SendError::Write(Broken::Stalled(stall).into())),
    }
}

/// Writes the head, then the body as `req.sending` says.
async fn send(
    wr: &mut tokio::net::tcp::WriteHalf<'_>,
    req: &Outgoing,
    body: Option<&mut ProxyBody>,
    progress: &mut Progress,
) -> Result<(), SendError> {
    // A head nearly always fits the socket's empty send buffer at once: the
    // clock is started only for what does not.
    let taken = match wr.as_ref().try_write(&req.head) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(SendError::Write(e.into())),
    };
    if taken < req.head.len() {
        write_within(wr, &mut &req.head[taken..], req.stall).await?;
    }
    progress.head_written = true;
    let Some(body) = body else { return Ok(()) };
    let sending = req.sending;
    let mut sent: u64 = 0;
    let mut prefix = Vec::with_capacity(20);
    loop {
        progress.body_taken = true;
        let frame = match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(SendError::Body(e)),
            Some(Ok(frame)) => frame,
        };
        // Trailers are not passed on: hyper's client, before this one, sent
        // only those a `Trailer` field announced, and the proxy removes that
        // hop-by-hop field; RFC 9110 §6.5.1 forbids many fields there anyway.
        let Ok(data) = frame.into_data() else { break };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match sending {
            Sending::Length(n) if sent > n => return Err(SendError::Body(Broken::BodyTooLong.into())),
            Sending::Chunked => {
                prefix.clear();
                chunked::chunk_start(data.len(), &mut prefix);
                let mut out = Buf::chain(Buf::chain(&prefix[..], data), &b"\r\n"[..]);
                write_within(wr, &mut out, req.stall).await?;
            }
            _ => {
                let mut data = data;
                write_within(wr, &mut data, req.stall).await?;
            }
        }
    }
    match sending {
        Sending::Length(n) if sent < n => return Err(SendError::Body(Broken::BodyTooShort.into())),
        Sending::Chunked => write_within(wr, &mut &b"0\r\n\r\n"[..], req.stall).await?,
        _ => {}
    }
    Ok(())
}

struct ReadError {
    error: BoxError,
    /// Some of an answer came.
    answered: bool,
}

/// Reads the answer's head into `buf`, skipping informational ones; the
/// bytes after it stay in `buf`.
async fn read_head(
    rd: &mut tokio::net::tcp::ReadHalf<'_>,
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Head, ReadError> {
    let mut informational = 0;
    loop {
        if !buf.is_empty() {
            match response_head::parse(buf, head_request) {
                Ok(Some(head)) => {
                    if !head.status.is_informational() {
                        return Ok(head);
                    }
                    informational += 1;
                    if informational > MAX_INFORMATIONAL {
                        return Err(ReadError { error: Broken::EndlessInformational.into(), answered: true });
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(ReadError { error: e.into(), answered: true }),
            }
        }
        buf.reserve(FIRST_READ);
        match rd.read_buf(buf).await {
            Ok(0) => {
                let answered = !buf.is_empty() || informational > 0;
                return Err(ReadError { error: Broken::ClosedBeforeAnswer.into(), answered });
            }
            Ok(_) => {}
            Err(e) => {
                let answered = !buf.is_empty() || informational > 0;
                return Err(ReadError { error: e.into(), answered });
            }
        }
    }
}

enum Reading {
    Length(u64),
    Chunked(Decoder),
    UntilClose,
    Done,
}

/// An answer's body, read from its connection as the client takes it.
/// Read to the end (and the request sent whole), the connection goes back
/// to the idle stack; dropped before, it is closed with it.
pub struct UpstreamBody {
    conn: Option<Conn>,
    reading: Reading,
    keep: bool,
    idle: Arc<Idle>,
    read_size: usize,
}

impl UpstreamBody {
    fn new(conn: Conn, framing: Framing, keep: bool, idle: &Arc<Idle>) -> UpstreamBody {
        let reading = match framing {
            Framing::Empty | Framing::Length(0) => Reading::Done,
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(Decoder::default()),
            Framing::UntilClose => Reading::UntilClose,
        };
        let mut body =
            UpstreamBody { conn: Some(conn), reading, keep, idle: idle.clone(), read_size: FIRST_READ };
        if matches!(body.reading, Reading::Done) {
            body.finish();
        }
        body
    }

    /// The body is over, whole: its connection goes back if it may.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        if let Some(mut conn) = self.conn.take() {
            if self.keep {
                // Reads grown by a download leave a large allocation behind
                // the empty buffer: an idle connection does not keep it.
                if self.read_size > FIRST_READ {
                    conn.buf = BytesMut::new();
                }
                self.idle.put(conn);
            }
        }
    }

    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.reading = Reading::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }

    /// A frame from what is already buffered, if there is one.
    fn buffered(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        let conn = self.conn.as_mut()?;
        match &mut self.reading {
            Reading::Length(left) => {
                if conn.buf.is_empty() {
                    return None;
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(conn.buf.len());
                let data = conn.buf.split_to(take).freeze();
                *left -= take as u64;
                if *left == 0 {
                    self.finish();
                }
                Some(Ok(Frame::data(data)))
            }
            Reading::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                Ok(Decoded::More) => None,
                Ok(Decoded::Data(data)) => Some(Ok(Frame::data(data))),
                Ok(Decoded::End(trailers)) => {
                    self.finish();
                    trailers.map(|mut t| {
                        headers::sanitize_trailers(&mut t);
                        Ok(Frame::trailers(t))
                    })
                }
                Err(e) => Some(Err(e.into())),
            },
            Reading::UntilClose => (!conn.buf.is_empty()).then(|| Ok(Frame::data(conn.buf.split().freeze()))),
            Reading::Done => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match this.buffered() {
                Some(Err(e)) => return this.fail(e),
                Some(frame) => return Poll::Ready(Some(frame)),
                None => {}
            }
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            conn.buf.reserve(this.read_size);
            let room = conn.buf.capacity() - conn.buf.len();
            let read = match tokio_util::io::poll_read_buf(Pin::new(&mut conn.tcp), cx, &mut conn.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(read) => read,
            };
            match read {
                Err(e) => return this.fail(e.into()),
                Ok(0) => {
                    if matches!(this.reading, Reading::UntilClose) {
                        this.reading = Reading::Done;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    return this.fail(Broken::ClosedMidBody.into());
                }
                // A read that filled what was free: a large body, read in
                // larger pieces (fewer system calls and frames).
                Ok(n) if n >= room => this.read_size = (this.read_size * 2).min(MAX_READ),
                Ok(_) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(left) => SizeHint::with_exact(left),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
