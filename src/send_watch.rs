//! The send-side timeout (nginx's `send_timeout`): a response the client
//! stops taking is cut off, so that a client that never reads cannot hold its
//! slot and an upstream connection for ever.
//!
//! "Stops taking" is measured where it shows: the response body has handed
//! out a frame and is not asked for the next one. hyper asks again once the
//! frame is written (HTTP/1.1: into a socket the client drains; HTTP/2: into
//! a stream window the client opens), so a slow upstream never counts, only
//! a client that holds its socket or its window shut.
//!
//! [`Watched`] marks the moments on a shared [`SendWatch`]; [`Guarded`]
//! wraps the future that drives the response (the HTTP/1.1 connection, or
//! one HTTP/2 stream) and drops it, with everything it holds, once the body
//! has waited on the client for longer than the limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

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

/// When the response in progress last handed a frame to hyper and has not
/// been asked for the next one since.
pub struct SendWatch {
    start: Instant,
    /// Milliseconds after `start`, plus one; 0 while nothing waits on the client.
    waiting_since: AtomicU64,
}

impl SendWatch {
    pub fn new() -> Arc<SendWatch> {
        Arc::new(SendWatch { start: Instant::now(), waiting_since: AtomicU64::new(0) })
    }

    fn waiting(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.waiting_since.store(ms + 1, Ordering::Relaxed);
    }

    fn taken(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
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
        watch: Arc<SendWatch>,
    }

    impl<B> PinnedDrop for Watched<B> {
        fn drop(this: Pin<&mut Self>) {
            // hyper drops a body it has finished with; nothing waits any more.
            this.watch.taken();
        }
    }
}

impl<B> Watched<B> {
    pub fn new(inner: B, watch: Arc<SendWatch>) -> Self {
        Watched { inner, watch }
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
        this.watch.taken();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            this.watch.waiting();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
                    if this.watch.waiting_since() == Some(since) {
                        return Poll::Ready(None);
                    }
                    // The client took the frame meanwhile: look again.
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
        let mut body = Box::pin(Watched::new(Full::new(Bytes::from_static(b"x")), watch.clone()));
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
                    let mut body = Box::pin(Watched::new(Full::new(Bytes::from_static(b"x")), watch.clone()));
                    body.frame().await.unwrap().unwrap();
                    tokio::time::sleep(Duration::from_secs(50)).await;
                    assert!(body.frame().await.is_none());
                }
                "done"
            }
        };
        assert_eq!(Guarded::new(reader, watch, Duration::from_secs(60)).await, Some("done"));
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
        let mut body = Box::pin(Watched::new(Silent, watch.clone()));
        let reader =
            async move { tokio::time::timeout(Duration::from_secs(300), body.frame()).await.is_err() };
        assert_eq!(Guarded::new(reader, watch, Duration::from_secs(60)).await, Some(true));
    }
}
