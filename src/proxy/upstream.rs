//! Connections to Vaultwarden: opened fresh for each hub, and kept idle
//! between ordinary requests in one stack per worker, shared by all of that
//! worker's client connections. Also the one HTTP/1.1 client handshake
//! every outgoing connection of ours uses.
//!
//! There is one upstream, so a pool needs no keys: the most recently used
//! idle connection is taken first (it is the likeliest to be alive and warm)
//! and a connection goes back only once its answer has been read to the end,
//! so a request never waits behind another one's download. (hyper-util's
//! pooled client, which this replaced, hashes a pool key twice and spawns a
//! task per request to put the connection back: BENCHMARKS.md.)

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};

use super::body::{BoxError, ProxyBody};
use super::error::ProxyError;
use crate::config::Config;

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

/// Starts HTTP/1.1 on `io` and spawns the connection's driver
/// (`upgrades`: for a WebSocket, which outlives the request).
pub async fn handshake<IO, B>(io: IO, upgrades: bool) -> std::io::Result<SendRequest<B>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let ended = if upgrades { conn.with_upgrades().await } else { conn.await };
        if let Err(e) = ended {
            tracing::debug!("outgoing HTTP/1.1 connection: {e}");
        }
    });
    Ok(sender)
}

/// Opens a TCP connection to `addr` within `timeout`, without Nagle's delay.
pub async fn tcp(addr: impl ToSocketAddrs, timeout: Duration) -> std::io::Result<TcpStream> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(tcp) => tcp?,
        Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Whether `e` is [`tcp`]'s own timeout (not one the system reported), for
/// callers that word it themselves.
pub fn timed_out(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut && e.raw_os_error().is_none()
}

/// Opens an HTTP/1.1 connection to `addr` within `timeout`.
pub async fn connect<B>(addr: &str, timeout: Duration, upgrades: bool) -> std::io::Result<SendRequest<B>>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    handshake(tcp(addr, timeout).await?, upgrades).await
}

/// Vaultwarden, as the proxy reaches it.
pub struct Upstream {
    url: String,
    authority: http::uri::Authority,
    connect_timeout: Duration,
    /// `[timeouts] upstream_response`.
    pub response_timeout: Duration,
    /// One stack per worker: a connection is driven by the worker that
    /// opened it, so another worker using it would wake that one for every
    /// request.
    idle: Vec<Arc<Idle>>,
}

impl Upstream {
    pub fn new(config: &Config) -> Upstream {
        Upstream {
            url: config.upstream.url.clone(),
            authority: config.upstream.authority.clone(),
            connect_timeout: config.timeouts.upstream_connect,
            response_timeout: config.timeouts.upstream_response,
            idle: (0..config.limits.workers.max(1)).map(|_| Arc::default()).collect(),
        }
    }

    /// A new connection to Vaultwarden (`upgrades`: for a hub).
    pub async fn connect(&self, upgrades: bool) -> Result<SendRequest<ProxyBody>, ProxyError> {
        connect(self.authority.as_str(), self.connect_timeout, upgrades)
            .await
            .map_err(|e| self.unreachable(&e))
    }

    /// The idle connections of `worker`.
    pub fn idle(&self, worker: usize) -> &Arc<Idle> {
        self.idle.get(worker).unwrap_or(&self.idle[0])
    }

    /// Sends `req` (origin-form target) on one of `worker`'s idle
    /// connections, or a new one when none is left. A request that could not
    /// be written because its connection was closing just then (Vaultwarden
    /// ends idle keep-alive connections) is sent again, as nothing of it
    /// reached Vaultwarden. Returns the connection with the answer: the
    /// caller gives it back to [`Idle::put`] once the answer's body has been
    /// read to the end.
    pub async fn send(
        &self,
        mut req: Request<ProxyBody>,
        worker: usize,
    ) -> Result<(Response<Incoming>, SendRequest<ProxyBody>), SendFailure> {
        let mut attempts = 0;
        loop {
            let kept = if attempts < REUSE_ATTEMPTS { self.idle(worker).take() } else { None };
            attempts += 1;
            let reused = kept.is_some();
            let mut sender = match kept {
                Some(mut sender) => {
                    if sender.ready().await.is_err() {
                        continue;
                    }
                    sender
                }
                None => self.connect(false).await.map_err(SendFailure::Connect)?,
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

    /// A 502 naming the root cause (e.g. "Connection refused"), not hyper's wrappers.
    pub fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> ProxyError {
        let mut root = e;
        while let Some(source) = root.source() {
            root = source;
        }
        ProxyError::UpstreamUnreachable { url: self.url.clone(), detail: root.to_string() }
    }

    pub fn timed_out(&self) -> ProxyError {
        ProxyError::UpstreamTimeout { url: self.url.clone(), secs: self.response_timeout.as_secs() }
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
        use tokio::io::AsyncReadExt;
        let (addr, listener) = listener().await;
        // Tells which of the two connections (in the order they were opened)
        // the first request arrives on.
        let (tell, told) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            let (mut second, _) = listener.accept().await.unwrap();
            let (mut a, mut b) = ([0u8; 1], [0u8; 1]);
            let which = tokio::select! {
                _ = first.read(&mut a) => "first",
                _ = second.read(&mut b) => "second",
            };
            let _ = tell.send(which);
            (first, second)
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
        let mut taken = idle.take().unwrap();
        assert_eq!(idle.len(), 1, "one taken, one left");
        taken.ready().await.unwrap();
        let request = taken.send_request(Request::get("/").body(crate::proxy::body::empty()).unwrap());
        let asked = tokio::spawn(request);
        assert_eq!(told.await.unwrap(), "second", "last in, first out");
        asked.abort();
        drop(taken);
        assert!(idle.take().is_some());
        assert!(idle.take().is_none(), "empty");
        server.abort();
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
    async fn a_connect_that_does_not_finish_in_time_is_our_timeout() {
        // A listener that never accepts: once its queue is full, the
        // system drops new connection attempts, which then wait.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        let e = loop {
            match tcp(addr, Duration::from_millis(200)).await {
                Ok(tcp) if queued.len() < 16 => queued.push(tcp),
                Ok(_) => panic!("the queue never filled"),
                Err(e) => break e,
            }
        };
        assert!(timed_out(&e), "{e}");
        drop(listener);
        let refused = tcp(addr, Duration::from_secs(5)).await.unwrap_err();
        assert!(!timed_out(&refused), "{refused}");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let (addr, listener) = listener().await;
        drop(listener);
        let e = connect::<ProxyBody>(&addr, Duration::from_secs(5), false).await.err().unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
