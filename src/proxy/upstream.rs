//! Vaultwarden as the proxy reaches it: ordinary requests over kept
//! connections (`pool.rs`) with our own HTTP/1.1 exchange (`exchange.rs`),
//! and the one hyper HTTP/1.1 client handshake every other outgoing
//! connection uses (hubs, `/healthz`, the probe, the ACME client).

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};

use super::body::{BoxError, ProxyBody};
use super::error::ProxyError;
use super::exchange::{self, Failure, Outgoing, UpstreamBody};
use super::pool::{self, Conn, Idle};
use crate::config::Config;

/// A request that finds a kept connection just closing is sent on another
/// kept one at most this many times, then on a new connection.
const REUSE_ATTEMPTS: usize = 3;

/// Why a request got no response from Vaultwarden.
pub enum SendFailure {
    /// No connection to Vaultwarden could be opened.
    Connect(ProxyError),
    /// The request was sent (perhaps partly) and failed: the client's body
    /// (`client: true`) or Vaultwarden's side.
    Send { error: BoxError, client: bool },
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

/// `idle`, looked over every [`pool::SWEEP`] by a task that ends with them
/// (a reload's new generation has its own). No task when there is no
/// runtime to run it (unit tests building a configuration).
fn sweeping(idle: Vec<Arc<Idle>>) -> Vec<Arc<Idle>> {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let watched: Vec<Weak<Idle>> = idle.iter().map(Arc::downgrade).collect();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(pool::SWEEP).await;
                let mut alive = false;
                for stack in watched.iter().filter_map(Weak::upgrade) {
                    stack.sweep();
                    alive = true;
                }
                if !alive {
                    return;
                }
            }
        });
    }
    idle
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
            idle: sweeping((0..config.limits.workers.max(1)).map(|_| Arc::default()).collect()),
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
    /// connections, or a new one when none is left. A request whose kept
    /// connection turned out closed (Vaultwarden ends idle keep-alive
    /// connections) with nothing answered and none of its body taken is sent
    /// again. The answer's body gives its connection back once read whole.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        worker: usize,
    ) -> Result<Response<UpstreamBody>, SendFailure> {
        let (parts, mut body) = req.into_parts();
        let body_follows = !http_body::Body::is_end_stream(&body);
        // A body Vaultwarden stops reading is cut after as long as an answer may take.
        let outgoing = Outgoing::new(&parts, body_follows, self.response_timeout);
        drop(parts);
        let idle = self.idle(worker);
        let mut attempts = 0;
        loop {
            let kept = if attempts < REUSE_ATTEMPTS { idle.take() } else { None };
            attempts += 1;
            let reused = kept.is_some();
            let conn = match kept {
                Some(conn) => conn,
                None => Conn::new(
                    tcp(self.authority.as_str(), self.connect_timeout)
                        .await
                        .map_err(|e| SendFailure::Connect(self.unreachable(&e)))?,
                ),
            };
            let body = body_follows.then_some(&mut body);
            match exchange::exchange(conn, reused, &outgoing, body, idle).await {
                Ok(resp) => return Ok(resp),
                // Only a kept connection answers that way (`exchange`).
                Err(Failure::Unanswered) => continue,
                Err(Failure::Upstream(error)) => return Err(SendFailure::Send { error, client: false }),
                Err(Failure::Body(error)) => return Err(SendFailure::Send { error, client: true }),
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
