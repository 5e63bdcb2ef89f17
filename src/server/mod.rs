//! The running proxy: start, reload, shutdown. Requests themselves are
//! `proxy/`'s business.

pub mod accept;
pub mod admin;
pub mod listener;
pub mod redirect;

mod conn;
mod idle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::acme;
use crate::config::{AcmeConfig, Config, LocalCaConfig, TlsSource};
use crate::conn_limit::{Caps, ConnLimit};
use crate::login_guard::Guard;
use crate::observe::metrics::Metrics;
use crate::shutdown::Tracker;
use crate::tls;
use crate::tls::store::Live;
use conn::{Clients, Connection};
use listener::{bind, Origin, Workers};

/// Why the server could not start, or a reload was refused (the running
/// configuration then stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot open the access log {path}: {source}")]
    AccessLog { path: String, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind { addr: SocketAddr, source: std::io::Error, hint: &'static str },
    /// `acme.dns` names a secret file or hook that cannot be used.
    #[error("{0}")]
    Acme(String),
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
    /// Renews the local CA's certificate with `[tls] local_ca`.
    local_ca: std::sync::Mutex<Option<tls::local_ca::Renewal>>,
    /// The runtimes of workers beyond the first (which is the caller's).
    workers: Workers,
    /// What is open, counted across reloads.
    caps: Arc<Caps>,
    /// Failed logins and bans, kept across reloads.
    guard: Arc<Guard>,
    /// The guard's once-a-second task; its last tick writes the state file.
    guard_task: JoinHandle<()>,
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

fn local_ca_of(config: &Config) -> Option<&LocalCaConfig> {
    match &config.tls.source {
        TlsSource::LocalCa(ca) => Some(ca),
        _ => None,
    }
}

impl Server {
    /// Loads the certificate, binds the listener and starts accepting.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        if let Some(Err(e)) = acme_of(&config).and_then(acme::check_dns) {
            return Err(ServerError::Acme(e));
        }
        let live = Arc::new(Live::default());
        let tls = tls::load(&config.tls, &live)?;
        log_local_ca(&tls);
        let (listener, origin) = listener::open(config.listen).map_err(|source| {
            let hint = match source.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    " (ports below 1024 need root or CAP_NET_BIND_SERVICE; see examples/deploy/vaultgate.service)"
                }
                std::io::ErrorKind::AddrInUse => " (another program, perhaps nginx, is listening there)",
                _ => "",
            };
            ServerError::Bind { addr: config.listen, source, hint }
        })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
            hint: "",
        })?;
        // Every further worker listens on a socket of its own on the same
        // address; the kernel spreads new connections over them. systemd's
        // one socket is shared instead: binding more would need the right
        // to bind that socket activation spares us.
        let copies = (1..config.limits.workers)
            .map(|_| match origin {
                Origin::Bound => bind(local_addr),
                Origin::Inherited => listener.try_clone(),
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|source| ServerError::Bind { addr: local_addr, source, hint: " (a further worker)" })?;
        let listener = TcpListener::from_std(listener).map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
            hint: "",
        })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tracker, done) = Tracker::new();
        let metrics = Arc::new(Metrics::default());
        let caps = Caps::new(&config.limits);
        let guard = Guard::new(&config, metrics.clone());
        let guard_task = tokio::spawn(guard.clone().run(stop_tx.subscribe()));
        let first = Connection::new(&config, tls, stop_rx, &tracker, metrics.clone(), &caps, &guard)
            .map_err(|source| ServerError::AccessLog { path: format!("{:?}", config.access_log), source })?;
        let (current, conn) = watch::channel(first);
        let limit = caps.connections.clone();
        let clients =
            Clients { limit: limit.clone(), conn: conn.clone(), tracker: tracker.clone(), worker: 0 };
        let workers = Workers::start(config.limits.workers).map_err(|source| ServerError::Bind {
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
                let (bound, serve) =
                    redirect::start(addr, local_addr.port(), names, live.clone(), stop_tx.subscribe(), cap)
                        .await
                        .map_err(|source| ServerError::Bind { addr, source, hint: " ([redirect] listen)" })?;
                tracing::info!(listen = %bound, "redirecting plain HTTP to https");
                tokio::spawn(serve);
                Some(bound)
            }
        };
        let metrics_addr = match config.metrics {
            None => None,
            Some(addr) => {
                let cap = ConnLimit::new(METRICS_MAX_CONNECTIONS, METRICS_MAX_CONNECTIONS, 128);
                let (bound, serve) = admin::start(
                    addr,
                    metrics.clone(),
                    live.clone(),
                    config.upstream.clone(),
                    stop_tx.subscribe(),
                    cap,
                )
                .await
                .map_err(|source| ServerError::Bind {
                    addr,
                    source,
                    hint: " ([metrics] listen)",
                })?;
                tracing::info!(listen = %bound, "metrics on /metrics, health on /healthz");
                tokio::spawn(serve);
                Some(bound)
            }
        };
        listener::close_unclaimed();
        if origin == Origin::Inherited {
            tracing::info!("listening on the socket systemd passed for {local_addr} (socket activation)");
        }
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
        let local_ca = std::sync::Mutex::new(
            local_ca_of(&config)
                .map(|c| tls::local_ca::Renewal::start(tls::provider(), c.clone(), live.clone())),
        );
        // Accepting starts last, when nothing more can fail.
        let stop = stop_tx.subscribe();
        let mut accepting = vec![tokio::spawn(accept::run(listener, "https", stop.clone(), clients))];
        for ((worker, runtime), copy) in workers.runtimes().zip(copies) {
            let clients =
                Clients { limit: limit.clone(), conn: conn.clone(), tracker: tracker.clone(), worker };
            let stop = stop.clone();
            accepting.push(runtime.spawn(async move {
                match TcpListener::from_std(copy) {
                    Ok(listener) => accept::run(listener, "https", stop, clients).await,
                    Err(e) => tracing::error!("worker {worker} cannot accept: {e}"),
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
            local_ca,
            workers,
            caps,
            guard,
            guard_task,
        })
    }

    /// Serves new connections with `config` from now on. Established
    /// connections, and the hub tunnels on them, keep what they started with.
    /// A certificate that does not load is refused and nothing changes.
    pub fn reload(&self, config: Config) -> Result<(), ServerError> {
        if let Some(Err(e)) = acme_of(&config).and_then(acme::check_dns) {
            return Err(ServerError::Acme(e));
        }
        let tls = tls::load(&config.tls, &self.live)?;
        log_local_ca(&tls);
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
        self.guard.configure(&config);
        let next = Connection::new(&config, tls, stop, &self.tracker, metrics, &self.caps, &self.guard)
            .map_err(|source| ServerError::AccessLog { path: format!("{:?}", config.access_log), source })?;
        self.current.send_replace(next);
        // Started afresh (the old task stops when dropped): picks up a new
        // domain or CA, and a stored certificate removed to force a renewal.
        let mut manager = self.acme.lock().unwrap_or_else(|e| e.into_inner());
        *manager = acme_of(&config).map(|a| acme::Manager::start(a.clone(), self.live.clone()));
        drop(manager);
        // Started afresh too: new names or a new lifetime set the next renewal.
        let mut renewal = self.local_ca.lock().unwrap_or_else(|e| e.into_inner());
        *renewal = local_ca_of(&config)
            .map(|c| tls::local_ca::Renewal::start(tls::provider(), c.clone(), self.live.clone()));
        drop(renewal);
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
        drop(self.local_ca);
        // The tracker waits for every holder, these included.
        drop((self.current, self.tracker));
        let _ = self.task.await;
        // A ban of the last second is on disk before the process ends.
        let _ = self.guard_task.await;
        // Whatever outlived the drain deadline ends with its worker.
        drop(self.workers);
    }
}

fn log_local_ca(tls: &tls::Tls) {
    if let Some(notice) = &tls.local_ca_notice {
        tracing::info!("{notice}");
    }
}

/// The plain-HTTP redirect listener's cap on open connections.
const REDIRECT_MAX_CONNECTIONS: usize = 1024;
/// The metrics listener's: a scraper and a health checker need a few.
const METRICS_MAX_CONNECTIONS: usize = 64;
