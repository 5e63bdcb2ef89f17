//! Listeners, the accept loop, per-connection TLS and HTTP, and graceful
//! shutdown. Requests themselves are `proxy.rs`'s business.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::access_log::Sink;
use crate::acme::{self, Live};
use crate::body::Metered;
use crate::config::{AcmeConfig, Config, TlsSource};
use crate::conn_limit::{Caps, ConnLimit, Refused, Slot};
use crate::h1_guard::H1Guard;
use crate::metrics::{Metrics, Protocol};
use crate::proxy::{ClientConn, Proxy};
use crate::send_watch::{self, Guarded, Progress, Watched};
use crate::tls;
use crate::workers::{bind, Workers};
use crate::write_batch::WriteBatch;

/// Counts live tasks (connections, hub tunnels) so shutdown can wait for them.
/// Each task holds a token; when the last token and the tracker itself are
/// gone, [`Tracker::wait`] returns.
#[derive(Clone)]
pub struct Tracker(mpsc::Sender<()>);

pub struct TrackerToken(#[allow(dead_code)] mpsc::Sender<()>);

impl Tracker {
    fn new() -> (Tracker, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel(1);
        (Tracker(tx), rx)
    }

    pub fn token(&self) -> TrackerToken {
        TrackerToken(self.0.clone())
    }
}

/// Resolves once shutdown has begun. (Drops the watch guard before returning,
/// so it can sit in a `select!` of a task that must be `Send`.)
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot open the access log {path}: {source}")]
    AccessLog { path: String, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind { addr: SocketAddr, source: std::io::Error, hint: &'static str },
}

/// Why a reload was refused (the running configuration stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot open the access log {path}: {source}")]
    AccessLog { path: String, source: std::io::Error },
}

/// A running proxy.
pub struct Server {
    local_addr: SocketAddr,
    redirect_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// What new connections are served with; replaced by [`Server::reload`].
    current: watch::Sender<Connection>,
    /// The configuration in force, for what a reload cannot change.
    config: std::sync::Mutex<Config>,
    tracker: Tracker,
    /// The ACME certificate and challenge answers (empty without `[tls] acme`).
    live: Arc<Live>,
    /// Obtains and renews the certificate with `[tls] acme`.
    acme: std::sync::Mutex<Option<acme::Manager>>,
    /// The runtimes of workers beyond the first (which is the caller's).
    workers: Workers,
    /// What is open, counted across reloads.
    caps: Arc<Caps>,
}

/// Waits for every worker to stop accepting, then for the live connections
/// and tunnels to finish, at most `drain`.
async fn drained(accepting: Vec<JoinHandle<()>>, mut done: mpsc::Receiver<()>, drain: Duration) {
    for worker in accepting {
        let _ = worker.await;
    }
    tracing::info!("stopped accepting; draining for up to {drain:?}");
    if tokio::time::timeout(drain, done.recv()).await.is_err() {
        tracing::warn!("drain deadline passed with connections still open");
    }
}

fn acme_of(config: &Config) -> Option<&AcmeConfig> {
    match &config.tls.source {
        TlsSource::Acme(acme) => Some(acme),
        _ => None,
    }
}

impl Server {
    /// Loads the certificate, binds the listener and starts accepting.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let live = Arc::new(Live::default());
        let tls = tls::load(&config.tls, &live)?;
        log_self_signed(&tls);
        let listener = bind(config.listen).map_err(|source| {
            let hint = match source.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    " (ports below 1024 need root or CAP_NET_BIND_SERVICE; see examples/deploy/vaultgate.service)"
                }
                std::io::ErrorKind::AddrInUse => " (another program, perhaps nginx, is listening there)",
                _ => "",
            };
            StartError::Bind { addr: config.listen, source, hint }
        })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
            hint: "",
        })?;
        // Every further worker listens on a socket of its own on the same
        // address; the kernel spreads new connections over them.
        let copies = (1..config.limits.workers)
            .map(|_| bind(local_addr))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|source| StartError::Bind { addr: local_addr, source, hint: " (a further worker)" })?;
        let listener = TcpListener::from_std(listener).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
            hint: "",
        })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tracker, done) = Tracker::new();
        let metrics = Arc::new(Metrics::default());
        let caps = Caps::new(&config.limits);
        let first = Connection::new(&config, tls, stop_rx, &tracker, metrics.clone(), &caps)
            .map_err(|source| StartError::AccessLog { path: format!("{:?}", config.access_log), source })?;
        let (current, conn) = watch::channel(first);
        let limit = caps.connections.clone();
        let accept = Accept { listener, limit: limit.clone(), conn: conn.clone(), tracker: tracker.clone() };
        let workers = Workers::start(config.limits.workers).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
            hint: " (starting a worker)",
        })?;
        let redirect_addr = match config.redirect {
            None => None,
            Some(addr) => {
                let names = config.tls.server_names.clone();
                // Its own cap: plain-HTTP clients must not use up the
                // descriptors that HTTPS needs.
                let cap = ConnLimit::new(
                    config.limits.max_connections.min(REDIRECT_MAX_CONNECTIONS),
                    config.limits.max_connections_per_ip,
                    config.limits.ipv6_prefix,
                );
                let (bound, serve) = crate::redirect::start(
                    addr,
                    local_addr.port(),
                    names,
                    live.clone(),
                    stop_tx.subscribe(),
                    cap,
                )
                .await
                .map_err(|source| StartError::Bind {
                    addr,
                    source,
                    hint: " ([redirect] listen)",
                })?;
                tracing::info!(listen = %bound, "redirecting plain HTTP to https");
                tokio::spawn(serve);
                Some(bound)
            }
        };
        let metrics_addr = match config.metrics {
            None => None,
            Some(addr) => {
                let cap = ConnLimit::new(METRICS_MAX_CONNECTIONS, METRICS_MAX_CONNECTIONS, 128);
                let (bound, serve) = crate::metrics_listener::start(
                    addr,
                    metrics.clone(),
                    config.upstream.clone(),
                    stop_tx.subscribe(),
                    cap,
                )
                .await
                .map_err(|source| StartError::Bind {
                    addr,
                    source,
                    hint: " ([metrics] listen)",
                })?;
                tracing::info!(listen = %bound, "metrics on /metrics, health on /healthz");
                tokio::spawn(serve);
                Some(bound)
            }
        };
        tracing::info!(
            listen = %local_addr,
            upstream = %config.upstream.url,
            workers = config.limits.workers,
            config = %config.source.display(),
            "vaultgate is listening"
        );
        // Started once the listeners are bound: the CA may connect at once.
        let acme =
            std::sync::Mutex::new(acme_of(&config).map(|a| acme::Manager::start(a.clone(), live.clone())));
        // Accepting starts last, when nothing more can fail.
        let mut accepting = vec![tokio::spawn(accept.run())];
        for ((index, runtime), copy) in workers.runtimes().zip(copies) {
            let (limit, conn, tracker) = (limit.clone(), conn.clone(), tracker.clone());
            accepting.push(runtime.spawn(async move {
                match TcpListener::from_std(copy) {
                    Ok(listener) => Accept { listener, limit, conn, tracker }.run().await,
                    Err(e) => tracing::error!("worker {index} cannot accept: {e}"),
                }
            }));
        }
        let task = tokio::spawn(drained(accepting, done, config.timeouts.drain));
        let config = std::sync::Mutex::new(config);
        Ok(Server {
            local_addr,
            redirect_addr,
            metrics_addr,
            stop: stop_tx,
            task,
            current,
            config,
            tracker,
            live,
            acme,
            workers,
            caps,
        })
    }

    /// Serves new connections with `config` from now on. Established
    /// connections, and the hub tunnels on them, keep what they started with.
    /// A certificate that does not load is refused and nothing changes.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        let tls = tls::load(&config.tls, &self.live)?;
        log_self_signed(&tls);
        let mut running = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let needs_restart = [
            (config.listen != running.listen, "listen"),
            (config.limits.max_connections != running.limits.max_connections, "limits.max_connections"),
            (
                config.limits.max_connections_per_ip != running.limits.max_connections_per_ip,
                "limits.max_connections_per_ip",
            ),
            (config.timeouts.drain != running.timeouts.drain, "timeouts.drain"),
            (config.limits.workers != running.limits.workers, "limits.workers"),
            (config.limits.ipv6_prefix != running.limits.ipv6_prefix, "limits.ipv6_prefix"),
            (config.limits.max_hubs_per_ip != running.limits.max_hubs_per_ip, "limits.max_hubs_per_ip"),
            (
                config.limits.max_upstream_per_ip != running.limits.max_upstream_per_ip,
                "limits.max_upstream_per_ip",
            ),
        ];
        for (changed, key) in needs_restart {
            if changed {
                tracing::warn!("`{key}` changed: it takes effect only after a restart");
            }
        }
        let (stop, metrics) = {
            let current = self.current.borrow();
            (current.stop.clone(), current.metrics.clone())
        };
        let next = Connection::new(&config, tls, stop, &self.tracker, metrics, &self.caps)
            .map_err(|source| ReloadError::AccessLog { path: format!("{:?}", config.access_log), source })?;
        self.current.send_replace(next);
        // Started afresh (the old task stops when dropped): picks up a new
        // domain or CA, and a stored certificate removed to force a renewal.
        let mut manager = self.acme.lock().unwrap_or_else(|e| e.into_inner());
        *manager = acme_of(&config).map(|a| acme::Manager::start(a.clone(), self.live.clone()));
        drop(manager);
        tracing::info!(config = %config.source.display(), upstream = %config.upstream.url, "reloaded");
        *running = config;
        Ok(())
    }

    /// The counters behind the `[metrics]` listener.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.current.borrow().metrics.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics listener's address, if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The plain-HTTP redirect listener's address, if one is configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    /// Stops accepting, lets in-flight requests finish, closes hub tunnels and
    /// returns once all are done or the drain deadline has passed.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        drop(self.acme);
        // The tracker waits for every holder, these included.
        drop((self.current, self.tracker));
        let _ = self.task.await;
        // Whatever outlived the drain deadline ends with its worker.
        drop(self.workers);
    }
}

fn log_self_signed(tls: &tls::Tls) {
    if let Some(fp) = &tls.self_signed_fingerprint {
        tracing::warn!(
            "no [tls] cert/key configured: serving a self-signed certificate for localhost, SHA-256 fingerprint {fp}"
        );
    }
}

/// The plain-HTTP redirect listener's cap on open connections.
const REDIRECT_MAX_CONNECTIONS: usize = 1024;
/// The metrics listener's: a scraper and a health checker need a few.
const METRICS_MAX_CONNECTIONS: usize = 64;

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
struct Http {
    h1: http1::Builder,
    h2: http2::Builder<SpanExecutor>,
}

fn http_builder(config: &Config) -> Http {
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

struct Accept {
    listener: TcpListener,
    limit: Arc<ConnLimit>,
    /// The generation new connections get (see [`Server::reload`]).
    conn: watch::Receiver<Connection>,
    tracker: Tracker,
}

impl Accept {
    /// Accepts until shutdown begins.
    async fn run(self) {
        let mut stop = self.conn.borrow().stop.clone();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // A trusted proxy's address carries many clients:
                        // they are counted once resolved (hubs, upstream).
                        let trusted = self.conn.borrow().proxy.trusts(peer.ip());
                        let slot = if trusted { self.limit.acquire_total() } else { self.limit.acquire(peer.ip()) };
                        let slot = match slot {
                            Ok(slot) => slot,
                            Err(refused) => {
                                self.conn.borrow().metrics.connection_refused();
                                if self.limit.should_warn() {
                                    let what = match refused {
                                        Refused::Total(n) => format!("max_connections ({n})"),
                                        Refused::PerIp(n) => format!("max_connections_per_ip ({n}) for {}", peer.ip()),
                                    };
                                    tracing::warn!("connection limit reached: {what}; refusing new connections ([limits] in the config)");
                                }
                                continue; // dropping `tcp` closes it
                            }
                        };
                        let conn = self.conn.borrow().clone();
                        let current = self.conn.clone();
                        let token = self.tracker.token();
                        let span = tracing::info_span!("conn", %peer, protocol = tracing::field::Empty);
                        tokio::spawn(
                            async move {
                                // Shared: a hub tunnel taken over from this
                                // connection holds its place until it closes.
                                conn.serve(tcp, peer, Arc::new(slot), current).await;
                                drop(token);
                            }
                            .instrument(span),
                        );
                    }
                    Err(e) => {
                        // EMFILE and friends: the loop must survive them. Back
                        // off so a full descriptor table is not spun on.
                        tracing::error!("accept failed: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }
}

/// What every client connection needs, built from one configuration (a
/// generation); cloned per connection.
#[derive(Clone)]
struct Connection {
    acceptor: TlsAcceptor,
    http: Arc<Http>,
    proxy: Arc<Proxy>,
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
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl Connection {
    fn new(
        config: &Config,
        tls: tls::Tls,
        stop: watch::Receiver<bool>,
        tracker: &Tracker,
        metrics: Arc<Metrics>,
        caps: &Arc<Caps>,
    ) -> std::io::Result<Connection> {
        let access = Sink::open(config.access_log.clone(), config.access_format, metrics.clone())?;
        Ok(Connection {
            acceptor: TlsAcceptor::from(tls.config),
            http: Arc::new(http_builder(config)),
            proxy: Arc::new(Proxy::new(
                config,
                stop.clone(),
                tracker.clone(),
                Arc::new(access),
                caps.clone(),
            )),
            handshake_timeout: config.timeouts.tls_handshake,
            keep_alive: config.timeouts.keep_alive,
            request_header: config.timeouts.request_header,
            drain: config.timeouts.drain,
            send_idle: config.timeouts.send_idle,
            max_upstream_per_connection: config.limits.max_upstream_per_connection,
            stop,
            metrics,
        })
    }

    /// Serves one client connection: TLS and the protocol with this
    /// generation's settings, each request with the proxy of the generation
    /// `current` holds when it arrives (a reload's access lists and trusted
    /// proxies apply to the next request, also on connections open before).
    async fn serve(
        self,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: Arc<Slot>,
        current: watch::Receiver<Connection>,
    ) {
        let _ = tcp.set_nodelay(true);
        let (tcp, sending) = Progress::new(tcp);
        let tls = match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake failed: {e}");
                self.metrics.tls_handshake_failed();
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                self.metrics.tls_handshake_failed();
                return;
            }
        };
        let alpn = tls.get_ref().1.alpn_protocol();
        if alpn == Some(tls::ACME_TLS_ALPN) {
            // RFC 8737: the CA's TLS-ALPN-01 check is the handshake itself.
            tracing::info!("answered an ACME TLS-ALPN-01 check");
            return;
        }
        let http2 = alpn == Some(b"h2");
        tracing::Span::current().record("protocol", if http2 { "h2" } else { "http/1.1" });
        let client = Arc::new(ClientConn::new(peer, slot, self.max_upstream_per_connection, sending));
        if http2 {
            self.serve_http(WriteBatch::new(tls), client, current, true).await;
        } else {
            let max_header_line = self.proxy.max_header_line();
            self.serve_http(H1Guard::new(tls, max_header_line), client, current, false).await;
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
        let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let proxy = current.borrow().proxy.clone();
            let client = client.clone();
            // Only HTTP/2 connections are closed for idleness by counting
            // requests in flight (HTTP/1.1's is hyper's header read timeout):
            // nothing to count, and no extensions map to allocate, otherwise.
            let busy = http2.then(|| InFlight(Arc::new(tracked.begin())));
            if let Some(busy) = &busy {
                req.extensions_mut().insert(busy.clone());
            }
            // Boxed: hyper's HTTP/2 server moves each stream's future by value
            // several times, and ours is kilobytes.
            Box::pin(async move {
                let resp = proxy.handle(req, &client).await;
                // An HTTP/2 stream's window, held shut while the connection
                // flows, is watched on its body (see SpanExecutor); the socket
                // itself is watched below TLS, for every connection.
                let stream = send_watch::current();
                if let Some(stream) = &stream {
                    stream.within(client.sending());
                }
                // The request counts as in flight until its response body is done.
                Ok::<_, Infallible>(
                    resp.map(|b| Watched::new(Metered::new(b, move |_, _| drop(busy)), stream)),
                )
            })
        });
        // The protocol is the one ALPN chose: HTTP/2 over TLS is only ever
        // negotiated there (RFC 9113 §3.2), so nothing is sniffed from the bytes.
        let io = TokioIo::new(io);
        let send_idle = self.send_idle;
        let served = if http2 {
            let conn = self.http.h2.serve_connection(io, service);
            let idle = activity.idle_for(self.request_header, self.keep_alive);
            Guarded::new(self.drive(conn, http2::Connection::graceful_shutdown, idle), sending, send_idle)
                .await
        } else {
            // HTTP/1.1 keep-alive idleness (and the first request's wait) is
            // bounded by hyper's header read timeout.
            let conn = self.http.h1.serve_connection(io, service).with_upgrades();
            let driven =
                self.drive(conn, http1::UpgradeableConnection::graceful_shutdown, std::future::pending());
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

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    start: Instant,
    /// Requests begun so far (only whether there was one matters).
    begun: AtomicUsize,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` when the connection last became idle.
    idle_since_ms: AtomicU64,
}

struct Busy(Arc<Activity>);

/// Marks a request as in flight on its connection until every clone is
/// dropped. One clone rides in the request's extensions so that a hub tunnel
/// can hold it: an HTTP/2 connection carrying a hub is not idle.
#[derive(Clone)]
pub struct InFlight(#[allow(dead_code)] Arc<Busy>);

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            begun: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `limit`, or, before
    /// the first request (a peer that sends no preface, or only SETTINGS
    /// and PINGs), once `first` has passed.
    async fn idle_for(&self, first: Duration, limit: Duration) {
        loop {
            if self.begun.load(Ordering::Relaxed) == 0 {
                let due = self.start + first;
                if Instant::now() >= due {
                    return;
                }
                // Looked at again within `limit`: the first request may
                // begin meanwhile, and then `limit` is what counts.
                tokio::time::sleep_until(due.min(Instant::now() + limit)).await;
                continue;
            }
            let wake = if self.in_flight.load(Ordering::SeqCst) == 0 {
                let since = self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
                if since.elapsed() >= limit && self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                since + limit
            } else {
                Instant::now() + limit
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(self.0.start.elapsed().as_millis() as u64, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
