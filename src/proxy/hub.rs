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

use super::{HubPlaces, Proxy, ProxyError};
use crate::access_log::Entry;
use crate::body::{self, ProxyBody};
use crate::metrics::Protocol;
use crate::server::InFlight;
use crate::{headers, websocket};

impl Proxy {
    /// A client's HTTP/1.1 `Upgrade: websocket` on a hub path. The 101 goes
    /// back exactly as Vaultwarden sent it: nothing added.
    pub(super) async fn open_hub_http1(
        &self,
        mut parts: http::request::Parts,
        client_upgrade: OnUpgrade,
        log: &Entry,
        held: HubPlaces,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let in_flight = parts.extensions.remove::<InFlight>();
        let mut resp = self.upgrade_upstream(parts, log).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            // Relayed as an ordinary answer; the client's connection is closed
            // afterwards so nothing it sends next can be mistaken for tunnel bytes.
            let mut resp = relay(resp);
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(resp);
        }
        self.spawn_splice(
            client_upgrade,
            hyper::upgrade::on(&mut resp),
            log,
            (in_flight, held),
            Protocol::Http1,
        );
        let (parts, _) = resp.into_parts();
        Ok(Response::from_parts(parts, body::empty()))
    }

    /// An HTTP/2 extended CONNECT with `:protocol = websocket` on a hub path,
    /// translated to the HTTP/1.1 upgrade Vaultwarden understands. The client
    /// gets 200 once Vaultwarden has answered 101 with the right accept key.
    pub(super) async fn open_hub_http2(
        &self,
        mut parts: http::request::Parts,
        client_upgrade: OnUpgrade,
        log: &Entry,
        held: HubPlaces,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let in_flight = parts.extensions.remove::<InFlight>();
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
        let mut resp = self.upgrade_upstream(parts, log).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(relay(resp));
        }
        let accept = resp.headers().get(header::SEC_WEBSOCKET_ACCEPT);
        if accept.map(HeaderValue::as_bytes) != Some(websocket::accept_for(&key).as_bytes()) {
            return Err(ProxyError::BadUpgrade);
        }
        self.spawn_splice(
            client_upgrade,
            hyper::upgrade::on(&mut resp),
            log,
            (in_flight, held),
            Protocol::Http2,
        );
        // 200 with what still means something on HTTP/2: the chosen subprotocol
        // and extensions, none of HTTP/1.1's upgrade machinery.
        let mut ok = Response::new(body::empty());
        for name in [header::SEC_WEBSOCKET_PROTOCOL, header::SEC_WEBSOCKET_EXTENSIONS] {
            copy_header(resp.headers(), ok.headers_mut(), name);
        }
        Ok(ok)
    }

    /// Sends `parts` (origin-form target, head already rewritten) as a
    /// WebSocket upgrade request on a fresh upstream connection.
    async fn upgrade_upstream(
        &self,
        mut parts: http::request::Parts,
        log: &Entry,
    ) -> Result<Response<Incoming>, ProxyError> {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let mut sender = self.connect_upstream(true).await?;
        let send = sender.send_request(Request::from_parts(parts, body::empty()));
        match tokio::time::timeout(self.response_timeout, send).await {
            Ok(Ok(resp)) => {
                log.upstream_answered();
                Ok(resp)
            }
            Ok(Err(e)) => Err(self.unreachable(&e)),
            Err(_) => Err(self.timed_out()),
        }
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
        held: (Option<InFlight>, HubPlaces),
        protocol: Protocol,
    ) {
        let idle = self.hub_idle;
        let (send_idle, sending) = (self.send_idle, held.1.sending());
        let metrics = self.metrics.clone();
        let stop = self.stop.clone();
        let token = self.tracker.token();
        let client_ip = log.client;
        let tunnel_log = log.for_tunnel();
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
            let splice = websocket::splice(TokioIo::new(client_io), TokioIo::new(upstream_io), idle, stop);
            // A client that sends (pings) but never reads would keep the
            // tunnel busy for ever: its socket is watched as its connection was.
            match crate::send_watch::Guarded::new(splice, sending, send_idle).await {
                Some(stats) => tunnel_log.hub_closed(&format!("{:?}", stats.end), stats.up, stats.down),
                None => tunnel_log.hub_closed("ClientNotReading", 0, 0),
            }
        };
        tokio::spawn(task.in_current_span());
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
