//! The `[metrics]` listener (keep it on loopback or a private network):
//! `GET /metrics` in Prometheus text format, and `GET /healthz`: red (503)
//! when clients cannot be served (Vaultwarden does not answer `/alive`, the
//! certificate has expired), green with a warning line for each thing that
//! will go wrong unless someone acts (the certificate expires within 7
//! days, ACME is failing).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
use crate::tls::store::Live;

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

/// The certificate clients are shown now, as `/healthz` and `/metrics` tell it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Certificate {
    pub not_after: Option<SystemTime>,
    /// When ACME last failed, if it has not succeeded since.
    pub acme_failed_at: Option<SystemTime>,
}

impl Certificate {
    fn of(live: &Live) -> Certificate {
        Certificate { not_after: live.served_not_after(), acme_failed_at: live.acme_failed_at() }
    }
}

/// A certificate this close to its end is a warning on `/healthz`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// `/healthz`'s status and body, one line per finding. The body names no
/// address: who Vaultwarden is and why it failed are for the log.
pub fn report(vaultwarden: &Result<(), String>, cert: Certificate, now: SystemTime) -> (StatusCode, String) {
    let mut status = StatusCode::OK;
    let mut body = String::new();
    match vaultwarden {
        Ok(()) => body.push_str("ok: Vaultwarden answers\n"),
        Err(_) => {
            status = StatusCode::SERVICE_UNAVAILABLE;
            body.push_str("Vaultwarden is not answering\n");
        }
    }
    if let Some(end) = cert.not_after {
        match end.duration_since(now) {
            Err(_) => {
                status = StatusCode::SERVICE_UNAVAILABLE;
                body.push_str(&format!("the certificate expired at {}: clients refuse it\n", utc(end)));
            }
            Ok(left) if left < EXPIRY_WARNING => body.push_str(&format!(
                "warning: the certificate expires in {} (at {})\n",
                days_hours(left),
                utc(end)
            )),
            Ok(_) => {}
        }
    }
    if let Some(at) = cert.acme_failed_at {
        body.push_str(&format!(
            "warning: ACME could not obtain a certificate (last attempt at {}; the log says why)\n",
            utc(at)
        ));
    }
    (status, body)
}

/// The certificate's lines for `/metrics`.
pub fn certificate_metrics(cert: Certificate, now: SystemTime) -> String {
    let mut out = String::new();
    if let Some(end) = cert.not_after {
        let unix = |t: SystemTime| match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let (end, now) = (unix(end), unix(now));
        out.push_str(&format!(
            "# HELP vaultgate_certificate_not_after_timestamp_seconds When the certificate served now expires.\n\
             # TYPE vaultgate_certificate_not_after_timestamp_seconds gauge\n\
             vaultgate_certificate_not_after_timestamp_seconds {end}\n\
             # HELP vaultgate_certificate_expiry_seconds Seconds until the certificate served now expires (negative: expired).\n\
             # TYPE vaultgate_certificate_expiry_seconds gauge\n\
             vaultgate_certificate_expiry_seconds {}\n",
            end - now
        ));
    }
    out.push_str(&format!(
        "# HELP vaultgate_acme_failing 1 when the last attempt to obtain a certificate by ACME failed.\n\
         # TYPE vaultgate_acme_failing gauge\n\
         vaultgate_acme_failing {}\n",
        u8::from(cert.acme_failed_at.is_some())
    ));
    out
}

fn utc(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t).replace_nanosecond(0).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn days_hours(d: Duration) -> String {
    let hours = d.as_secs() / 3600;
    match hours / 24 {
        0 => format!("{}h {}m", hours, d.as_secs() / 60 % 60),
        days => format!("{days}d {}h", hours % 24),
    }
}

async fn answer(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    live: Arc<Live>,
) -> Response<ProxyBody> {
    let now = SystemTime::now();
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut out = metrics.render();
            out.push_str(&certificate_metrics(Certificate::of(&live), now));
            text(StatusCode::OK, "text/plain; version=0.0.4", out)
        }
        (&Method::GET, "/healthz") => {
            let vaultwarden = health.check().await;
            if let Err(e) = &vaultwarden {
                tracing::warn!("/healthz: Vaultwarden at {} is not answering: {e}", health.upstream.url);
            }
            let (status, body) = report(&vaultwarden, Certificate::of(&live), now);
            text(status, "text/plain", body)
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "try /metrics or /healthz\n".into()),
    }
}

/// Binds the listener; the returned future serves until `stop`.
pub async fn start(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    live: Arc<Live>,
    upstream: Upstream,
    stop: watch::Receiver<bool>,
    cap: Arc<crate::conn_limit::ConnLimit>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    if let Some(warning) = exposure_warning(listen) {
        tracing::warn!("{warning}");
    }
    let health = Arc::new(Health::new(upstream));
    crate::server::accept::plain_http(listen, "metrics", stop, cap, move |req| {
        answer(req, metrics.clone(), health.clone(), live.clone())
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
    fn health_is_red_when_clients_cannot_be_served_and_warns_before() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let days = |n: u64| Duration::from_secs(n * 24 * 3600);
        let fine = Certificate { not_after: Some(now + days(60)), acme_failed_at: None };
        assert_eq!(report(&Ok(()), fine, now), (StatusCode::OK, "ok: Vaultwarden answers\n".into()));
        let (status, body) = report(&Err("refused".into()), fine, now);
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "Vaultwarden is not answering\n")
        );

        let soon =
            Certificate { not_after: Some(now + days(3) + Duration::from_secs(7200)), acme_failed_at: None };
        let (status, body) = report(&Ok(()), soon, now);
        assert_eq!(status, StatusCode::OK, "still served: a warning, not a failure");
        assert_eq!(
            body,
            "ok: Vaultwarden answers\nwarning: the certificate expires in 3d 2h (at 2027-01-18T10:00:00Z)\n"
        );
        let expired = Certificate { not_after: Some(now - days(1)), acme_failed_at: Some(now - days(2)) };
        let (status, body) = report(&Ok(()), expired, now);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("the certificate expired at 2027-01-14T08:00:00Z"), "{body}");
        assert!(
            body.contains(
                "warning: ACME could not obtain a certificate (last attempt at 2027-01-13T08:00:00Z"
            ),
            "{body}"
        );
    }

    #[test]
    fn certificate_metrics_count_down_to_the_end() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let cert = Certificate { not_after: Some(now + Duration::from_secs(500)), acme_failed_at: None };
        let text = certificate_metrics(cert, now);
        for line in [
            "vaultgate_certificate_not_after_timestamp_seconds 1500",
            "vaultgate_certificate_expiry_seconds 500",
            "vaultgate_acme_failing 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        let expired =
            Certificate { not_after: Some(now - Duration::from_secs(10)), acme_failed_at: Some(now) };
        let text = certificate_metrics(expired, now);
        assert!(text.contains("vaultgate_certificate_expiry_seconds -10\n"), "{text}");
        assert!(text.contains("vaultgate_acme_failing 1\n"), "{text}");
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
