//! One request: classify it, forward it to Vaultwarden, and map what went
//! wrong upstream to a status the client can read. Hub tunnels are in `hub.rs`.

mod hub;
mod upstream;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::access_log::{Entry, Sink};
use crate::body::{self, BodyEnd, Ended, Metered, Pace, ProxyBody};
use crate::config::Config;
use crate::conn_limit::{Caps, Slot};
use crate::metrics::{Metrics, UpstreamError};
pub use crate::proxy_error::ProxyError;
use crate::send_watch::SendWatch;
use crate::server::Tracker;
use crate::{access, client_ip, headers, path, websocket};
use upstream::{Idle, SendFailure};

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    upstream_url: String,
    upstream_authority: http::uri::Authority,
    hub_paths: Vec<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    body_idle: Duration,
    hub_idle: Duration,
    max_request_body: u64,
    /// Bytes per second a request body must average (see `body::Pace`).
    min_body_rate: u64,
    /// Bytes in one header field, else 431 (HTTP/2 here; HTTP/1.1 in `h1_guard`).
    max_header_line: usize,
    client_ip: client_ip::Policy,
    /// `[tls] server_names`: when set, a request for any other host is 421.
    server_names: Vec<String>,
    access: Vec<access::Rule>,
    hsts: bool,
    /// See `[timeouts] send_idle`: also how long a hub may wait on its client.
    send_idle: Duration,
    /// Idle connections to Vaultwarden for ordinary requests, one stack per
    /// worker: a connection is driven by the worker that opened it, so
    /// another worker using it would wake that one for every request.
    idle: Vec<Arc<Idle>>,
    stop: watch::Receiver<bool>,
    tracker: Tracker,
    metrics: Arc<Metrics>,
    access_log: Arc<Sink>,
    caps: Arc<Caps>,
}

/// One client connection, as the requests on it see it.
pub struct ClientConn {
    pub peer: SocketAddr,
    /// Its place under `max_connections`: a hub tunnel taken over from an
    /// HTTP/1.1 connection keeps it until the tunnel closes.
    slot: Arc<Slot>,
    /// Upstream requests this connection may have in flight at once.
    upstream: Arc<Semaphore>,
    /// Whether its socket is waiting on the client to read (the send
    /// timeout); a hub tunnel taken over from it is watched with it too.
    sending: Arc<SendWatch>,
}

impl ClientConn {
    pub fn new(
        peer: SocketAddr,
        slot: Arc<Slot>,
        max_upstream: usize,
        sending: Arc<SendWatch>,
    ) -> ClientConn {
        ClientConn { peer, slot, upstream: Arc::new(Semaphore::new(max_upstream)), sending }
    }

    pub fn sending(&self) -> &Arc<SendWatch> {
        &self.sending
    }
}

/// What an upstream request holds until its response has been read (or dropped).
type UpstreamPermits = (Slot, OwnedSemaphorePermit);

/// Two years, as HSTS preload lists expect.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=63072000");

impl Proxy {
    pub fn new(
        config: &Config,
        stop: watch::Receiver<bool>,
        tracker: Tracker,
        access_log: Arc<Sink>,
        caps: Arc<Caps>,
    ) -> Proxy {
        Proxy {
            upstream_url: config.upstream.url.clone(),
            upstream_authority: config.upstream.authority.clone(),
            hub_paths: config.hub_paths.clone(),
            connect_timeout: config.timeouts.upstream_connect,
            response_timeout: config.timeouts.upstream_response,
            body_idle: config.timeouts.request_body_idle,
            hub_idle: config.timeouts.hub_idle,
            max_request_body: config.limits.max_request_body,
            min_body_rate: config.limits.min_upload_rate,
            max_header_line: config.limits.max_header_line,
            client_ip: config.client_ip.clone(),
            server_names: config.tls.server_names.clone(),
            access: config.access.clone(),
            hsts: config.tls.hsts,
            send_idle: config.timeouts.send_idle,
            idle: (0..config.limits.workers.max(1)).map(|_| Arc::default()).collect(),
            stop,
            tracker,
            metrics: access_log.metrics().clone(),
            access_log,
            caps,
        }
    }

    /// Serves one request from a client at `peer`. Never fails: every problem
    /// becomes a response, and every response gets an access-log line.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ClientConn) -> Response<ProxyBody> {
        let client = self.client_ip.resolve(conn.peer.ip(), req.headers());
        let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let log = Entry::new(
            client.ip,
            req.method().clone(),
            path_and_query,
            req.headers(),
            req.version(),
            self.access_log.clone(),
        );
        let upgrade = crate::h1_guard::asks_upgrade(&req);
        let mut resp = match self.route(req, conn, &client, &log).await {
            Ok(resp) => resp,
            Err(e) => {
                // Refusals of bad requests are the client's business (and an
                // attacker's flood); trouble with Vaultwarden is the operator's.
                if e.status().is_server_error() {
                    tracing::warn!(client = %client.ip, path = %crate::access_log::escape(&log.path), "{e}");
                } else {
                    tracing::debug!(client = %client.ip, path = %crate::access_log::escape(&log.path), "{e}");
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
                e.into_response()
            }
        };
        crate::h1_guard::close_unless_switched(upgrade, &mut resp);
        if self.hsts && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp.headers_mut().entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HSTS);
        }
        logged(resp, log)
    }

    async fn route(
        &self,
        mut req: Request<Incoming>,
        conn: &ClientConn,
        client: &client_ip::Client,
        log: &Entry,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // HTTP/2 extended CONNECT (RFC 8441) is how browsers open WebSockets
        // on an HTTP/2 connection; any other CONNECT is a tunnel request.
        let protocol =
            req.extensions().get::<hyper::ext::Protocol>().map(|p| p.as_str().to_ascii_lowercase());
        if req.method() == Method::CONNECT && protocol.is_none() {
            return Err(ProxyError::MethodNotAllowed(Method::CONNECT));
        }
        if req.uri().scheme_str().is_some_and(|s| s != "http" && s != "https") {
            return Err(ProxyError::BadTarget);
        }
        if crate::header_line::has_long_field(&req, self.max_header_line) {
            return Err(ProxyError::HeaderTooLong { limit: self.max_header_line });
        }
        let host = headers::request_host(req.uri(), req.headers())?;
        if let Some(unresolved) = client.unresolved {
            return Err(unresolved.into());
        }
        if !self.server_names.is_empty() && !headers::host_among(&host, &self.server_names) {
            return Err(ProxyError::Misdirected);
        }
        if headers::has_repeated_content_length(req.headers()) {
            return Err(ProxyError::AmbiguousLength);
        }
        // The normalised path when it differs from the one sent (most do not:
        // then the request target goes upstream as it came, nothing rebuilt).
        let rewritten = match path::normalize(req.uri().path())? {
            Cow::Owned(p) if p != req.uri().path() => Some(p),
            _ => None,
        };
        let normalized = rewritten.as_deref().unwrap_or(req.uri().path());
        if access::refusing(&self.access, normalized, client.ip).is_some() {
            return Err(ProxyError::Forbidden { path: normalized.to_string(), client: client.ip });
        }
        if http_body::Body::size_hint(req.body()).lower() > self.max_request_body {
            return Err(ProxyError::TooLarge { limit: self.max_request_body });
        }
        // A tunnel only for the hub path written plainly: any other spelling
        // (`//`, dot segments, escapes) is served as an ordinary request.
        let on_hub_path = rewritten.is_none() && websocket::is_hub_path(normalized, &self.hub_paths);
        if let Some(protocol) = protocol {
            if protocol != "websocket" || !on_hub_path {
                return Err(ProxyError::NotAHub { protocol, path: normalized.to_string() });
            }
        }
        let is_http1_hub =
            req.version() == Version::HTTP_11 && websocket::wants_websocket(req.headers()) && on_hub_path;
        if is_http1_hub || req.method() == Method::CONNECT {
            let http2 = req.version() == Version::HTTP_2;
            let held = self.hub_places(conn, client, http2)?;
            // Taken before the request is handed on: it resolves to the client's
            // side of the tunnel once hyper has sent our 101 (or 200 on HTTP/2).
            let client_upgrade = hyper::upgrade::on(&mut req);
            let (mut parts, _) = req.into_parts();
            rewrite_request_head(&mut parts, client, host, self.client_ip.single_header());
            parts.uri = target(&parts.uri, rewritten.as_deref())?;
            if http2 {
                self.open_hub_http2(parts, client_upgrade, log, held).await
            } else {
                self.open_hub_http1(parts, client_upgrade, log, held).await
            }
        } else {
            let permits = self.upstream_permits(conn, client).await?;
            let (mut parts, body) = req.into_parts();
            rewrite_request_head(&mut parts, client, host, self.client_ip.single_header());
            parts.uri = target(&parts.uri, rewritten.as_deref())?;
            self.forward(parts, body, log, permits).await
        }
    }

    /// The places a hub tunnel holds for as long as it lives, taken before
    /// anything is opened upstream: one under the client address's hub cap,
    /// and one under the connection caps (an HTTP/1.1 tunnel is its
    /// connection and keeps that one's; an HTTP/2 tunnel needs its own).
    fn hub_places(
        &self,
        conn: &ClientConn,
        client: &client_ip::Client,
        http2: bool,
    ) -> Result<HubPlaces, ProxyError> {
        let hub = self
            .caps
            .hubs
            .acquire(client.ip)
            .map_err(|refused| ProxyError::TooManyHubs { client: client.ip, limit: refused.limit() })?;
        let connection = if http2 {
            let slot = if self.trusts(conn.peer.ip()) {
                self.caps.connections.acquire_total()
            } else {
                self.caps.connections.acquire(conn.peer.ip())
            };
            let slot = slot.map_err(|refused| match refused {
                crate::conn_limit::Refused::Total(_) => ProxyError::Busy("max_connections"),
                crate::conn_limit::Refused::PerIp(_) => ProxyError::Busy("max_connections_per_ip"),
            })?;
            Arc::new(slot)
        } else {
            conn.slot.clone()
        };
        // An HTTP/1.1 tunnel owns its connection's socket and is watched on
        // it; an HTTP/2 one shares the connection, whose guard watches it.
        let sending = if http2 { SendWatch::new() } else { conn.sending.clone() };
        Ok(HubPlaces { _hub: hub, _connection: connection, sending })
    }

    /// Whether `peer` is one of `[client_ip] trusted_proxies`.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.client_ip.is_trusted(peer)
    }

    /// Waits for a place under the connection's cap on upstream requests
    /// (an HTTP/2 client may open 100 streams and read none of them), and
    /// takes one under its address's, which refuses rather than waits.
    async fn upstream_permits(
        &self,
        conn: &ClientConn,
        client: &client_ip::Client,
    ) -> Result<UpstreamPermits, ProxyError> {
        let per_ip = self
            .caps
            .upstream
            .acquire(client.ip)
            .map_err(|refused| ProxyError::TooManyRequests { client: client.ip, limit: refused.limit() })?;
        let per_conn = match conn.upstream.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(self.response_timeout, conn.upstream.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or(ProxyError::Busy("max_upstream_per_connection"))?,
        };
        Ok((per_ip, per_conn))
    }

    /// An ordinary request, bodies streamed both ways.
    async fn forward(
        &self,
        parts: http::request::Parts,
        body: Incoming,
        log: &Entry,
        permits: UpstreamPermits,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // The response clock starts when the request body has been sent, so a
        // 500 MB upload over a slow line is not mistaken for a slow upstream.
        // A request without a body has nothing to wait for (and nothing to wrap).
        let (body, sent) = if http_body::Body::is_end_stream(&body) {
            (body::empty(), None)
        } else {
            let sent = Arc::new(Ended::default());
            let limited = Limited::new(body, usize::try_from(self.max_request_body).unwrap_or(usize::MAX));
            let paced = Pace::new(limited, self.body_idle, self.min_body_rate);
            let ends = sent.clone();
            let metered =
                Metered::new(paced, move |how, _| ends.set(how)).counting_into(log.bytes_in.clone());
            (body::boxed(metered.map_frame(sanitize_trailers)), Some(sent))
        };
        let req = Request::from_parts(parts, body);
        let sent_how = || sent.as_ref().map_or(Some(BodyEnd::Complete), |s| s.get());
        let timeout = self.response_timeout;
        let deadline = async {
            if let Some(sent) = &sent {
                sent.wait().await;
            }
            tokio::time::sleep(timeout).await;
        };
        // A body the client broke (bad chunk, too large, stalled, vanished)
        // is the client's fault, not Vaultwarden's.
        let failed = |e: &(dyn std::error::Error + 'static)| {
            if sent_how() == Some(BodyEnd::Error) {
                ProxyError::from_body_failure(e, self.max_request_body)
            } else {
                self.unreachable(e)
            }
        };
        let sending = async {
            self.send_upstream(req).await.map_err(|e| match e {
                SendFailure::Connect(e) => e,
                SendFailure::Send(e) => failed(&e),
            })
        };
        let (resp, sender) = tokio::select! {
            r = sending => r?,
            _ = deadline => return Err(self.timed_out()),
        };
        log.upstream_answered();
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        // The connection is free again once the request has been sent whole
        // and its answer read to the end. Otherwise (an answer abandoned
        // half-way, or given before the request body was all sent) it goes
        // with this request: the next one must not wait behind it.
        let body = body.map_frame(sanitize_trailers);
        if http_body::Body::is_end_stream(&body) {
            if sent_how() == Some(BodyEnd::Complete) {
                self.idle().put(sender);
            }
            return Ok(Response::from_parts(parts, body::boxed(body)));
        }
        let idle = self.idle().clone();
        let body = Metered::new(body, move |how, _| {
            drop(permits);
            if how == BodyEnd::Complete && sent.as_ref().map_or(true, |s| s.get() == Some(BodyEnd::Complete))
            {
                idle.put(sender);
            }
        });
        Ok(Response::from_parts(parts, body::boxed(body)))
    }

    /// Bytes in one header line (`[limits] max_header_line`), for `h1_guard`.
    pub fn max_header_line(&self) -> usize {
        self.max_header_line
    }

    /// The idle connections of the worker running this request.
    fn idle(&self) -> &Arc<Idle> {
        let worker = crate::workers::index();
        self.idle.get(worker).unwrap_or(&self.idle[0])
    }

    /// A 502 naming the root cause (e.g. "Connection refused"), not hyper's wrappers.
    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> ProxyError {
        let mut root = e;
        while let Some(source) = root.source() {
            root = source;
        }
        ProxyError::UpstreamUnreachable { url: self.upstream_url.clone(), detail: root.to_string() }
    }

    fn timed_out(&self) -> ProxyError {
        ProxyError::UpstreamTimeout { url: self.upstream_url.clone(), secs: self.response_timeout.as_secs() }
    }
}

/// See [`Proxy::hub_places`].
pub(crate) struct HubPlaces {
    _hub: Slot,
    _connection: Arc<Slot>,
    /// The client connection's send watch (see [`ClientConn`]).
    sending: Arc<SendWatch>,
}

impl HubPlaces {
    pub(crate) fn sending(&self) -> Arc<SendWatch> {
        self.sending.clone()
    }
}

/// Turns a client's request head into the one Vaultwarden receives: hop-by-hop
/// headers out first, then ours in; HTTP/2 translated to HTTP/1.1.
fn rewrite_request_head(
    parts: &mut http::request::Parts,
    client: &client_ip::Client,
    host: HeaderValue,
    single: Option<&http::HeaderName>,
) {
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::strip_underscored(&mut parts.headers);
    if parts.version == Version::HTTP_2 {
        headers::join_cookies(&mut parts.headers);
    }
    parts.version = Version::HTTP_11;
    headers::set_forwarding(&mut parts.headers, client, &host, single);
    parts.headers.insert(header::HOST, host);
}

/// The request target sent upstream (origin form): the path, or `rewritten`
/// (the normalised one) when it differs, and the query byte for byte.
fn target(uri: &Uri, rewritten: Option<&str>) -> Result<Uri, ProxyError> {
    let path_and_query = match (rewritten, uri.path_and_query()) {
        (None, _) if uri.scheme().is_none() && uri.authority().is_none() => return Ok(uri.clone()),
        (None, Some(pq)) => pq.clone(),
        (Some(path), _) => {
            let rebuilt = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            http::uri::PathAndQuery::try_from(rebuilt).map_err(|_| ProxyError::BadTarget)?
        }
        (None, None) => http::uri::PathAndQuery::from_static("/"),
    };
    Ok(Uri::from(path_and_query))
}

/// Applies [`headers::sanitize_trailers`] to a trailers frame; data passes.
fn sanitize_trailers(frame: Frame<Bytes>) -> Frame<Bytes> {
    match frame.into_trailers() {
        Ok(mut trailers) => {
            headers::sanitize_trailers(&mut trailers);
            Frame::trailers(trailers)
        }
        Err(frame) => frame,
    }
}

/// Attaches the access-log line to the end of the response body.
fn logged(resp: Response<ProxyBody>, log: Entry) -> Response<ProxyBody> {
    let status = resp.status();
    resp.map(move |b| body::boxed(Metered::new(b, move |_, bytes_out| log.finish(status, bytes_out))))
}
