//! One client connection, as the requests on it see it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::conn_limit::Slot;
use crate::http::client_cert::ClientCert;
use crate::io::send_watch::SendWatch;

/// What the server keeps alive for as long as a request lasts, a hub tunnel
/// included: on HTTP/2, the connection's in-flight mark (`server/idle.rs`).
pub type InFlight = Option<Arc<dyn Send + Sync>>;

/// One client connection, as the requests on it see it.
pub struct ClientConn {
    pub peer: SocketAddr,
    /// Its place under `max_connections`: a hub tunnel taken over from an
    /// HTTP/1.1 connection keeps it until the tunnel closes.
    pub(super) slot: Arc<Slot>,
    /// Upstream requests this connection may have in flight at once.
    pub(super) upstream: Arc<Semaphore>,
    /// Whether its socket is waiting on the client to read (the send
    /// timeout); a hub tunnel taken over from it is watched with it too.
    pub(super) sending: Arc<SendWatch>,
    /// The worker serving it: its upstream requests use that worker's idle connections.
    pub(super) worker: usize,
    /// The client certificate it presented, verified in the handshake.
    pub cert: Option<ClientCert>,
}

impl ClientConn {
    pub fn new(
        peer: SocketAddr,
        slot: Arc<Slot>,
        max_upstream: usize,
        sending: Arc<SendWatch>,
        worker: usize,
        cert: Option<ClientCert>,
    ) -> ClientConn {
        ClientConn { peer, slot, upstream: Arc::new(Semaphore::new(max_upstream)), sending, worker, cert }
    }

    pub fn sending(&self) -> &Arc<SendWatch> {
        &self.sending
    }
}
