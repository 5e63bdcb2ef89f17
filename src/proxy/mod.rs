//! One request, top to bottom: resolve the client, classify the request
//! (`classify`), then refuse it, forward it (`forward`) or open a hub
//! (`hub`) — and map what went wrong to a status the client can read
//! (`error`). Every answer gets its access-log line and its metrics.

pub mod body;
mod classify;
mod client;
pub mod error;
mod exchange;
mod forward;
mod hub;
mod pool;
pub mod upstream;

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::config::Config;
use crate::conn_limit::Caps;
use crate::http::client_cert::{self, ClientCert, Exemptions};
use crate::http::{client_ip, headers};
use crate::io::h1_guard;
use crate::login_guard::judge::Logins;
use crate::login_guard::Guard;
use crate::observe::access_log::{Entry, Sink};
use crate::observe::metrics::{Metrics, UpstreamError};
use crate::observe::redact::escape;
use crate::shutdown::Tracker;
use body::{OnEnd, ProxyBody};
use classify::{classify, Route, Rules};
pub use client::{ClientConn, InFlight, Presented};
pub use error::ProxyError;
use forward::BodyLimits;
use hub::Hubs;
use upstream::Upstream;

/// Everything a request needs, shared by all connections of one
/// configuration generation.
pub struct Proxy {
    client_ip: client_ip::Policy,
    rules: Rules,
    body: BodyLimits,
    hsts: bool,
    upstream: Upstream,
    hubs: Hubs,
    metrics: Arc<Metrics>,
    access_log: Arc<Sink>,
    caps: Arc<Caps>,
    client_auth: ClientAuthRule,
    /// The process's one login guard (outlives reloads).
    guard: Arc<Guard>,
    /// Which requests are logins, for this configuration's paths.
    logins: Logins,
}

/// What `[tls.client_auth]` asks of requests (the handshake has verified
/// any certificate shown).
#[derive(Default)]
struct ClientAuthRule {
    /// Requests without a certificate are refused except where exempt.
    required: Option<Exemptions>,
    /// Carries the verified subject to Vaultwarden; removed from every request.
    subject_header: Option<http::HeaderName>,
}

impl ClientAuthRule {
    fn new(config: &Config) -> ClientAuthRule {
        let Some(auth) = &config.tls.client_auth else { return ClientAuthRule::default() };
        ClientAuthRule {
            required: auth.required.then(|| Exemptions {
                paths: auth.exempt_paths.clone(),
                networks: auth.exempt_networks.clone(),
            }),
            subject_header: auth.subject_header.clone(),
        }
    }

    /// Refuses a request for `target` (its path normalised) without a
    /// certificate, unless exempt. Ordinary requests, HTTP/1.1 upgrades and
    /// RFC 8441 CONNECTs alike: nothing reaches Vaultwarden before this.
    fn check(
        &self,
        target: &classify::Target,
        conn: &ClientConn,
        client: &client_ip::Client,
    ) -> Result<(), ProxyError> {
        if conn.revoked() {
            return Err(ProxyError::CertificateRevoked { peer: conn.peer.ip() });
        }
        let Some(exempt) = &self.required else { return Ok(()) };
        let path = target.uri.path();
        let peer = (!conn.relay_itself).then(|| conn.peer.ip());
        if conn.cert.is_none() && client_cert::refuses_without(exempt, path, peer, client.ip) {
            return Err(ProxyError::CertificateRequired { path: path.to_string(), peer: conn.peer.ip() });
        }
        Ok(())
    }
}

/// Two years, as HSTS preload lists expect.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=63072000");

impl Proxy {
    pub fn new(
        config: &Config,
        stop: watch::Receiver<bool>,
        tracker: Tracker,
        access_log: Arc<Sink>,
        metrics: Arc<Metrics>,
        caps: Arc<Caps>,
        guard: Arc<Guard>,
    ) -> Proxy {
        Proxy {
            client_ip: config.client_ip.clone(),
            rules: Rules::new(config),
            body: BodyLimits::new(config),
            hsts: config.tls.hsts,
            upstream: Upstream::new(config),
            hubs: Hubs::new(config, metrics.clone(), stop, tracker, guard.clone()),
            metrics,
            access_log,
            caps,
            client_auth: ClientAuthRule::new(config),
            guard,
            logins: Logins::new(&config.hub_paths),
        }
    }

    /// Serves one request from a client at `peer`. Never fails: every problem
    /// becomes a response, and every response gets an access-log line.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ClientConn,
        in_flight: InFlight,
    ) -> Response<ProxyBody> {
        let client = self.client_ip.resolve(conn.peer_ip.clone(), req.headers());
        let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut log = Entry::new(
            client.ip,
            req.method().clone(),
            path_and_query,
            req.headers(),
            req.version(),
            self.access_log.clone(),
        );
        log.cert = conn.cert.clone();
        let upgrade = h1_guard::asks_upgrade(&req);
        let mut resp = match self.route(req, conn, &client, &log, in_flight).await {
            Ok(resp) => resp,
            Err(e) => {
                // Refusals of bad requests are the client's business (and an
                // attacker's flood); trouble with Vaultwarden is the operator's.
                if e.status().is_server_error() {
                    tracing::warn!(client = %client.ip, path = %escape(&log.path), "{e}");
                } else {
                    tracing::debug!(client = %client.ip, path = %escape(&log.path), "{e}");
                }
                let upstream = match e {
                    ProxyError::UpstreamUnreachable { .. } => Some(UpstreamError::Unreachable),
                    ProxyError::UpstreamTimeout { .. } => Some(UpstreamError::Timeout),
                    ProxyError::BadUpgrade => Some(UpstreamError::BadUpgrade),
                    _ => None,
                };
                if let Some(kind) = upstream {
                    self.metrics.upstream_error(kind);
                }
                if matches!(e, ProxyError::CertificateRequired { .. }) {
                    self.metrics.client_cert_required();
                }
                e.into_response()
            }
        };
        h1_guard::close_unless_switched(upgrade, &mut resp);
        if self.hsts && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp.headers_mut().entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HSTS);
        }
        logged(resp, log, self.metrics.clone())
    }

    async fn route(
        &self,
        mut req: Request<Incoming>,
        conn: &ClientConn,
        client: &client_ip::Client,
        log: &Entry,
        in_flight: InFlight,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // First of all: a banned address costs one lookup and a short page,
        // and nothing of its request reaches Vaultwarden. Only an address
        // `[client_ip]` resolved counts, so a forged X-Forwarded-For from an
        // untrusted peer can neither ban someone else nor escape a ban.
        if client.unresolved.is_none() {
            if let Some(retry_after) = self.guard.banned(client.ip) {
                return Err(ProxyError::Banned { client: client.ip, retry_after });
            }
        }
        match classify(&self.rules, &req, client) {
            Route::Refuse(e) => Err(e),
            Route::Forward(target) => {
                self.client_auth.check(&target, conn, client)?;
                let wait = self.upstream.response_timeout;
                let permits = forward::permits(&self.caps, conn, client, wait).await?;
                let judging = match self.logins.of(req.method(), target.uri.path()) {
                    Some(login) if client.unresolved.is_none() => {
                        // Banned while it waited for its permits, or as many
                        // guesses in flight as the ban allows: it waits.
                        if let Some(retry_after) = self.guard.banned(client.ip) {
                            return Err(ProxyError::Banned { client: client.ip, retry_after });
                        }
                        let Some(pending) = self.guard.begin(client.ip) else {
                            let retry_after = std::time::Duration::from_secs(1);
                            return Err(ProxyError::Banned { client: client.ip, retry_after });
                        };
                        Some(forward::Judging {
                            login,
                            guard: &self.guard,
                            client: client.ip,
                            _pending: pending,
                        })
                    }
                    _ => None,
                };
                let (mut parts, body) = req.into_parts();
                self.rewrite_request_head(&mut parts, client, target, conn.cert.as_ref());
                forward::forward(&self.upstream, &self.body, parts, body, log, permits, judging).await
            }
            Route::Hub(target) => {
                self.client_auth.check(&target, conn, client)?;
                let http2 = req.version() == Version::HTTP_2;
                let trusted = self.trusts(conn.peer.ip());
                let held = hub::places(&self.caps, conn, client, http2, trusted, in_flight)?;
                // Taken before the request is handed on: it resolves to the client's
                // side of the tunnel once hyper has sent our 101 (or 200 on HTTP/2).
                let client_upgrade = hyper::upgrade::on(&mut req);
                let (mut parts, _) = req.into_parts();
                self.rewrite_request_head(&mut parts, client, target, conn.cert.as_ref());
                if http2 {
                    self.hubs.open_http2(&self.upstream, parts, client_upgrade, log, held).await
                } else {
                    self.hubs.open_http1(&self.upstream, parts, client_upgrade, log, held).await
                }
            }
        }
    }

    fn rewrite_request_head(
        &self,
        parts: &mut http::request::Parts,
        client: &client_ip::Client,
        target: classify::Target,
        cert: Option<&ClientCert>,
    ) {
        rewrite_request_head(parts, client, target, self.client_ip.single_header());
        if let Some(name) = &self.client_auth.subject_header {
            headers::set_client_cert_subject(&mut parts.headers, name, cert.map(|c| c.subject.as_str()));
        }
    }

    /// Whether `peer` is one of `[client_ip] trusted_proxies`.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.client_ip.is_trusted(peer)
    }

    /// Bytes in one header line (`[limits] max_header_line`), for `h1_guard`.
    pub fn max_header_line(&self) -> usize {
        self.rules.max_header_line
    }
}

/// Turns a client's request head into the one Vaultwarden receives: hop-by-hop
/// headers out first, then ours in; HTTP/2 translated to HTTP/1.1.
fn rewrite_request_head(
    parts: &mut http::request::Parts,
    client: &client_ip::Client,
    target: classify::Target,
    single: Option<&http::HeaderName>,
) {
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::strip_underscored(&mut parts.headers);
    if parts.version == Version::HTTP_2 {
        headers::join_cookies(&mut parts.headers);
    }
    parts.version = Version::HTTP_11;
    headers::set_forwarding(&mut parts.headers, client, &target.host, single);
    parts.headers.insert(header::HOST, target.host);
    parts.uri = target.uri;
}

/// Counts the request and writes its access-log line when its response body ends.
fn logged(resp: Response<ProxyBody>, log: Entry, metrics: Arc<Metrics>) -> Response<ProxyBody> {
    let status = resp.status();
    resp.map(move |b| {
        body::boxed(OnEnd::new(b, move |_, bytes_out| {
            metrics.request(&log.method, status, log.start.elapsed(), log.bytes_in(), bytes_out);
            log.finish(status, bytes_out);
        }))
    })
}
