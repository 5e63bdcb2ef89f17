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
use tokio::sync::watch;

use crate::access_log::{Entry, Sink};
use crate::body::{self, BodyEnd, Ended, Metered, Pace, ProxyBody};
use crate::config::Config;
use crate::metrics::{Metrics, UpstreamError};
pub use crate::proxy_error::ProxyError;
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
    access: Vec<access::Rule>,
    hsts: bool,
    /// Idle connections to Vaultwarden for ordinary requests, one stack per
    /// worker: a connection is driven by the worker that opened it, so
    /// another worker using it would wake that one for every request.
    idle: Vec<Arc<Idle>>,
    stop: watch::Receiver<bool>,
    tracker: Tracker,
    metrics: Arc<Metrics>,
    access_log: Arc<Sink>,
}

/// Two years, as HSTS preload lists expect.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=63072000");

impl Proxy {
    pub fn new(
        config: &Config,
        stop: watch::Receiver<bool>,
        tracker: Tracker,
        access_log: Arc<Sink>,
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
            access: config.access.clone(),
            hsts: config.tls.hsts,
            idle: (0..config.limits.workers.max(1)).map(|_| Arc::default()).collect(),
            stop,
            tracker,
            metrics: access_log.metrics().clone(),
            access_log,
        }
    }

    /// Serves one request from a client at `peer`. Never fails: every problem
    /// becomes a response, and every response gets an access-log line.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let client = self.client_ip.resolve(peer.ip(), req.headers());
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
        let mut resp = match self.route(req, &client, &log).await {
            Ok(resp) => resp,
            Err(e) => {
                // Refusals of bad requests are the client's business (and an
                // attacker's flood); trouble with Vaultwarden is the operator's.
                if e.status().is_server_error() {
                    tracing::warn!(client = %client.ip, path = %log.path, "{e}");
                } else {
                    tracing::debug!(client = %client.ip, path = %log.path, "{e}");
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
        if let Some(refused) = crate::header_line::refuse_long_fields(&req, self.max_header_line) {
            return Ok(refused);
        }
        let host = headers::request_host(req.uri(), req.headers())?;
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
            // Taken before the request is handed on: it resolves to the client's
            // side of the tunnel once hyper has sent our 101 (or 200 on HTTP/2).
            let client_upgrade = hyper::upgrade::on(&mut req);
            let (mut parts, _) = req.into_parts();
            let http2 = parts.version == Version::HTTP_2;
            rewrite_request_head(&mut parts, client, host);
            parts.uri = target(&parts.uri, rewritten.as_deref())?;
            if http2 {
                self.open_hub_http2(parts, client_upgrade, log).await
            } else {
                self.open_hub_http1(parts, client_upgrade, log).await
            }
        } else {
            let (mut parts, body) = req.into_parts();
            rewrite_request_head(&mut parts, client, host);
            parts.uri = target(&parts.uri, rewritten.as_deref())?;
            self.forward(parts, body, log).await
        }
    }

    /// An ordinary request, bodies streamed both ways.
    async fn forward(
        &self,
        parts: http::request::Parts,
        body: Incoming,
        log: &Entry,
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

/// Turns a client's request head into the one Vaultwarden receives: hop-by-hop
/// headers out first, then ours in; HTTP/2 translated to HTTP/1.1.
fn rewrite_request_head(parts: &mut http::request::Parts, client: &client_ip::Client, host: HeaderValue) {
    headers::strip_hop_by_hop(&mut parts.headers);
    if parts.version == Version::HTTP_2 {
        headers::join_cookies(&mut parts.headers);
    }
    parts.version = Version::HTTP_11;
    headers::set_forwarding(&mut parts.headers, client, &host);
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
