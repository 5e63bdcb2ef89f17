//! One client connection: the TLS handshake, ALPN, and HTTP/1.1 or HTTP/2
//! served with hyper until the connection ends, idles or shutdown drains it.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::accept::Handler;
use super::idle::Activity;
use crate::config::Config;
use crate::conn_limit::{Caps, ConnLimit, Refused, Slot};
use crate::http::client_cert::ClientCert;
use crate::http::client_ip::Cidr;
use crate::io::h1_guard::H1Guard;
use crate::io::linger::Linger;
use crate::io::proxy_header;
use crate::io::send_watch::{self, Guarded, Progress, Watched};
use crate::io::write_batch::WriteBatch;
use crate::login_guard::Guard;
use crate::observe::access_log::Sink;
use crate::observe::metrics::{Metrics, Protocol};
use crate::proxy::body::OnEnd;
use crate::proxy::{ClientConn, Presented, Proxy};
use crate::shutdown::{stopped, Tracker};
use crate::tls;

/// The HTTPS listener's side of the accept loop (one per worker).
pub struct Clients {
    pub limit: Arc<ConnLimit>,
    /// The generation new connections get (see `Server::reload`).
    pub conn: watch::Receiver<Connection>,
    pub tracker: Tracker,
    /// Which worker accepts: its connections use its idle upstream connections.
    pub worker: usize,
}

impl Handler for Clients {
    fn admit(&self, peer: SocketAddr) -> Result<Slot, Refused> {
        // A trusted proxy's or a relay's address carries many clients: they
        // are counted once known (a relay's by its PROXY header, a proxy's
        // by hubs and upstream requests).
        let conn = self.conn.borrow();
        if conn.relays(peer.ip()) || conn.proxy.trusts(peer.ip()) {
            self.limit.acquire_total()
        } else {
            self.limit.acquire(peer.ip())
        }
    }

    fn refused(&self, peer: SocketAddr, refused: Refused) {
        self.conn.borrow().metrics.connection_refused();
        warn_refused(&self.limit, peer, refused);
    }

    fn serve(&self, tcp: TcpStream, peer: SocketAddr, slot: Slot) {
        let conn = self.conn.borrow().clone();
        let current = self.conn.clone();
        let token = self.tracker.token();
        let worker = self.worker;
        let limit = self.limit.clone();
        let span = tracing::info_span!(
            "conn",
            %peer,
            client = tracing::field::Empty,
            protocol = tracing::field::Empty
        );
        tokio::spawn(
            async move {
                if let Some((tcp, peer, slot, relay_itself)) = conn.relayed(tcp, peer, slot, &limit).await {
                    // Shared: a hub tunnel taken over from this connection
                    // holds its place until it closes.
                    conn.serve(tcp, peer, Arc::new(slot), current, worker, relay_itself).await;
                }
                drop(token);
            }
            .instrument(span),
        );
    }
}

/// Verifies `presented` again if `current` is a newer generation than the
/// one it was verified under; the verifier logs a refusal, counted here.
fn recheck(presented: &Presented, current: &Connection) {
    if let Err(e) = presented.recheck(current.generation, current.client_verifier.as_deref()) {
        current.metrics.client_cert_rejected(tls::client_auth::refusal_reason(&e));
        tracing::info!(
            "closing the connection and its hubs: its client certificate no longer verifies after a reload"
        );
    }
}

/// Verifies the connection's certificate again on every reload, so that
/// connections with no request to come (an idle HTTP/1.1 keep-alive, one
/// upgraded to a hub tunnel) are closed too. Ends with the connection and
/// its tunnels (every holder of `presented` gone), or once it is refused.
fn watch_reloads(presented: &Arc<Presented>, mut current: watch::Receiver<Connection>) {
    let weak = Arc::downgrade(presented);
    let mut gone = presented.subscribe();
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    changed = current.changed() => {
                        let Some(presented) = weak.upgrade().filter(|_| changed.is_ok()) else { return };
                        let generation = current.borrow_and_update().clone();
                        recheck(&presented, &generation);
                        if presented.is_revoked() {
                            return;
                        }
                    }
                    _ = gone.changed() => return,
                }
            }
        }
        .in_current_span(),
    );
}

fn warn_refused(limit: &ConnLimit, client: SocketAddr, refused: Refused) {
    if limit.should_warn() {
        let what = match refused {
            Refused::Total(n) => format!("max_connections ({n})"),
            Refused::PerIp(n) => format!("max_connections_per_ip ({n}) for {}", client.ip()),
        };
        tracing::warn!("connection limit reached: {what}; refusing new connections ([limits] in the config)");
    }
}

/// Spawns hyper's per-stream tasks (HTTP/2) inside the connection's span, so
/// their log lines carry the peer and protocol, each under the send timeout.
#[derive(Clone, Copy)]
struct SpanExecutor {
    send_idle: Duration,
}

impl<F> hyper::rt::Executor<F> for SpanExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let limit = self.send_idle;
        tokio::spawn(
            async move {
                if send_watch::stream(fut, limit).await.is_none() {
                    tracing::debug!("stream reset: the client took nothing of its response for {limit:?}");
                }
            }
            .in_current_span(),
        );
    }
}

/// How connections are served, one builder per protocol.
pub struct Http {
    h1: http1::Builder,
    h2: http2::Builder<SpanExecutor>,
}

pub fn http_builder(config: &Config) -> Http {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(config.timeouts.request_header)
        // Bounds the request head (414 for a longer request line, else 431)
        // and hyper's read buffer.
        .max_buf_size(64 * 1024)
        .max_headers(100)
        // Vaultwarden sends its own Date; a 101 must reach the client unchanged.
        .auto_date_header(false);
    let mut h2 = http2::Builder::new(SpanExecutor { send_idle: config.timeouts.send_idle });
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(64 * 1024)
        // Rapid reset (CVE-2023-44487): a client that keeps cancelling streams
        // the server has not yet accepted is sent GOAWAY.
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(256)
        // Response bytes h2 buffers per stream beyond what the client's
        // window lets out: the rest waits upstream, not in our memory.
        .max_send_buf_size(64 * 1024)
        // Dead peers are found by ping rather than by the idle timeout.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .auto_date_header(false);
    if config.http2_websockets {
        // SETTINGS_ENABLE_CONNECT_PROTOCOL: browsers may open hubs as extended
        // CONNECT streams (RFC 8441); proxy/hub.rs translates them.
        h2.enable_connect_protocol();
    }
    Http { h1, h2 }
}

/// Numbers the generations, so that a connection can tell whether its
/// client certificate was verified under the one in force.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What every client connection needs, built from one configuration (a
/// generation); cloned per connection.
#[derive(Clone)]
pub struct Connection {
    generation: u64,
    acceptor: TlsAcceptor,
    http: Arc<Http>,
    pub proxy: Arc<Proxy>,
    handshake_timeout: Duration,
    /// An HTTP/2 connection with no request in flight for this long is closed.
    keep_alive: Duration,
    /// How long a connection may take to send its first request (HTTP/2:
    /// the preface included), and how long a connection closed for
    /// idleness may take to finish closing.
    request_header: Duration,
    drain: Duration,
    send_idle: Duration,
    max_upstream_per_connection: usize,
    /// `[proxy_protocol] from`: the relays whose connections start with a PROXY header.
    relays: Arc<[Cidr]>,
    /// With `[tls.client_auth]`, the verifier this generation's handshakes
    /// use (handshake refusals are counted by reason only then: a refused
    /// server certificate is not a client's).
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    pub stop: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
}

impl Connection {
    pub fn new(
        config: &Config,
        tls: tls::Tls,
        stop: watch::Receiver<bool>,
        tracker: &Tracker,
        metrics: Arc<Metrics>,
        caps: &Arc<Caps>,
        guard: &Arc<Guard>,
    ) -> std::io::Result<Connection> {
        let access = Sink::open(config.access_log.clone(), config.access_format)?;
        let client_verifier = tls.client_verifier.clone();
        Ok(Connection {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            acceptor: TlsAcceptor::from(tls.config),
            http: Arc::new(http_builder(config)),
            proxy: Arc::new(Proxy::new(
                config,
                stop.clone(),
                tracker.clone(),
                Arc::new(access),
                metrics.clone(),
                caps.clone(),
                guard.clone(),
            )),
            handshake_timeout: config.timeouts.tls_handshake,
            keep_alive: config.timeouts.keep_alive,
            request_header: config.timeouts.request_header,
            drain: config.timeouts.drain,
            send_idle: config.timeouts.send_idle,
            max_upstream_per_connection: config.limits.max_upstream_per_connection,
            relays: config.proxy_protocol.clone().into(),
            client_verifier,
            stop,
            metrics,
        })
    }

    /// Whether a connection from `peer` must start with a PROXY header.
    fn relays(&self, peer: IpAddr) -> bool {
        self.relays.iter().any(|net| net.contains(peer))
    }

    /// A relay's connection, once its PROXY header has named the client:
    /// the client's address, its place counted under that address, and
    /// whether the relay spoke for itself (LOCAL, UNKNOWN). Other
    /// connections pass as they are. `None`: closed (no header, a
    /// malformed one, or the client is over its cap).
    async fn relayed(
        &self,
        mut tcp: TcpStream,
        peer: SocketAddr,
        mut slot: Slot,
        limit: &ConnLimit,
    ) -> Option<(TcpStream, SocketAddr, Slot, bool)> {
        if !self.relays(peer.ip()) {
            return Some((tcp, peer, slot, false));
        }
        let read = tokio::time::timeout(self.handshake_timeout, proxy_header::read(&mut tcp)).await;
        let (client, relay_itself) = match read {
            Ok(Ok(Some(client))) => (client, false),
            // The relay's own connection (a health check), or one whose
            // client it could not name (UNKNOWN, a UNIX socket): the relay
            // is the client, but it never counts as an exempt network.
            Ok(Ok(None)) => (peer, true),
            Ok(Err(e)) => {
                self.metrics.proxy_header_refused();
                tracing::warn!("connection from relay {peer} closed: {e} ([proxy_protocol] in the config)");
                return None;
            }
            Err(_) => {
                self.metrics.proxy_header_refused();
                tracing::debug!(
                    "connection from relay {peer} closed: no PROXY header within {:?}",
                    self.handshake_timeout
                );
                return None;
            }
        };
        tracing::Span::current().record("client", tracing::field::display(client));
        if !self.proxy.trusts(client.ip()) {
            if let Err(refused) = slot.count_as(client.ip()) {
                self.metrics.connection_refused();
                warn_refused(limit, client, refused);
                return None;
            }
        }
        Some((tcp, client, slot, relay_itself))
    }

    /// Serves one client connection: TLS and the protocol with this
    /// generation's settings, each request with the proxy of the generation
    /// `current` holds when it arrives (a reload's access lists and trusted
    /// proxies apply to the next request, also on connections open before).
    pub async fn serve(
        self,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: Arc<Slot>,
        current: watch::Receiver<Connection>,
        worker: usize,
        relay_itself: bool,
    ) {
        let _ = tcp.set_nodelay(true);
        let (tcp, sending) = Progress::new(tcp);
        let tcp = Linger::new(tcp);
        let tls = match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake failed: {e}");
                self.metrics.tls_handshake_failed();
                // The verifier has logged the certificate's subject and why.
                if let Some(
                    e @ (rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)),
                ) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
                {
                    if self.client_verifier.is_some() {
                        self.metrics.client_cert_rejected(tls::client_auth::refusal_reason(e));
                    }
                }
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                self.metrics.tls_handshake_failed();
                return;
            }
        };
        if let Err(e) = self.verify_resumed(tls.get_ref().1) {
            // Closed before a byte of HTTP: a ticket must not outlive the
            // certificate it was issued for.
            tracing::debug!("resumed TLS session closed: its client certificate no longer verifies: {e}");
            self.metrics.client_cert_rejected(tls::client_auth::refusal_reason(&e));
            return;
        }
        let alpn = tls.get_ref().1.alpn_protocol();
        if alpn == Some(tls::ACME_TLS_ALPN) {
            // RFC 8737: the CA's TLS-ALPN-01 check is the handshake itself.
            tracing::info!("answered an ACME TLS-ALPN-01 check");
            return;
        }
        let http2 = alpn == Some(b"h2");
        tracing::Span::current().record("protocol", if http2 { "h2" } else { "http/1.1" });
        // Only a certificate the verifier accepted gets here: one that did
        // not verify has failed the handshake.
        let chain = tls.get_ref().1.peer_certificates().filter(|c| !c.is_empty());
        let cert = chain.and_then(|chain| chain.first()).map(|leaf| ClientCert {
            subject: tls::x509::subject(leaf).unwrap_or_default(),
            serial: tls::x509::serial(leaf).unwrap_or_default(),
        });
        if let Some(cert) = &cert {
            tracing::debug!(subject = %cert.subject, serial = %cert.serial, "client certificate verified");
            self.metrics.client_cert_connection(&cert.subject, &cert.serial);
        }
        let presented = match (chain, &self.client_verifier) {
            (Some(chain), Some(_)) => {
                let presented = Arc::new(Presented::new(chain.to_vec(), self.generation));
                watch_reloads(&presented, current.clone());
                Some(presented)
            }
            _ => None,
        };
        let client = Arc::new(
            ClientConn::new(peer, slot, self.max_upstream_per_connection, sending, worker, cert, presented)
                .of_relay_itself(relay_itself),
        );
        if http2 {
            self.serve_http(WriteBatch::new(tls), client, current, true).await;
        } else {
            let max_header_line = self.proxy.max_header_line();
            self.serve_http(H1Guard::new(tls, max_header_line), client, current, false).await;
        }
    }

    /// A resumed session's chain, verified again: rustls restores it from
    /// the session without a look at its dates, and a ticket is renewed on
    /// every resumption, so an expired certificate would otherwise live on
    /// for as long as its device keeps resuming.
    fn verify_resumed(&self, tls: &rustls::ServerConnection) -> Result<(), rustls::Error> {
        match (&self.client_verifier, tls.peer_certificates()) {
            (Some(verifier), Some(chain)) if tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed) => {
                tls::client_auth::verify_again(verifier.as_ref(), chain)
            }
            _ => Ok(()),
        }
    }

    async fn serve_http<IO>(
        self,
        io: IO,
        client: Arc<ClientConn>,
        current: watch::Receiver<Connection>,
        http2: bool,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let _open = self.metrics.connection(if http2 { Protocol::Http2 } else { Protocol::Http1 });
        let activity = Arc::new(Activity::new());
        let tracked = activity.clone();
        let sending = client.sending().clone();
        let revoked = client.presented.as_ref().map(|p| p.on_revoked());
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let proxy = {
                let current = current.borrow();
                // The first request after a reload verifies the connection's
                // certificate again (watch_reloads may not have yet); refused,
                // the proxy answers 403 and the connection closes.
                if let Some(presented) = &client.presented {
                    recheck(presented, &current);
                }
                current.proxy.clone()
            };
            let client = client.clone();
            // Only HTTP/2 connections are closed for idleness by counting
            // requests in flight (HTTP/1.1's is hyper's header read timeout).
            let busy = http2.then(|| Arc::new(tracked.begin()));
            let in_flight = busy.clone().map(|b| b as Arc<dyn Send + Sync>);
            // Boxed: hyper's HTTP/2 server moves each stream's future by value
            // several times, and ours is kilobytes.
            Box::pin(async move {
                let resp = proxy.handle(req, &client, in_flight).await;
                // An HTTP/2 stream's window, held shut while the connection
                // flows, is watched on its body (see SpanExecutor); the socket
                // itself is watched below TLS, for every connection.
                let stream = send_watch::current();
                if let Some(stream) = &stream {
                    stream.within(client.sending());
                }
                // The request counts as in flight until its response body is done.
                Ok::<_, Infallible>(resp.map(|b| Watched::new(OnEnd::new(b, move |_, _| drop(busy)), stream)))
            })
        });
        // The protocol is the one ALPN chose: HTTP/2 over TLS is only ever
        // negotiated there (RFC 9113 §3.2), so nothing is sniffed from the bytes.
        let io = TokioIo::new(io);
        let send_idle = self.send_idle;
        // A certificate a reload refuses closes the connection as idleness
        // does: what is in flight finishes (the 403), then GOAWAY (HTTP/2) or
        // the close (HTTP/1.1, also between requests).
        let revoked = async move {
            match revoked {
                Some(revoked) => revoked.await,
                None => std::future::pending().await,
            }
        };
        let served = if http2 {
            let conn = self.http.h2.serve_connection(io, service);
            let idle = activity.idle_for(self.request_header, self.keep_alive);
            let idle = async move {
                tokio::select! {
                    _ = idle => {}
                    _ = revoked => {}
                }
            };
            Guarded::new(self.drive(conn, http2::Connection::graceful_shutdown, idle), sending, send_idle)
                .await
        } else {
            // HTTP/1.1 keep-alive idleness (and the first request's wait) is
            // bounded by hyper's header read timeout.
            let conn = self.http.h1.serve_connection(io, service).with_upgrades();
            let driven = self.drive(conn, http1::UpgradeableConnection::graceful_shutdown, revoked);
            Guarded::new(driven, sending, send_idle).await
        };
        if served.is_none() {
            tracing::debug!("connection closed: the client took nothing sent to it for {send_idle:?}");
        }
    }

    /// Serves a connection until it ends, or until shutdown begins or it has
    /// been `idle`, and then lets it finish what is in flight: at most the
    /// drain deadline after shutdown, at most `request_header` after
    /// idleness (a peer that never answers the close cannot hold its slot).
    async fn drive<C>(mut self, conn: C, graceful_shutdown: fn(Pin<&mut C>), idle: impl Future<Output = ()>)
    where
        C: Future<Output = hyper::Result<()>>,
    {
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            grace = async { tokio::select! {
                _ = stopped(&mut self.stop) => self.drain,
                _ = idle => self.request_header,
            } } => {
                graceful_shutdown(conn.as_mut());
                match tokio::time::timeout(grace, conn).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::debug!("connection cut: it did not finish closing within {grace:?}");
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!("connection ended: {e}");
        }
    }
}
