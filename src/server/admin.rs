//! The `[metrics]` listener (keep it on loopback or a private network):
//! `GET /metrics` in Prometheus text format, and `GET /healthz`, green only
//! when Vaultwarden answers `/alive`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::Upstream;
use crate::observe::metrics::Metrics;
use crate::proxy::body::{self, ProxyBody};

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// How long `/healthz` waits for Vaultwarden's `/alive`, connecting included.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `/healthz`'s view of Vaultwarden: one connection, kept between checks
/// and used by one check at a time, so a prober (or anyone who can reach
/// this listener) never makes the proxy open a connection per request.
pub struct Health {
    upstream: Upstream,
    kept: tokio::sync::Mutex<Option<SendRequest<ProxyBody>>>,
}

impl Health {
    pub fn new(upstream: Upstream) -> Health {
        Health { upstream, kept: tokio::sync::Mutex::new(None) }
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, String> {
        let tcp = TcpStream::connect(self.upstream.authority.as_str()).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Asks Vaultwarden's `/alive` within two seconds, on the kept connection
    /// when it is still open (else, or when Vaultwarden closed it just then,
    /// on a new one, which is then kept).
    pub async fn check(&self) -> Result<(), String> {
        let ask = async {
            let mut kept = self.kept.lock().await;
            let mut reused = kept.take();
            loop {
                let was_reused = reused.is_some();
                let mut sender = match reused.take() {
                    Some(s) if !s.is_closed() => s,
                    _ => self.connect().await?,
                };
                if sender.ready().await.is_err() && was_reused {
                    continue;
                }
                let req = Request::get("/alive")
                    .header(header::HOST, self.upstream.authority.as_str())
                    .body(body::empty())
                    .map_err(|e| e.to_string())?;
                let resp = match sender.send_request(req).await {
                    Ok(resp) => resp,
                    Err(_) if was_reused => continue,
                    Err(e) => return Err(e.to_string()),
                };
                let status = resp.status();
                // Read to the end (a few bytes; bounded anyway) so the
                // connection is free for the next check.
                let read = http_body_util::Limited::new(resp.into_body(), 64 * 1024).collect().await;
                if read.is_ok() {
                    *kept = Some(sender);
                }
                return if status.is_success() { Ok(()) } else { Err(format!("/alive answered {status}")) };
            }
        };
        tokio::time::timeout(HEALTH_TIMEOUT, ask).await.unwrap_or_else(|_| Err("no answer within 2 s".into()))
    }
}

/// The warning logged when `[metrics] listen` is not a loopback address:
/// the counters and `/healthz` are for the operator, not the internet.
pub fn exposure_warning(listen: SocketAddr) -> Option<String> {
    (!listen.ip().is_loopback()).then(|| {
        format!(
            "[metrics] listens on {listen}, which is not a loopback address: anyone who can reach it \
             sees the counters and can probe /healthz; prefer listen = \"127.0.0.1:{}\" or firewall the port",
            listen.port()
        )
    })
}

async fn answer(req: Request<Incoming>, metrics: Arc<Metrics>, health: Arc<Health>) -> Response<ProxyBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        // The body names no address: who Vaultwarden is and why it failed
        // are for the log.
        (&Method::GET, "/healthz") => match health.check().await {
            Ok(()) => text(StatusCode::OK, "text/plain", "ok: Vaultwarden answers\n".into()),
            Err(e) => {
                tracing::warn!("/healthz: Vaultwarden at {} is not answering: {e}", health.upstream.url);
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "Vaultwarden is not answering\n".into())
            }
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain", "try /metrics or /healthz\n".into()),
    }
}

/// Binds the listener; the returned future serves until `stop`.
pub async fn start(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    upstream: Upstream,
    stop: watch::Receiver<bool>,
    cap: Arc<crate::conn_limit::ConnLimit>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    if let Some(warning) = exposure_warning(listen) {
        tracing::warn!("{warning}");
    }
    let health = Arc::new(Health::new(upstream));
    crate::server::accept::plain_http(listen, "metrics", stop, cap, move |req| {
        answer(req, metrics.clone(), health.clone())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_quiet() {
        for quiet in ["127.0.0.1:9187", "[::1]:9187", "127.0.0.53:1"] {
            assert_eq!(exposure_warning(quiet.parse().unwrap()), None, "{quiet}");
        }
        for loud in ["0.0.0.0:9187", "[::]:9187", "192.168.1.2:9187", "10.0.0.1:1"] {
            let w = exposure_warning(loud.parse().unwrap()).expect(loud);
            assert!(w.contains(loud) && w.contains("not a loopback address"), "{w}");
        }
    }
}
