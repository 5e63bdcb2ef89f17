//! Opening a hub: an HTTP/1.1 upgrade to Vaultwarden on a dedicated
//! connection — carried through from a client's HTTP/1.1 upgrade, or
//! translated from an HTTP/2 extended CONNECT (RFC 8441) — and, only after a
//! real 101, the splice.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::body::{self, ProxyBody};
use super::client::{ClientConn, InFlight, Presented};
use super::error::ProxyError;
use super::upstream::Upstream;
use crate::config::Config;
use crate::conn_limit::{Caps, Refused, Slot};
use crate::http::client_ip::Client;
use crate::http::headers;
use crate::io::send_watch::{Guarded, SendWatch};
use crate::login_guard::Guard;
use crate::observe::access_log::Entry;
use crate::observe::metrics::{Metrics, Protocol};
use crate::shutdown::{stopped, Tracker};
use crate::websocket;

/// What every hub tunnel needs, shared by all connections.
pub struct Hubs {
    /// `[timeouts] hub_idle`.
    idle: Duration,
    /// See `[timeouts] send_idle`: also how long a hub may wait on its client.
    send_idle: Duration,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    tracker: Tracker,
    /// A tunnel whose client gets banned is closed.
    guard: Arc<Guard>,
}

/// The places a hub tunnel holds for as long as it lives, taken before
/// anything is opened upstream: one under the client address's hub cap,
/// and one under the connection caps (an HTTP/1.1 tunnel is its connection
/// and keeps that one's; an HTTP/2 tunnel needs its own). It also keeps its
/// connection's in-flight mark: an HTTP/2 connection carrying a hub is not idle.
pub struct HubPlaces {
    _hub: Slot,
    _connection: Arc<Slot>,
    _in_flight: InFlight,
    /// The client connection's send watch (see [`ClientConn`]).
    sending: Arc<SendWatch>,
    /// The connection's client certificate: the tunnel ends when a reload refuses it.
    presented: Option<Arc<Presented>>,
}

/// Takes a hub tunnel's places (see [`HubPlaces`]); `trusted`: the
/// connection comes from a trusted proxy, whose address carries many clients.
pub fn places(
    caps: &Caps,
    conn: &ClientConn,
    client: &Client,
    http2: bool,
    trusted: bool,
    in_flight: InFlight,
) -> Result<HubPlaces, ProxyError> {
    let hub = caps
        .hubs
        .acquire(client.ip)
        .map_err(|refused| ProxyError::TooManyHubs { client: client.ip, limit: refused.limit() })?;
    let connection = if http2 {
        let slot =
            if trusted { caps.connections.acquire_total() } else { caps.connections.acquire(conn.peer.ip()) };
        let slot = slot.map_err(|refused| match refused {
            Refused::Total(_) => ProxyError::Busy("max_connections"),
            Refused::PerIp(_) => ProxyError::Busy("max_connections_per_ip"),
        })?;
        Arc::new(slot)
    } else {
        conn.slot.clone()
    };
    // An HTTP/1.1 tunnel owns its connection's socket and is watched on
    // it; an HTTP/2 one shares the connection, whose guard watches it.
    let sending = if http2 { SendWatch::new() } else { conn.sending.clone() };
    let presented = conn.presented.clone();
    Ok(HubPlaces { _hub: hub, _connection: connection, _in_flight: in_flight, sending, presented })
}

impl Hubs {
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
        tracker: Tracker,
        guard: Arc<Guard>,
    ) -> Hubs {
        Hubs {
            idle: config.timeouts.hub_idle,
            send_idle: config.timeouts.send_idle,
            metrics,
            stop,
            tracker,
            guard,
        }
    }

    /// A client's HTTP/1.1 `Upgrade: websocket` on a hub path. The 101 goes
    /// back exactly as Vaultwarden sent it: nothing added.
    pub async fn open_http1(
        &self,
        upstream: &Upstream,
        parts: http::request::Parts,
        client_upgrade: OnUpgrade,
        log: &Entry,
        held: HubPlaces,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let mut resp = upgrade_upstream(upstream, parts, log).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            // Relayed as an ordinary answer; the client's connection is closed
            // afterwards so nothing it sends next can be mistaken for tunnel bytes.
            let mut resp = relay(resp);
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(resp);
        }
        self.spawn_splice(client_upgrade, hyper::upgrade::on(&mut resp), log, held, Protocol::Http1);
        let (parts, _) = resp.into_parts();
        Ok(Response::from_parts(parts, body::empty()))
    }

    /// An HTTP/2 extended CONNECT with `:protocol = websocket` on a hub path,
    /// translated to the HTTP/1.1 upgrade Vaultwarden understands. The client
    /// gets 200 once Vaultwarden has answered 101 with the right accept key.
    pub async fn open_http2(
        &self,
        upstream: &Upstream,
        mut parts: http::request::Parts,
        client_upgrade: OnUpgrade,
        log: &Entry,
        held: HubPlaces,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        parts.method = Method::GET;
        parts.version = Version::HTTP_11;
        parts.extensions.remove::<hyper::ext::Protocol>();
        let key = websocket::new_key();
        let h = &mut parts.headers;
        h.remove(header::SEC_WEBSOCKET_ACCEPT);
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_str(&key).expect("base64 is a valid header value"),
        );
        let mut resp = upgrade_upstream(upstream, parts, log).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(relay(resp));
        }
        let accept = resp.headers().get(header::SEC_WEBSOCKET_ACCEPT);
        if accept.map(HeaderValue::as_bytes) != Some(websocket::accept_for(&key).as_bytes()) {
            return Err(ProxyError::BadUpgrade);
        }
        self.spawn_splice(client_upgrade, hyper::upgrade::on(&mut resp), log, held, Protocol::Http2);
        // 200 with what still means something on HTTP/2: the chosen subprotocol
        // and extensions, none of HTTP/1.1's upgrade machinery.
        let mut ok = Response::new(body::empty());
        for name in [header::SEC_WEBSOCKET_PROTOCOL, header::SEC_WEBSOCKET_EXTENSIONS] {
            copy_header(resp.headers(), ok.headers_mut(), name);
        }
        Ok(ok)
    }

    /// Copies bytes both ways once both sides have switched protocols. The
    /// task is tracked for shutdown, keeps its client connection counted as
    /// busy (an HTTP/2 connection carrying a hub is not idle), and holds its
    /// places under the caps until it ends.
    fn spawn_splice(
        &self,
        client: OnUpgrade,
        upstream: OnUpgrade,
        log: &Entry,
        held: HubPlaces,
        protocol: Protocol,
    ) {
        let idle = self.idle;
        let (send_idle, sending) = (self.send_idle, held.sending.clone());
        let revoked = held.presented.as_ref().map(|p| p.on_revoked());
        let metrics = self.metrics.clone();
        let mut stop = self.stop.clone();
        let token = self.tracker.token();
        let client_ip = log.client;
        let tunnel_log = log.for_tunnel();
        let guard = self.guard.clone();
        let task = async move {
            let _held = (token, held);
            let (client_io, upstream_io) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(client = %client_ip, "hub upgrade did not complete: {e}");
                    return;
                }
            };
            let _open = metrics.hub(protocol);
            // Shutdown, a ban of its client, or a reload that refuses the
            // connection's certificate: each closes the tunnel with Close
            // frames, at a frame boundary.
            let shutdown = async move {
                let revoked = async {
                    match revoked {
                        Some(revoked) => revoked.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stopped(&mut stop) => {}
                    _ = guard.until_banned(client_ip) => {
                        tracing::info!(client = %client_ip, "closing a hub of a banned address");
                    }
                    _ = revoked => {
                        tracing::info!(client = %client_ip, "hub closed: its connection's client certificate no longer verifies");
                    }
                }
            };
            let splice =
                websocket::splice(TokioIo::new(client_io), TokioIo::new(upstream_io), idle, shutdown);
            // A client that sends (pings) but never reads would keep the
            // tunnel busy for ever: its socket is watched as its connection was.
            match Guarded::new(splice, sending, send_idle).await {
                Some(stats) => tunnel_log.hub_closed(&format!("{:?}", stats.end), stats.up, stats.down),
                None => tunnel_log.hub_closed("ClientNotReading", 0, 0),
            }
        };
        tokio::spawn(task.in_current_span());
    }
}

/// Sends `parts` (origin-form target, head already rewritten) as a
/// WebSocket upgrade request on a fresh upstream connection.
async fn upgrade_upstream(
    upstream: &Upstream,
    mut parts: http::request::Parts,
    log: &Entry,
) -> Result<Response<Incoming>, ProxyError> {
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let mut sender = upstream.connect(true).await?;
    let send = sender.send_request(Request::from_parts(parts, body::empty()));
    match tokio::time::timeout(upstream.response_timeout, send).await {
        Ok(Ok(resp)) => {
            log.upstream_answered();
            Ok(resp)
        }
        Ok(Err(e)) => Err(upstream.unreachable(&e)),
        Err(_) => Err(upstream.timed_out()),
    }
}

/// An upstream answer that is not a 101, passed on as an ordinary response.
fn relay(resp: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body::boxed(body))
}

fn copy_header(from: &http::HeaderMap, to: &mut http::HeaderMap, name: HeaderName) {
    for v in from.get_all(&name) {
        to.append(name.clone(), v.clone());
    }
}
