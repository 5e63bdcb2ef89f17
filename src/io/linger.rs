//! Lingering close. A server that closes a socket with client bytes still
//! unread, or that receives more of them after closing, makes the kernel
//! answer with a reset; the reset can reach the client before it has read
//! the answer already sent (a 413 for an upload still in flight, a 400 for a
//! refused head), and the client then reports a dropped connection instead
//! of the answer. So a close here first ends the sending side (FIN), then
//! reads and discards whatever still comes until the client closes too, for
//! at most [`LINGER`] (nginx's `lingering_close` does the same).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The longest a closed connection keeps reading: a client that has the
/// answer stops sending within a round trip; one that does not stop holds its
/// slot no longer than this.
pub const LINGER: Duration = Duration::from_secs(2);

/// Discarding reads done in one poll before giving other tasks a turn.
const READS_PER_POLL: usize = 16;

enum Close {
    Open,
    /// The FIN is sent; reading until EOF or the deadline.
    Lingering(Pin<Box<Sleep>>),
    Closed,
}

/// A byte stream whose shutdown lingers (see the module docs).
pub struct Linger<IO> {
    inner: IO,
    close: Close,
    linger: Duration,
}

impl<IO> Linger<IO> {
    pub fn new(inner: IO) -> Self {
        Self::for_at_most(inner, LINGER)
    }

    pub fn for_at_most(inner: IO, linger: Duration) -> Self {
        Linger { inner, close: Close::Open, linger }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Linger<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<IO> {
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
        let this = &mut *self;
        loop {
            match &mut this.close {
                Close::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.close = Close::Lingering(Box::pin(tokio::time::sleep(this.linger)));
                }
                Close::Lingering(deadline) => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.close = Close::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 4096];
                    for _ in 0..READS_PER_POLL {
                        let mut buf = ReadBuf::new(&mut scratch);
                        match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                            Ok(()) if !buf.filled().is_empty() => {}
                            // The client closed (or reset): nothing can be lost any more.
                            _ => {
                                this.close = Close::Closed;
                                return Poll::Ready(Ok(()));
                            }
                        }
                    }
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Close::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// The client keeps sending after the server's answer and close; with a
    /// plain close its next writes meet a reset and the answer is lost.
    #[tokio::test]
    async fn a_client_still_sending_reads_the_whole_answer() {
        let (mut client, server) = pair().await;
        let mut server = Linger::new(server);
        client.write_all(&[b'x'; 64 * 1024]).await.unwrap();
        // Some of it unread when the server answers and closes.
        let mut head = [0u8; 100];
        server.read_exact(&mut head).await.unwrap();
        let closing = tokio::spawn(async move {
            server.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            server.shutdown().await.unwrap();
        });
        // The client goes on sending for a while before it reads.
        for _ in 0..20 {
            client.write_all(&[b'y'; 16 * 1024]).await.expect("no reset while the server lingers");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("the answer, then EOF");
        assert!(answer.starts_with(b"HTTP/1.1 413"), "{answer:?}");
        client.shutdown().await.unwrap();
        drop(client);
        closing.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_that_never_stops_is_let_go_at_the_bound() {
        let (mut client, server) = pair().await;
        let mut server = Linger::for_at_most(server, Duration::from_millis(200));
        let sender = tokio::spawn(async move {
            // Sends until the server gives up and resets.
            while client.write_all(&[b'z'; 8192]).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await.expect("bounded").unwrap();
        drop(server);
        tokio::time::timeout(Duration::from_secs(10), sender)
            .await
            .expect("the sender sees the reset")
            .unwrap();
    }

    #[tokio::test]
    async fn a_client_that_closes_ends_the_linger_at_once() {
        let (client, server) = pair().await;
        let mut server = Linger::for_at_most(server, Duration::from_secs(3600));
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), server.shutdown())
            .await
            .expect("ends at EOF, not the hour")
            .unwrap();
    }
}
