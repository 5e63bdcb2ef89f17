//! The accept loop every listener runs (HTTPS, `[redirect]`, `[metrics]`):
//! each new connection takes a place under its listener's cap or is closed
//! at once, accept errors are backed off, and the loop ends when shutdown
//! begins.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::conn_limit::{ConnLimit, Refused, Slot};
use crate::io::linger::Linger;
use crate::proxy::body::ProxyBody;
use crate::shutdown::stopped;

/// What one kind of listener does with a new connection.
pub trait Handler {
    /// The connection's place under the caps, or why it gets none.
    fn admit(&self, peer: SocketAddr) -> Result<Slot, Refused>;
    /// Told of a refused connection (closed once this returns).
    fn refused(&self, peer: SocketAddr, refused: Refused);
    /// Serves an admitted connection, on a task of its own.
    fn serve(&self, tcp: TcpStream, peer: SocketAddr, slot: Slot);
}

/// Accepts on `listener` (`name`d in the log) until `stop` turns true.
pub async fn run(
    listener: TcpListener,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    handler: impl Handler,
) {
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match handler.admit(peer) {
                    Ok(slot) => handler.serve(tcp, peer, slot),
                    // Dropping `tcp` closes it.
                    Err(refused) => handler.refused(peer, refused),
                },
                Err(e) => {
                    // EMFILE and friends: the loop must survive them. Back
                    // off so a full descriptor table is not spun on.
                    tracing::error!("{name} listener: accept failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Binds `listen` (or takes systemd's socket for it) for one of the small plain-HTTP listeners: HTTP/1.1 only,
/// bounded in time. The returned future answers every request with `handle`
/// until `stop` turns true, with at most what `cap` allows open at once.
pub async fn plain_http<F, Fut>(
    listen: SocketAddr,
    name: &'static str,
    stop: watch::Receiver<bool>,
    cap: Arc<ConnLimit>,
    handle: F,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listener = TcpListener::from_std(super::listener::open_plain(listen)?)?;
    let bound = listener.local_addr()?;
    Ok((bound, run(listener, name, stop, PlainHttp { name, cap, handle })))
}

struct PlainHttp<F> {
    name: &'static str,
    cap: Arc<ConnLimit>,
    handle: F,
}

impl<F, Fut> Handler for PlainHttp<F>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    fn admit(&self, peer: SocketAddr) -> Result<Slot, Refused> {
        self.cap.acquire(peer.ip())
    }

    fn refused(&self, peer: SocketAddr, refused: Refused) {
        if self.cap.should_warn() {
            tracing::warn!(
                "{} listener: {} connections open, refusing {}",
                self.name,
                refused.limit(),
                peer.ip()
            );
        }
    }

    fn serve(&self, tcp: TcpStream, _peer: SocketAddr, slot: Slot) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = handle(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(Linger::new(tcp)), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            drop(slot);
        });
    }
}
