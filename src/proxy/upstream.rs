//! Connections to Vaultwarden opened by hand (not through the pooled client):
//! one per hub, and one that each HTTP/1.1 client connection keeps for its
//! ordinary requests.
//!
//! An HTTP/1.1 client sends one request at a time, so its own upstream
//! connection is always free when the next request comes. That skips the
//! pool's bookkeeping on every request (hashing the pool key, check-out,
//! put-back; 14 % fewer instructions per proxied GET, BENCHMARKS.md).
//! HTTP/2 clients multiplex, and keep the pooled client.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Proxy, ProxyError};
use crate::body::ProxyBody;

/// The upstream connection of one HTTP/1.1 client connection, kept between
/// its requests. Empty until the first request, and while one is in flight.
#[derive(Clone, Default)]
pub struct Dedicated(Arc<Mutex<Option<SendRequest<ProxyBody>>>>);

impl Dedicated {
    fn take(&self) -> Option<SendRequest<ProxyBody>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn keep(&self, sender: SendRequest<ProxyBody>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
    }
}

/// Why a request on a dedicated connection got no response.
pub enum SendFailure {
    /// No connection to Vaultwarden could be opened.
    Connect(ProxyError),
    /// The request was sent (perhaps partly) and failed.
    Send(hyper::Error),
}

impl Proxy {
    /// Opens an HTTP/1.1 connection to Vaultwarden within the connect timeout
    /// and spawns its driver (`upgrades`: for a hub, which outlives the
    /// request).
    pub(super) async fn connect_upstream(
        &self,
        upgrades: bool,
    ) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let addr = self.upstream_authority.as_str();
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(self.unreachable(&e)),
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                return Err(self.unreachable(&e));
            }
        };
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(|e| self.unreachable(&e))?;
        tokio::spawn(async move {
            let ended = if upgrades { conn.with_upgrades().await } else { conn.await };
            if let Err(e) = ended {
                tracing::debug!("upstream connection: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends `req` (origin-form target) on the client connection's own
    /// upstream connection, opening it when there is none or it was closed
    /// (Vaultwarden ends idle keep-alive connections). A request that could
    /// not be written because the connection was closing just then is sent
    /// once more on a new connection, as the pooled client does.
    pub(super) async fn send_dedicated(
        &self,
        dedicated: &Dedicated,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, SendFailure> {
        let mut kept = dedicated.take();
        loop {
            let reused = kept.is_some();
            let open = match kept.take() {
                Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
                None => None,
            };
            let mut sender = match open {
                Some(sender) => sender,
                None => self.connect_upstream(false).await.map_err(SendFailure::Connect)?,
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    // Ready again once this response's body has been read.
                    dedicated.keep(sender);
                    return Ok(resp);
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendFailure::Send(failed.into_error())),
                },
            }
        }
    }
}
