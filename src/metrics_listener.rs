//! The `[metrics]` listener (keep it on loopback or a private network):
//! `GET /metrics` in Prometheus text format, and `GET /healthz`, green only
//! when Vaultwarden answers `/alive`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::{self, ProxyBody};
use crate::config::Upstream;
use crate::metrics::Metrics;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Asks Vaultwarden's `/alive` directly, within two seconds.
pub async fn upstream_alive(upstream: &Upstream) -> Result<(), String> {
    let ask = async {
        let tcp = TcpStream::connect(upstream.authority.as_str()).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get("/alive")
            .header(header::HOST, upstream.authority.as_str())
            .body(body::empty())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("/alive answered {}", resp.status()))
        }
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .unwrap_or_else(|_| Err("no answer within 2 s".into()))
}

async fn answer(req: Request<Incoming>, metrics: Arc<Metrics>, upstream: Upstream) -> Response<ProxyBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        (&Method::GET, "/healthz") => match upstream_alive(&upstream).await {
            Ok(()) => {
                text(StatusCode::OK, "text/plain", format!("ok: Vaultwarden at {} answers\n", upstream.url))
            }
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("Vaultwarden at {} is not answering: {e}\n", upstream.url),
            ),
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
    crate::plain_http::listener(listen, "metrics", stop, cap, move |req| {
        answer(req, metrics.clone(), upstream.clone())
    })
    .await
}
