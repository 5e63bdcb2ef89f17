//! The send-side timeout (nginx's `send_timeout`): a client that stops
//! taking what is sent to it is cut off, so that it cannot hold its slot and
//! an upstream connection for ever.
//!
//! "Stops taking" is measured where it shows, in two places:
//! - [`Progress`], under TLS on every client socket: a write the socket
//!   cannot take marks the connection as waiting on the client, any byte it
//!   takes clears that. As in nginx, the time counts between two writes,
//!   not for the whole response: a slow reader is never cut, a reader that
//!   stops is (HTTP/1.1 responses and pipelined requests behind them, HTTP/2
//!   connections, hub tunnels).
//! - [`Watched`], on each HTTP/2 response body: a stream whose client keeps
//!   its window shut while the connection itself flows. The body has handed
//!   out a frame and is not asked for the next one; frames are cut to
//!   [`MAX_FRAME`] so that asking again never waits on more than a little
//!   data. A slow upstream never counts: the body is being asked then.
//!
//! Both mark a shared [`SendWatch`]; [`Guarded`] wraps the future that
//! drives what is sent (a connection, one HTTP/2 stream, a tunnel) and drops
//! it, with everything it holds, once the client has been waited on for
//! longer than the limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The largest data frame [`Watched`] hands out at once.
pub const MAX_FRAME: usize = 16 * 1024;

tokio::task_local! {
    /// The watch of the HTTP/2 stream whose task is running (see [`stream`]).
    static STREAM: Arc<SendWatch>;
}

/// Runs one HTTP/2 stream (as hyper hands it to its executor) under a watch
/// of its own, which [`current`] returns to the code making its response.
pub fn stream<F: Future>(fut: F, limit: Duration) -> impl Future<Output = Option<F::Output>> {
    let watch = SendWatch::new();
    STREAM.scope(watch.clone(), Guarded::new(fut, watch, limit))
}

/// The watch of the HTTP/2 stream being served, if this runs inside [`stream`].
pub fn current() -> Option<Arc<SendWatch>> {
    STREAM.try_with(Arc::clone).ok()
}

/// Since when the client has been waited on (a body frame not asked for
/// again, or a socket that took no write), if it is.
pub struct SendWatch {
    start: Instant,
    /// Milliseconds after `start`, plus one; 0 while nothing waits on the client.
    waiting_since: AtomicU64,
    /// The client socket, when this watches one: the kernel wakes a blocked
    /// writer only once much of a large send buffer has drained, so a
    /// client reading slowly but steadily shows as progress in the socket's
    /// queue of unsent bytes before it shows as a write.
    socket: Option<std::os::fd::RawFd>,
    /// That queue's length when last looked at.
    queued: AtomicU64,
    /// An HTTP/2 stream's connection: while its socket is blocked, the
    /// stream waits on the connection, whose own watch judges the client.
    connection: std::sync::OnceLock<Arc<SendWatch>>,
}

impl SendWatch {
    pub fn new() -> Arc<SendWatch> {
        SendWatch::with_socket(None)
    }

    fn with_socket(socket: Option<std::os::fd::RawFd>) -> Arc<SendWatch> {
        Arc::new(SendWatch {
            start: Instant::now(),
            waiting_since: AtomicU64::new(0),
            socket,
            queued: AtomicU64::new(u64::MAX),
            connection: std::sync::OnceLock::new(),
        })
    }

    /// Makes this (an HTTP/2 stream's) watch defer to `connection`'s.
    pub fn within(&self, connection: &Arc<SendWatch>) {
        let _ = self.connection.set(connection.clone());
    }

    /// Whether the wait is the connection's to judge (its socket is blocked).
    fn connection_blocked(&self) -> bool {
        self.connection.get().is_some_and(|c| c.waiting_since().is_some())
    }

    /// The socket's queue of bytes not yet acknowledged by the client.
    #[cfg(target_os = "linux")]
    fn unsent(&self) -> Option<u64> {
        let fd = self.socket?;
        let mut unsent: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int; `fd` is the socket of the
        // connection this watch belongs to, open for as long as whoever
        // marks or asks (the socket's `Progress`, `Guarded`'s inner) holds it.
        let ok = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unsent) } == 0;
        ok.then_some(unsent.max(0) as u64)
    }

    /// Elsewhere TIOCOUTQ is a terminal request: no queue to look at, so a
    /// blocked socket is judged by its writes alone.
    #[cfg(not(target_os = "linux"))]
    fn unsent(&self) -> Option<u64> {
        None
    }

    /// Whether the socket's queue shrank since the wait began or was last
    /// looked at: the client is reading, only slowly. False without a socket.
    fn drained_some(&self) -> bool {
        let Some(now) = self.unsent() else { return false };
        now < self.queued.swap(now, Ordering::Relaxed)
    }

    fn waiting(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.waiting_since.store(ms + 1, Ordering::Relaxed);
    }

    fn taken(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// Like `waiting`, but keeps the moment a wait began.
    fn blocked(&self) {
        if self.waiting_since.load(Ordering::Relaxed) == 0 {
            self.waiting();
            if let Some(unsent) = self.unsent() {
                self.queued.store(unsent, Ordering::Relaxed);
            }
        }
    }

    /// Since when the client has been waited on, if it is.
    fn waiting_since(&self) -> Option<Instant> {
        match self.waiting_since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.start + Duration::from_millis(ms - 1)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells its [`SendWatch`] when it waits on the client.
    pub struct Watched<B> {
        #[pin]
        inner: B,
        // None: passed through untouched (HTTP/1.1, watched on its socket).
        watch: Option<Arc<SendWatch>>,
        // The rest of a frame larger than MAX_FRAME.
        rest: Bytes,
    }

    impl<B> PinnedDrop for Watched<B> {
        fn drop(this: Pin<&mut Self>) {
            // hyper drops a body it has finished with; nothing waits any more.
            if let Some(watch) = &this.watch {
                watch.taken();
            }
        }
    }
}

impl<B> Watched<B> {
    pub fn new(inner: B, watch: Option<Arc<SendWatch>>) -> Self {
        Watched { inner, watch, rest: Bytes::new() }
    }
}

impl<B: Body<Data = Bytes>> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let Some(watch) = this.watch.as_ref() else { return this.inner.poll_frame(cx) };
        watch.taken();
        let polled = if this.rest.is_empty() {
            match this.inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) if data.len() > MAX_FRAME => {
                        let first = data.split_to(MAX_FRAME);
                        *this.rest = data;
                        Poll::Ready(Some(Ok(Frame::data(first))))
                    }
                    Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                    Err(frame) => Poll::Ready(Some(Ok(frame))),
                },
                other => other,
            }
        } else {
            let n = this.rest.len().min(MAX_FRAME);
            Poll::Ready(Some(Ok(Frame::data(this.rest.split_to(n)))))
        };
        if let Poll::Ready(Some(Ok(_))) = &polled {
            watch.waiting();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.remaining() as u64;
        // Upper first: SizeHint asserts lower <= upper at every step.
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint.set_lower(inner.lower().saturating_add(rest));
        hint
    }
}

pin_project_lite::pin_project! {
    /// A client socket that tells its [`SendWatch`] when it cannot take a
    /// write, and when it takes one again.
    pub struct Progress<IO> {
        #[pin]
        io: IO,
        watch: Arc<SendWatch>,
    }
}

impl<IO: std::os::fd::AsRawFd> Progress<IO> {
    /// Watches `io`; the returned watch is the one to guard its driver with.
    pub fn new(io: IO) -> (Self, Arc<SendWatch>) {
        let watch = SendWatch::with_socket(Some(io.as_raw_fd()));
        (Progress { io, watch: watch.clone() }, watch)
    }
}

impl<IO> Progress<IO> {
    fn note<T>(
        watch: &SendWatch,
        polled: Poll<std::io::Result<T>>,
        took: impl Fn(&T) -> bool,
    ) -> Poll<std::io::Result<T>> {
        match &polled {
            Poll::Pending => watch.blocked(),
            Poll::Ready(Ok(t)) if took(t) => watch.taken(),
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<IO: AsyncRead> AsyncRead for Progress<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite> AsyncWrite for Progress<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        Self::note(this.watch, this.io.poll_write(cx, buf), |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        Self::note(this.watch, this.io.poll_write_vectored(cx, bufs), |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        Self::note(this.watch, this.io.poll_flush(cx), |_| true)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        Self::note(this.watch, this.io.poll_shutdown(cx), |_| true)
    }
}

pin_project_lite::pin_project! {
    /// Drives `inner` until it ends, or until its response has waited on the
    /// client for `limit`: then `inner` is dropped (closing the connection or
    /// resetting the stream, and releasing the upstream connection) and
    /// `None` is the output.
    pub struct Guarded<F> {
        #[pin]
        inner: F,
        watch: Arc<SendWatch>,
        limit: Duration,
        // Armed only while the client is waited on; re-armed lazily when it fires early.
        #[pin]
        timer: Option<Sleep>,
    }
}

impl<F> Guarded<F> {
    pub fn new(inner: F, watch: Arc<SendWatch>, limit: Duration) -> Self {
        Guarded { inner, watch, limit, timer: None }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Some(out));
        }
        loop {
            let Some(since) = this.watch.waiting_since() else {
                // Nothing waits on the client; a timer still set fires
                // harmlessly or is re-armed when something does.
                return Poll::Pending;
            };
            let deadline = since + *this.limit;
            match this.timer.as_mut().as_pin_mut() {
                None => this.timer.set(Some(tokio::time::sleep_until(deadline))),
                Some(timer) => {
                    if timer.deadline() < deadline {
                        // Set for an earlier wait that has ended since.
                        timer.reset(deadline);
                    }
                }
            }
            let timer = this.timer.as_mut().as_pin_mut().expect("armed above");
            match timer.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    if this.watch.waiting_since() != Some(since) {
                        // The client took something meanwhile: look again.
                        continue;
                    }
                    if this.watch.connection_blocked() || this.watch.drained_some() {
                        // Slow, not stopped: the wait starts again.
                        this.watch.waiting();
                        continue;
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test(start_paused = true)]
    async fn a_body_nobody_asks_for_again_is_cut_at_the_limit() {
        let watch = SendWatch::new();
        let mut body = Box::pin(Watched::new(Full::new(Bytes::from_static(b"x")), Some(watch.clone())));
        // One frame handed out, then nobody asks for the next.
        body.frame().await.unwrap().unwrap();
        let stalled = Guarded::new(std::future::pending::<()>(), watch, Duration::from_secs(60));
        let begun = Instant::now();
        assert!(stalled.await.is_none());
        assert_eq!(begun.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_keeps_taking_is_never_cut() {
        let watch = SendWatch::new();
        let reader = {
            let watch = watch.clone();
            async move {
                // Five frames, each taken 50 s after the one before: slow, never stalled for 60 s.
                for _ in 0..5 {
                    let mut body =
                        Box::pin(Watched::new(Full::new(Bytes::from_static(b"x")), Some(watch.clone())));
                    body.frame().await.unwrap().unwrap();
                    tokio::time::sleep(Duration::from_secs(50)).await;
                    assert!(body.frame().await.is_none());
                }
                "done"
            }
        };
        assert_eq!(Guarded::new(reader, watch, Duration::from_secs(60)).await, Some("done"));
    }

    #[tokio::test]
    async fn large_frames_are_handed_out_in_pieces_in_order() {
        let data: Vec<u8> = (0..(MAX_FRAME * 2 + 100)).map(|i| (i % 251) as u8).collect();
        let mut body = Box::pin(Watched::new(Full::new(Bytes::from(data.clone())), Some(SendWatch::new())));
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            sizes.push(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(sizes, [MAX_FRAME, MAX_FRAME, 100]);
        assert_eq!(got, data);
    }

    /// A body whose upstream never sends anything.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_on_the_upstream_is_not_the_clients_fault() {
        let watch = SendWatch::new();
        let mut body = Box::pin(Watched::new(Silent, Some(watch.clone())));
        let reader =
            async move { tokio::time::timeout(Duration::from_secs(300), body.frame()).await.is_err() };
        assert_eq!(Guarded::new(reader, watch, Duration::from_secs(60)).await, Some(true));
    }
}
