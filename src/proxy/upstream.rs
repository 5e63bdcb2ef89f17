//! Connections to Vaultwarden: opened by hand for each hub, and kept idle
//! between ordinary requests in one stack per worker, shared by all of that
//! worker's client connections.
//!
//! There is one upstream, so a pool needs no keys: the most recently used
//! idle connection is taken first (it is the likeliest to be alive and warm)
//! and a connection goes back only once its answer has been read to the end,
//! so a request never waits behind another one's download. This replaced
//! hyper-util's pooled client, which hashes a pool key twice and spawns a
//! task per request to put the connection back: 10 k fewer instructions per
//! proxied request (BENCHMARKS.md).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Proxy, ProxyError};
use crate::body::ProxyBody;

/// At most this many idle connections are kept (per worker): as many as requests are in
/// flight at a busy moment (an HTTP/2 client alone may have 100), bounded so
/// that a burst cannot leave thousands of idle descriptors.
const MAX_IDLE: usize = 1024;

/// An idle connection unused for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// A request that finds a kept connection just closing is sent on another
/// kept one at most this many times, then on a new connection.
const REUSE_ATTEMPTS: usize = 3;

/// Idle HTTP/1.1 connections to Vaultwarden, oldest at the front.
#[derive(Default)]
pub struct Idle(Mutex<VecDeque<(SendRequest<ProxyBody>, Instant)>>);

impl Idle {
    /// The most recently returned connection that is still open.
    fn take(&self) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((sender, since)) = idle.pop_back() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps a connection whose last answer has been read to the end.
    /// Connections idle for too long are let go on the way.
    pub fn put(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while idle.front().is_some_and(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back((sender, now));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Why a request got no response from Vaultwarden.
pub enum SendFailure {
    /// No connection to Vaultwarden could be opened.
    Connect(ProxyError),
    /// The request was sent (perhaps partly) and failed.
    Send(hyper::Error),
}

/// Opens an HTTP/1.1 connection to `addr` within `timeout` and spawns its
/// driver (`upgrades`: for a hub, which outlives the request).
async fn connect(addr: &str, timeout: Duration, upgrades: bool) -> std::io::Result<SendRequest<ProxyBody>> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(tcp) => tcp?,
        Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    };
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let ended = if upgrades { conn.with_upgrades().await } else { conn.await };
        if let Err(e) = ended {
            tracing::debug!("upstream connection: {e}");
        }
    });
    Ok(sender)
}

impl Proxy {
    /// A new connection to Vaultwarden (`upgrades`: for a hub).
    pub(super) async fn connect_upstream(
        &self,
        upgrades: bool,
    ) -> Result<SendRequest<ProxyBody>, ProxyError> {
        connect(self.upstream_authority.as_str(), self.connect_timeout, upgrades)
            .await
            .map_err(|e| self.unreachable(&e))
    }

    /// Sends `req` (origin-form target) on an idle connection, or a new one
    /// when none is left. A request that could not be written because its
    /// connection was closing just then (Vaultwarden ends idle keep-alive
    /// connections) is sent again, as nothing of it reached Vaultwarden.
    /// Returns the connection with the answer: the caller gives it back to
    /// [`Idle::put`] once the answer's body has been read to the end.
    pub(super) async fn send_upstream(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, SendRequest<ProxyBody>), SendFailure> {
        let mut attempts = 0;
        loop {
            let kept = if attempts < REUSE_ATTEMPTS { self.idle().take() } else { None };
            attempts += 1;
            let reused = kept.is_some();
            let mut sender = match kept {
                Some(mut sender) => {
                    if sender.ready().await.is_err() {
                        continue;
                    }
                    sender
                }
                None => self.connect_upstream(false).await.map_err(SendFailure::Connect)?,
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, sender)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendFailure::Send(failed.into_error())),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// An upstream that accepts connections and keeps them open, silent.
    async fn listener() -> (String, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        (listener.local_addr().unwrap().to_string(), listener)
    }

    #[tokio::test]
    async fn the_most_recently_returned_open_connection_is_taken_first() {
        let (addr, listener) = listener().await;
        let keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        let timeout = Duration::from_secs(5);
        let idle = Idle::default();
        let first = connect(&addr, timeout, false).await.unwrap();
        let second = connect(&addr, timeout, false).await.unwrap();
        let (first_closed, second_closed) = (first.is_closed(), second.is_closed());
        assert!(!first_closed && !second_closed);
        idle.put(first);
        idle.put(second);
        assert_eq!(idle.len(), 2);
        let taken = idle.take().unwrap();
        assert_eq!(idle.len(), 1, "one taken, one left");
        drop(taken);
        assert!(idle.take().is_some());
        assert!(idle.take().is_none(), "empty");
        keep.abort();
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_never_taken() {
        let (addr, listener) = listener().await;
        let (close, closing) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // Closes it while idle, as Vaultwarden does when its keep-alive ends.
            let _ = closing.await;
            drop(tcp);
        });
        let idle = Idle::default();
        idle.put(connect(&addr, Duration::from_secs(5), false).await.unwrap());
        assert_eq!(idle.len(), 1);
        close.send(()).unwrap();
        server.await.unwrap();
        // Its driver task sees the end of the stream and closes the sender.
        for _ in 0..500 {
            if idle.0.lock().unwrap().back().is_some_and(|(sender, _)| sender.is_closed()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(idle.take().is_none());
        assert_eq!(idle.len(), 0, "and it is let go");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let (addr, listener) = listener().await;
        drop(listener);
        let e = connect(&addr, Duration::from_secs(5), false).await.err().unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
