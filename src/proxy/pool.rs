//! Kept HTTP/1.1 connections to Vaultwarden: one stack per worker, shared
//! by all of that worker's client connections.
//!
//! There is one upstream, so a pool needs no keys: the most recently used
//! idle connection is taken first (it is the likeliest to be alive and warm)
//! and a connection goes back only once its answer has been read to the end,
//! so a request never waits behind another one's download. No task per
//! idle connection: whether Vaultwarden closed it (or sent something
//! unasked) is looked up, from what the reactor already knows, when it is
//! taken and by a sweep of the whole stack every [`SWEEP`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

/// At most this many idle connections are kept (per worker): as many as requests are in
/// flight at a busy moment (an HTTP/2 client alone may have 100), bounded so
/// that a burst cannot leave thousands of idle descriptors.
const MAX_IDLE: usize = 1024;

/// An idle connection unused for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// How often idle connections are looked over for ones Vaultwarden closed
/// (its keep-alive is 5 s by default): their descriptors are let go within
/// this time, not left half-closed until the next request or for ever.
pub const SWEEP: Duration = Duration::from_secs(2);

/// A connection to Vaultwarden and what was read from it but not yet used.
pub struct Conn {
    pub tcp: TcpStream,
    pub buf: BytesMut,
}

impl Conn {
    pub fn new(tcp: TcpStream) -> Conn {
        Conn { tcp, buf: BytesMut::new() }
    }

    /// Nothing left unread, and neither closed by Vaultwarden nor sent
    /// anything since its last answer, as far as the reactor has seen: a
    /// read is tried only when it reported the socket readable.
    fn is_reusable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.tcp.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Idle connections to Vaultwarden, oldest at the front.
#[derive(Default)]
pub struct Idle(Mutex<VecDeque<(Conn, Instant)>>);

impl Idle {
    /// The most recently returned connection that is still open.
    pub fn take(&self) -> Option<Conn> {
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((conn, since)) = idle.pop_back() {
            if since.elapsed() < IDLE_TIMEOUT && conn.is_reusable() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose last answer has been read to the end.
    /// Connections idle for too long are let go on the way.
    pub fn put(&self, conn: Conn) {
        if !conn.buf.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while idle.front().is_some_and(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back((conn, now));
        }
    }

    /// Lets go of every connection that is closed, sent something unasked
    /// or idled past its time, wherever it is in the stack.
    pub fn sweep(&self) {
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|(conn, since)| since.elapsed() < IDLE_TIMEOUT && conn.is_reusable());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(listener: &TcpListener) -> (Conn, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Conn::new(client), server)
    }

    #[tokio::test]
    async fn the_most_recently_returned_open_connection_is_taken_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idle = Idle::default();
        let (first, mut first_server) = pair(&listener).await;
        let (second, mut second_server) = pair(&listener).await;
        idle.put(first);
        idle.put(second);
        assert_eq!(idle.len(), 2);
        let mut taken = idle.take().unwrap();
        assert_eq!(idle.len(), 1, "one taken, one left");
        taken.tcp.write_all(b"x").await.unwrap();
        let (mut a, mut b) = ([0u8; 1], [0u8; 1]);
        let which = tokio::select! {
            _ = first_server.read(&mut a) => "first",
            _ = second_server.read(&mut b) => "second",
        };
        assert_eq!(which, "second", "last in, first out");
        assert!(idle.take().is_some());
        assert!(idle.take().is_none(), "empty");
    }

    /// Waits until the reactor has seen what `server`'s end did to `conn`.
    async fn settle(idle: &Idle) {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if idle.0.lock().unwrap().back().is_some_and(|(c, _)| !c.is_reusable()) {
                return;
            }
        }
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_never_taken() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idle = Idle::default();
        let (conn, server) = pair(&listener).await;
        idle.put(conn);
        // Closed while idle, as Vaultwarden does when its keep-alive ends.
        drop(server);
        settle(&idle).await;
        assert!(idle.take().is_none());
        assert_eq!(idle.len(), 0, "and it is let go");
    }

    #[tokio::test]
    async fn a_sweep_lets_go_of_closed_connections_anywhere_in_the_stack() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idle = Idle::default();
        let (first, first_server) = pair(&listener).await;
        let (second, _second_server) = pair(&listener).await;
        idle.put(first);
        idle.put(second);
        // The oldest one closes: take() would not reach it while the other is there.
        drop(first_server);
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            idle.sweep();
            if idle.len() == 1 {
                break;
            }
        }
        assert_eq!(idle.len(), 1, "the closed one went, the open one stays");
        assert!(idle.take().is_some());
    }

    #[tokio::test]
    async fn a_connection_the_upstream_wrote_to_unasked_is_never_taken() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idle = Idle::default();
        let (conn, mut server) = pair(&listener).await;
        idle.put(conn);
        // Bytes no request asked for: the next answer would start with them.
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        settle(&idle).await;
        assert!(idle.take().is_none());
        drop(server);
    }

    #[tokio::test]
    async fn a_connection_with_bytes_left_over_is_not_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idle = Idle::default();
        let (mut conn, _server) = pair(&listener).await;
        conn.buf.extend_from_slice(b"extra");
        idle.put(conn);
        assert_eq!(idle.len(), 0);
    }
}
