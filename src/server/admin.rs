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
use tokio::sync::watch;

use crate::config::Upstream;
use crate::observe::metrics::Metrics;
use crate::proxy::body::{self, ProxyBody};
use crate::proxy::upstream;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// How long `/healthz` waits for Vaultwarden's `/alive`, connecting included.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// What a check says when time ran out, also when it was the connect's own
/// (equal) timeout that ended first.
const NO_ANSWER: &str = "no answer within 2 s";

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
        upstream::connect(self.upstream.authority.as_str(), HEALTH_TIMEOUT, false).await.map_err(|e| {
            if upstream::timed_out(&e) {
                NO_ANSWER.into()
            } else {
                e.to_string()
            }
        })
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
        tokio::time::timeout(HEALTH_TIMEOUT, ask).await.unwrap_or_else(|_| Err(NO_ANSWER.into()))
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A Vaultwarden that gives `answer` (if any) to every request it reads.
    async fn vaultwarden(answer: Option<&'static [u8]>) -> Health {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        if let Some(answer) = answer {
                            let _ = tcp.write_all(answer).await;
                        }
                    }
                });
            }
        });
        Health::new(Upstream { authority: addr.to_string().parse().unwrap(), url: format!("http://{addr}") })
    }

    #[tokio::test]
    async fn health_says_what_vaultwarden_answered_or_why_not() {
        let up = vaultwarden(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
        assert_eq!(up.check().await, Ok(()));
        assert_eq!(up.check().await, Ok(()), "again, on the kept connection");
        let unwell =
            vaultwarden(Some(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")).await;
        assert_eq!(unwell.check().await, Err("/alive answered 503 Service Unavailable".into()));
        let silent = vaultwarden(None).await;
        assert_eq!(silent.check().await, Err("no answer within 2 s".into()));

        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let down = Health::new(Upstream { authority: addr.to_string().parse().unwrap(), url: String::new() });
        let e = down.check().await.unwrap_err();
        assert!(e.starts_with("Connection refused"), "{e}");
    }

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
