//! The accept loop shared by the small plain-HTTP listeners (`[redirect]`,
//! `[metrics]`): HTTP/1.1 only, bounded in time, stopped with the server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::conn_limit::ConnLimit;

/// Binds `listen`; the returned future answers every request with `handle`
/// until `stop` turns true, with at most what `cap` allows open at once.
pub async fn listener<F, Fut>(
    listen: SocketAddr,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    cap: Arc<ConnLimit>,
    handle: F,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let serve = async move {
        loop {
            let (tcp, slot) = tokio::select! {
                _ = crate::server::stopped(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => match cap.acquire(peer.ip()) {
                        Ok(slot) => (tcp, slot),
                        Err(refused) => {
                            if cap.should_warn() {
                                tracing::warn!("{name} listener: {} connections open, refusing {}", refused.limit(), peer.ip());
                            }
                            continue;
                        }
                    },
                    Err(e) => {
                        tracing::error!("{name} listener: accept failed: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let answer = handle(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), service);
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
                drop(slot);
            });
        }
    };
    Ok((bound, serve))
}
