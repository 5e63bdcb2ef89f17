//! An ordinary request: its body streamed to Vaultwarden under the body
//! limits, the answer streamed back, and the connection kept for the next
//! request when both ends were read whole.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use super::body::{self, BoxError, Ended, OnEnd, Pace, ProxyBody, Replay};
use super::client::ClientConn;
use super::error::ProxyError;
use super::exchange::{self, UpstreamBody};
use super::upstream::{SendFailure, Upstream};
use crate::config::Config;
use crate::conn_limit::{Caps, Slot};
use crate::http::client_ip::Client;
use crate::http::headers;
use crate::login_guard::judge::{self, Login, Needs, Verdict, BODY_PREFIX};
use crate::login_guard::Guard;
use crate::observe::access_log::Entry;

/// A login whose answer the login guard judges (`login_guard/judge.rs`).
pub struct Judging<'a> {
    pub login: Login,
    pub guard: &'a Guard,
    /// The client as `[client_ip]` resolved it: the only address a verdict
    /// is ever about.
    pub client: std::net::IpAddr,
    /// Marks the login unanswered until its verdict is in.
    pub _pending: crate::login_guard::Pending<'a>,
}

impl Judging<'_> {
    fn apply(&self, verdict: Verdict) {
        match verdict {
            Verdict::Failed => self.guard.failed(self.client),
            Verdict::Succeeded => self.guard.succeeded(self.client),
            Verdict::Neither => {}
        }
    }
}

/// The first bytes of an answer, read ahead to judge it.
#[derive(Default)]
struct Ahead {
    data: bytes::BytesMut,
    trailers: Option<http::HeaderMap>,
    /// The whole body was read (else only its first bytes).
    complete: bool,
}

/// Reads `body` into `ahead` until its end, until more than `limit` bytes
/// came, or until `deadline`.
async fn read_ahead(
    body: &mut UpstreamBody,
    ahead: &mut Ahead,
    limit: usize,
    deadline: tokio::time::Instant,
) -> Result<(), BoxError> {
    // Announced as longer than judged answers are: not read at all.
    if http_body::Body::size_hint(body).lower() > limit as u64 {
        return Ok(());
    }
    while ahead.data.len() <= limit {
        if http_body::Body::is_end_stream(body) {
            ahead.complete = true;
            return Ok(());
        }
        let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await else { return Ok(()) };
        match frame.transpose()? {
            None => {
                ahead.complete = true;
                return Ok(());
            }
            Some(frame) => match frame.into_data() {
                Ok(data) => ahead.data.extend_from_slice(&data),
                Err(frame) => {
                    ahead.trailers = frame.into_trailers().ok();
                    ahead.complete = true;
                    return Ok(());
                }
            },
        }
    }
    Ok(())
}

/// What a request body must keep to.
pub struct BodyLimits {
    max: u64,
    idle: Duration,
    /// Bytes per second a request body must average (see `body::Pace`).
    min_rate: u64,
}

impl BodyLimits {
    pub fn new(config: &Config) -> BodyLimits {
        BodyLimits {
            max: config.limits.max_request_body,
            idle: config.timeouts.request_body_idle,
            min_rate: config.limits.min_upload_rate,
        }
    }
}

/// What an upstream request holds until its response has been read (or dropped).
pub struct Permits {
    _per_ip: Slot,
    _per_conn: OwnedSemaphorePermit,
    /// The worker whose connection asked: the request goes on one of its
    /// upstream connections.
    worker: usize,
}

/// Waits for a place under the connection's cap on upstream requests (an
/// HTTP/2 client may open 100 streams and read none of them), at most
/// `wait`, and takes one under its address's, which refuses rather than waits.
pub async fn permits(
    caps: &Caps,
    conn: &ClientConn,
    client: &Client,
    wait: Duration,
) -> Result<Permits, ProxyError> {
    let per_ip = caps
        .upstream
        .acquire(client.ip)
        .map_err(|refused| ProxyError::TooManyRequests { client: client.ip, limit: refused.limit() })?;
    let per_conn = match conn.upstream.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => tokio::time::timeout(wait, conn.upstream.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(ProxyError::Busy("max_upstream_per_connection"))?,
    };
    Ok(Permits { _per_ip: per_ip, _per_conn: per_conn, worker: conn.worker })
}

/// Sends `parts` (head already rewritten) and `body` on one of the
/// permits' worker's upstream connections and returns Vaultwarden's answer
/// (judged first when it answers a login).
pub async fn forward(
    upstream: &Upstream,
    limits: &BodyLimits,
    parts: http::request::Parts,
    body: Incoming,
    log: &Entry,
    permits: Permits,
    judging: Option<Judging<'_>>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let worker = permits.worker;
    // The response clock starts when the request body has been sent, so a
    // 500 MB upload over a slow line is not mistaken for a slow upstream.
    // A request without a body has nothing to wait for (and nothing to wrap).
    let (body, sent) = if http_body::Body::is_end_stream(&body) {
        (body::empty(), None)
    } else {
        let sent = Arc::new(Ended::default());
        let limited = Limited::new(body, usize::try_from(limits.max).unwrap_or(usize::MAX));
        let paced = Pace::new(limited, limits.idle, limits.min_rate);
        let ends = sent.clone();
        let metered = OnEnd::new(paced, move |how, _| ends.set(how)).counting_into(log.bytes_in.clone());
        (body::boxed(metered), Some(sent))
    };
    let req = Request::from_parts(parts, body);
    let timeout = upstream.response_timeout;
    let deadline = async {
        if let Some(sent) = &sent {
            sent.wait().await;
        }
        tokio::time::sleep(timeout).await;
    };
    // A body the client broke (bad chunk, too large, stalled, vanished)
    // is the client's fault, not Vaultwarden's.
    let sending = async {
        upstream.send(req, worker).await.map_err(|e| match e {
            SendFailure::Connect(e) => e,
            SendFailure::Send { error, client: true } => ProxyError::from_body_failure(&*error, limits.max),
            SendFailure::Send { error, client: false } if exchange::stalled(&error) => upstream.timed_out(),
            SendFailure::Send { error, client: false } => upstream.unreachable(&*error),
        })
    };
    let resp = tokio::select! {
        r = sending => r?,
        _ = deadline => return Err(upstream.timed_out()),
    };
    log.upstream_answered();
    let (mut parts, mut body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    // A login's answer is judged before the client sees any of it: a client
    // that hangs up at the status line must not escape being counted.
    let mut ahead = Ahead::default();
    if let Some(judging) = &judging {
        match judge::by_status(judging.login, parts.status, &parts.headers) {
            Needs::Verdict(v) => judging.apply(v),
            Needs::Body => {
                // Bounded in time too: an answer that trickles is passed on
                // unjudged with what came so far, after at most the response timeout.
                let deadline = tokio::time::Instant::now() + timeout;
                if let Err(e) = read_ahead(&mut body, &mut ahead, BODY_PREFIX, deadline).await {
                    return Err(upstream.unreachable(&*e));
                }
                // Longer than Vaultwarden's refusals: passed on unjudged.
                if ahead.complete {
                    judging.apply(judge::by_body(judging.login, &ahead.data));
                }
            }
        }
    }
    // The answer's body gives its connection back when read to the end
    // (`exchange.rs`); the permits are held until then, or until the client
    // stops reading.
    if ahead.data.is_empty() && ahead.trailers.is_none() {
        // Nothing read ahead: an answer without a body already gave its
        // connection back, and holds nothing.
        if http_body::Body::is_end_stream(&body) {
            return Ok(Response::from_parts(parts, body::boxed(body)));
        }
        let body = OnEnd::new(body, move |_, _| drop(permits));
        return Ok(Response::from_parts(parts, body::boxed(body)));
    }
    let body = Replay::new(ahead.data.freeze(), ahead.trailers, body);
    let body = OnEnd::new(body, move |_, _| drop(permits));
    Ok(Response::from_parts(parts, body::boxed(body)))
}
