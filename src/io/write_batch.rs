//! Gathers an HTTP/2 connection's large writes so that TLS sends them in
//! fewer, fuller records and system calls.
//!
//! The h2 crate writes each DATA frame (a 9-byte header and at most 16 KiB,
//! the client's frame size) and flushes after every one, and tokio-rustls
//! encrypts and sends each write at once: a download went out as a full TLS
//! record, a 9-byte record and a system call per 16 KiB. Here, while h2 keeps
//! writing, up to 64 KiB is gathered: four full records and one call.
//!
//! A flush is put off by waking the task again at once: h2 flushes on
//! every wake-up, so the next flush with nothing new sends everything. It is
//! put off again and again while at least [`LAZY`] bytes arrive between
//! flushes (a download), and once for smaller writes: the connection's task
//! then runs after the stream tasks that were ready in the same turn, and
//! their answers (each a HEADERS and a short DATA frame) go out together, in
//! one record and one system call rather than one each. With many streams
//! in flight that was a third of the system calls of an HTTP/2 GET
//! (BENCHMARKS.md); a lone answer waits one turn of an idle scheduler.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this much is held before it is written out.
const LIMIT: usize = 64 * 1024;

/// A flush is put off again and again only while at least this much keeps
/// coming between flushes.
const LAZY: usize = 16 * 1024;

/// The first allocation for a batch of small writes.
const SMALL: usize = 4 * 1024;

pub struct WriteBatch<IO> {
    inner: IO,
    pending: Vec<u8>,
    /// How much of `pending` the inner stream has taken.
    written: usize,
    /// Bytes taken since the last flush.
    fresh: usize,
    /// The last flush was put off: the next one writes.
    deferred: bool,
}

impl<IO> WriteBatch<IO> {
    pub fn new(inner: IO) -> Self {
        WriteBatch { inner, pending: Vec::new(), written: 0, fresh: 0, deferred: false }
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
        if self.pending.len() + total > LIMIT && !self.pending.is_empty() {
            ready!(self.poll_drain(cx))?;
        }
        // One allocation per batch of large writes, not a regrowth (and
        // copy) at 16 and 32 KiB; small ones start small.
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(if total >= LAZY { LIMIT.max(total) } else { SMALL });
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
        // Large writes are put off while they keep coming (a download);
        // small ones once, so that the answers other streams finish in the
        // same turn go out with them.
        let more = self.fresh >= LAZY || (self.fresh > 0 && !self.deferred);
        if more && self.pending.len() < LIMIT {
            self.deferred = true;
            // More may follow in this same turn; if not, the flush that comes
            // with the wake-up sends it.
            self.fresh = 0;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        self.fresh = 0;
        self.deferred = false;
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

    #[tokio::test]
    async fn small_writes_wait_one_turn_for_the_answers_of_other_streams() {
        let mut batch = WriteBatch::new(Counting::default());
        batch.write_all(b"HEADERS and a short answer").await.unwrap();
        assert!(flush_once(&mut batch), "put off once, the task woken");
        assert_eq!(batch.inner.writes, 0);
        // Another stream's answer, finished in the same turn.
        batch.write_all(b"; another").await.unwrap();
        assert!(!flush_once(&mut batch), "not put off twice in a row");
        assert_eq!(batch.inner.data, b"HEADERS and a short answer; another");
        assert_eq!((batch.inner.writes, batch.inner.flushes), (1, 1), "one write for both");
        // Nothing new: a flush that writes nothing, and asks for nothing.
        assert!(!flush_once(&mut batch));
        assert_eq!(batch.pending.capacity(), 0, "the buffer is given back");
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
