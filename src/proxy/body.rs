//! Body types: what the proxy sends either way, and a streaming wrapper that
//! counts bytes and reports when a body has finished (or was abandoned).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body vaultgate hands to hyper, in either direction.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// How an [`OnEnd`] body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BodyEnd {
    /// The last frame went through.
    Complete,
    /// The body failed (a malformed chunk, a peer that vanished mid-body).
    Error,
    /// Dropped before the end (the other side stopped reading).
    Dropped,
}

/// How a body ended, for another task to wait on or look up: set once by
/// the body's [`OnEnd`] callback.
#[derive(Default)]
pub struct Ended {
    /// 0 while the body goes on, else `1 + BodyEnd as u8`.
    how: AtomicU8,
    done: Notify,
}

impl Ended {
    pub fn set(&self, how: BodyEnd) {
        self.how.store(1 + how as u8, Ordering::Release);
        // Leaves a permit when nobody waits yet: a later `wait` returns at once.
        self.done.notify_one();
    }

    pub fn get(&self) -> Option<BodyEnd> {
        match self.how.load(Ordering::Acquire) {
            0 => None,
            1 => Some(BodyEnd::Complete),
            2 => Some(BodyEnd::Error),
            _ => Some(BodyEnd::Dropped),
        }
    }

    /// Resolves once the body has ended, however it ended.
    pub async fn wait(&self) {
        while self.get().is_none() {
            self.done.notified().await;
        }
    }
}

/// A body passed through frame by frame (never buffered) that calls `on_end`
/// exactly once with how it ended and the data bytes that went through: what
/// frees a connection, a permit or an in-flight mark, and writes the access
/// log line, when a body is done.
/// Nothing is allocated for it: the callback is stored as its own type.
pub struct OnEnd<B, F: FnOnce(BodyEnd, u64)> {
    inner: B,
    bytes: u64,
    /// Where the count is also kept as it grows, for a reader that cannot
    /// wait for the end (the access log of a response that ends first).
    live: Option<Arc<AtomicU64>>,
    on_end: Option<F>,
}

impl<B: Body + Unpin, F: FnOnce(BodyEnd, u64)> OnEnd<B, F> {
    pub fn new(inner: B, on_end: F) -> Self {
        OnEnd { inner, bytes: 0, live: None, on_end: Some(on_end) }
    }

    /// Also keeps the running count in `live`.
    pub fn counting_into(mut self, live: Arc<AtomicU64>) -> Self {
        self.live = Some(live);
        self
    }
}

impl<B, F: FnOnce(BodyEnd, u64)> OnEnd<B, F> {
    fn end(&mut self, how: BodyEnd) {
        if let Some(f) = self.on_end.take() {
            f(how, self.bytes);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin, F: FnOnce(BodyEnd, u64) + Unpin> Body for OnEnd<B, F> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    self.bytes += len;
                    if let Some(live) = &self.live {
                        live.fetch_add(len, Ordering::Relaxed);
                    }
                }
                if self.inner.is_end_stream() {
                    self.end(BodyEnd::Complete);
                }
            }
            Poll::Ready(Some(Err(_))) => self.end(BodyEnd::Error),
            Poll::Ready(None) => self.end(BodyEnd::Complete),
            Poll::Pending => {}
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

/// A body whose first bytes were read ahead (to judge a login's answer,
/// `forward.rs`): those bytes again, then the rest of `inner` as it comes.
pub struct Replay<B> {
    head: Option<Bytes>,
    /// Trailers read ahead with the head: the body's end.
    trailers: Option<http::HeaderMap>,
    rest: B,
}

impl<B> Replay<B> {
    pub fn new(head: Bytes, trailers: Option<http::HeaderMap>, rest: B) -> Self {
        Replay { head: (!head.is_empty()).then_some(head), trailers, rest }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Replay<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.trailers.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + head);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + head);
        }
        hint
    }
}

/// Keeps a request body moving: cut off when the client sends nothing for
/// `idle`, or, measured over each `idle` of waiting, sends slower than
/// `min_rate` bytes a second (a body dribbled at 1 byte/s would otherwise hold
/// a Vaultwarden connection for days). Only time spent waiting for the client
/// counts: while the upstream is slow to read, the proxy is not asking.
pub struct Pace<B> {
    inner: B,
    idle: Duration,
    min_rate: u64,
    sleep: Pin<Box<Sleep>>,
    /// When the current wait for the client began, if waiting.
    waiting_since: Option<Instant>,
    /// Waiting time and bytes in the current measuring window.
    waited: Duration,
    window_bytes: u64,
}

/// Why a [`Pace`] body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyStalled {
    #[error("the client sent no body data for {} s", .0.as_secs())]
    Idle(Duration),
    #[error("the client sent the body slower than {0} bytes/s")]
    TooSlow(u64),
}

impl<B> Pace<B> {
    pub fn new(inner: B, idle: Duration, min_rate: u64) -> Self {
        Pace {
            inner,
            idle,
            min_rate,
            sleep: Box::pin(tokio::time::sleep(idle)),
            waiting_since: None,
            waited: Duration::ZERO,
            window_bytes: 0,
        }
    }
}

impl<B> Body for Pace<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let since = match self.waiting_since {
            Some(t) => t,
            None => {
                let now = Instant::now();
                let deadline = now + self.idle;
                self.sleep.as_mut().reset(deadline);
                self.waiting_since = Some(now);
                now
            }
        };
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.waiting_since = None;
                self.waited += since.elapsed();
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    self.window_bytes += data.map_or(0, |d| d.len() as u64);
                }
                if self.waited >= self.idle {
                    let needed = self.min_rate.saturating_mul(self.waited.as_secs());
                    if self.window_bytes < needed {
                        return Poll::Ready(Some(Err(Box::new(BodyStalled::TooSlow(self.min_rate)))));
                    }
                    (self.waited, self.window_bytes) = (Duration::ZERO, 0);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled::Idle(self.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, F: FnOnce(BodyEnd, u64)> Drop for OnEnd<B, F> {
    fn drop(&mut self) {
        self.end(BodyEnd::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ended_tells_a_waiter_how_the_body_ended_whether_it_waited_first_or_not() {
        for how in [BodyEnd::Complete, BodyEnd::Error, BodyEnd::Dropped] {
            // Set before anyone waits.
            let ended = Ended::default();
            assert_eq!(ended.get(), None);
            ended.set(how);
            ended.wait().await;
            assert_eq!(ended.get(), Some(how));
            // Waited on first.
            let ended = Arc::new(Ended::default());
            let waiter = tokio::spawn({
                let ended = ended.clone();
                async move {
                    ended.wait().await;
                    ended.get()
                }
            });
            tokio::task::yield_now().await;
            ended.set(how);
            assert_eq!(waiter.await.unwrap(), Some(how));
        }
    }

    #[tokio::test]
    async fn counts_bytes_and_ends_once() {
        let count = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(std::sync::Mutex::new(Vec::new()));
        let e = ended.clone();
        let body = OnEnd::new(Full::new(Bytes::from_static(b"hello")), move |how, bytes| {
            e.lock().unwrap().push((how, bytes));
        })
        .counting_into(count.clone());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello");
        assert_eq!(count.load(Ordering::SeqCst), 5);
        assert_eq!(*ended.lock().unwrap(), [(BodyEnd::Complete, 5)]);
    }

    #[test]
    fn dropping_unfinished_body_still_reports_the_end() {
        let ended = Arc::new(std::sync::Mutex::new(None));
        let e = ended.clone();
        let body =
            OnEnd::new(Full::new(Bytes::from_static(b"x")), move |how, _| *e.lock().unwrap() = Some(how));
        drop(body);
        assert_eq!(*ended.lock().unwrap(), Some(BodyEnd::Dropped));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_body_times_out_but_a_slow_reader_does_not_count() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut body = Pace::new(http_body_util::StreamBody::new(stream), Duration::from_secs(10), 0);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a")))).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        // The reader goes away for a minute: not the client's fault.
        tokio::time::sleep(Duration::from_secs(60)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"b")))).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok(), "time not spent waiting does not count");
        // Now the client goes silent while we wait.
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(matches!(err.downcast_ref::<BodyStalled>(), Some(BodyStalled::Idle(_))), "{err}");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dribbled_byte_by_byte_is_cut_but_a_slow_honest_one_is_not() {
        let run = |bytes_per_second: usize| async move {
            let (tx, mut rx) =
                tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
            let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
            let mut body = Pace::new(http_body_util::StreamBody::new(stream), Duration::from_secs(60), 1024);
            tokio::spawn(async move {
                for _ in 0..300 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; bytes_per_second])))).await.is_err() {
                        break;
                    }
                }
            });
            let mut received = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => received += f.data_ref().map_or(0, |d| d.len()),
                    Err(e) => return Err((received, e.to_string())),
                }
            }
            Ok(received)
        };
        let dribble = run(1).await.expect_err("1 byte/s is cut off");
        assert!(dribble.0 < 100, "cut within the first window: {dribble:?}");
        assert!(dribble.1.contains("slower than 1024 bytes/s"), "{dribble:?}");
        assert_eq!(run(2048).await.expect("2 KiB/s is fine"), 300 * 2048);
    }

    #[tokio::test]
    async fn a_failing_body_reports_error() {
        let ended = Arc::new(std::sync::Mutex::new(None));
        let e = ended.clone();
        let failing = http_body_util::StreamBody::new(futures_util::stream::iter([Err::<Frame<Bytes>, _>(
            "bad chunk",
        )]));
        let body = OnEnd::new(failing, move |how, _| *e.lock().unwrap() = Some(how));
        assert!(body.collect().await.is_err());
        assert_eq!(*ended.lock().unwrap(), Some(BodyEnd::Error));
    }
}
