//! Gathers an HTTP/2 connection's large writes so that TLS sends them in
//! fewer, fuller records and system calls.
//!
//! The h2 crate writes each DATA frame (a 9-byte header and at most 16 KiB,
//! the client's frame size) and flushes after every one, and tokio-rustls
//! encrypts and sends each write at once: a download went out as a full TLS
//! record, a 9-byte record and a system call per 16 KiB. Here, while h2 keeps
//! writing, up to 64 KiB is gathered: four full records and one call.
//!
//! Writes of at least [`LAZY`] bytes (and what follows them) are gathered
//! here, and a flush is put off while that much arrives between flushes:
//! the task is woken again at once, and h2 flushes on every wake-up, so the
//! next flush with nothing new sends everything.
//!
//! A small write with nothing gathered is put off once instead (`Pending`,
//! the task woken at once), without a copy: h2 keeps it in its own buffer,
//! and by the time the connection's task runs again the stream tasks that
//! were ready in the same turn have queued their answers (each a HEADERS and
//! a short DATA frame), which then go out together, in one record and one
//! system call rather than one each. With many streams in flight that was a
//! third of the system calls of an HTTP/2 GET (BENCHMARKS.md); a lone
//! answer waits one turn of an idle scheduler.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this much is held before it is written out.
const LIMIT: usize = 64 * 1024;

/// A flush is put off again and again only while at least this much keeps
/// coming between flushes.
const LAZY: usize = 16 * 1024;

pub struct WriteBatch<IO> {
    inner: IO,
    pending: Vec<u8>,
    /// How much of `pending` the inner stream has taken.
    written: usize,
    /// Bytes taken since the last flush.
    fresh: usize,
    /// A small write was put off once: the next one goes through.
    held: bool,
}

impl<IO> WriteBatch<IO> {
    pub fn new(inner: IO) -> Self {
        WriteBatch { inner, pending: Vec::new(), written: 0, fresh: 0, held: false }
    }
}

impl<IO: AsyncWrite + Unpin> WriteBatch<IO> {
    /// Writes out everything gathered, then lets the buffer go (an idle
    /// connection holds none).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteBatch<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteBatch<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.pending.is_empty() && total < LAZY {
            // Small, and nothing gathered before it: put off once, the task
            // woken at once. h2 keeps the bytes in its own buffer, adds the
            // frames other streams finish in the meantime, and sends them
            // all in the write that follows, which goes straight through.
            if !self.held {
                self.held = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.held = false;
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        if self.pending.len() + total > LIMIT && !self.pending.is_empty() {
            ready!(self.poll_drain(cx))?;
        }
        // One allocation per batch, not a regrowth (and copy) at 16 and 32 KiB.
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(LIMIT.max(total));
        }
        // Takes what fits (at least the first slice, whatever its size).
        let mut taken = 0;
        for b in bufs {
            if taken > 0 && self.pending.len() + b.len() > LIMIT {
                break;
            }
            self.pending.extend_from_slice(b);
            taken += b.len();
        }
        self.fresh += taken;
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.fresh >= LAZY && self.pending.len() < LIMIT {
            // More may follow in this same turn; if not, the flush that comes
            // with the wake-up sends it.
            self.fresh = 0;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        self.fresh = 0;
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes and flushes that reach the inner stream.
    #[derive(Default)]
    struct Counting {
        data: Vec<u8>,
        writes: usize,
        flushes: usize,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes += 1;
            self.data.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// One flush as h2 makes it, and whether it asked to be polled again.
    fn flush_once(batch: &mut WriteBatch<Counting>) -> bool {
        let woken = std::sync::Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(batch).poll_flush(&mut cx).is_ready());
        woken.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn frames_flushed_one_by_one_go_out_together_in_order() {
        let mut batch = WriteBatch::new(Counting::default());
        let payload: Vec<u8> = (0..16384u32).map(|i| i as u8).collect();
        let mut expected = Vec::new();
        for frame in 0..10u8 {
            let header = [frame; 9];
            let n = batch.write_vectored(&[IoSlice::new(&header), IoSlice::new(&payload)]).await.unwrap();
            assert_eq!(n, 9 + payload.len(), "a frame that fits is taken whole");
            expected.extend_from_slice(&header);
            expected.extend_from_slice(&payload);
            // h2 flushes after every frame: put off, and the task woken.
            assert!(flush_once(&mut batch), "a put-off flush wakes the task");
        }
        // The flush of the wake-up, with nothing new, sends the rest.
        assert!(!flush_once(&mut batch));
        assert_eq!(batch.inner.data, expected);
        // Three 16,393-byte frames fit in 64 KiB: 10 frames, 4 writes.
        assert_eq!(batch.inner.writes, 4);
        assert_eq!(batch.inner.flushes, 1);
        assert_eq!(batch.pending.capacity(), 0, "the buffer is given back");
    }

    /// One write as h2 makes it: whether it was taken, and whether it asked
    /// to be polled again.
    fn write_once(batch: &mut WriteBatch<Counting>, bytes: &[u8]) -> (Poll<usize>, bool) {
        let woken = std::sync::Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let polled = Pin::new(batch).poll_write(&mut cx, bytes).map(Result::unwrap);
        (polled, woken.0.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_small_write_waits_one_turn_for_the_answers_of_other_streams() {
        let mut batch = WriteBatch::new(Counting::default());
        assert_eq!(write_once(&mut batch, b"HEADERS"), (Poll::Pending, true), "put off once, the task woken");
        assert_eq!(batch.inner.writes, 0);
        // h2 writes again what it holds, with another stream's answer added.
        assert_eq!(write_once(&mut batch, b"HEADERS; another"), (Poll::Ready(16), false));
        assert_eq!(batch.inner.data, b"HEADERS; another", "straight through, nothing copied here");
        assert!(!flush_once(&mut batch));
        assert_eq!((batch.inner.writes, batch.inner.flushes), (1, 1));
        assert_eq!(batch.pending.capacity(), 0, "nothing held");
        // The next turn's first small write is put off again.
        assert_eq!(write_once(&mut batch, b"next"), (Poll::Pending, true));
    }

    #[tokio::test]
    async fn what_is_written_arrives_through_a_real_pipe() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut batch = WriteBatch::new(a);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        for chunk in data.chunks(20_000) {
            batch.write_all(chunk).await.unwrap();
            poll_fn(|cx| Pin::new(&mut batch).poll_flush(cx)).await.unwrap();
        }
        batch.shutdown().await.unwrap();
        drop(batch);
        assert_eq!(reader.await.unwrap(), data);
    }
}
