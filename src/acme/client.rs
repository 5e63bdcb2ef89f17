//! The HTTPS client instant-acme talks to the CA through: one HTTP/1.1
//! connection per request (an order is a handful of requests a month), our
//! own rustls configuration and roots (system store plus `[tls] acme.ca`),
//! bounded in time and size.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::ServerName;

use crate::proxy::upstream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A certificate chain or a directory is a few KiB; nothing legitimate is near this.
const MAX_RESPONSE: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Https {
    tls: Arc<rustls::ClientConfig>,
}

impl Https {
    pub fn new(roots: rustls::RootCertStore) -> Result<Https, String> {
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Https { tls: Arc::new(config) })
    }
}

impl HttpClient for Https {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let what = format!("{} {}", req.method(), req.uri());
            match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(tls, req)).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(instant_acme::Error::Other(format!("{what}: {e}").into())),
                Err(_) => Err(instant_acme::Error::Other(format!("{what}: no answer within 30 s").into())),
            }
        })
    }
}

async fn exchange(
    tls: Arc<rustls::ClientConfig>,
    req: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err("the ACME server must be reached over https".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let tcp = upstream::tcp((host, port), CONNECT_TIMEOUT).await.map_err(|e| {
        if upstream::timed_out(&e) {
            format!("cannot connect to {host}:{port} within 10 s")
        } else {
            format!("cannot connect to {host}:{port}: {e}")
        }
    })?;
    let name = ServerName::try_from(host.to_string())?;
    let stream =
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let mut sender = upstream::handshake(stream, false).await?;

    // Origin form plus Host, as every server expects from HTTP/1.1.
    let (mut parts, body) = req.into_parts();
    let authority = uri.authority().ok_or("the URL has no host")?.as_str();
    parts.headers.insert(HOST, HeaderValue::from_str(authority)?);
    parts.uri = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
    let resp = sender.send_request(Request::from_parts(parts, body)).await?;

    let (parts, body) = resp.into_parts();
    let bytes = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
    Ok(BytesResponse::from(Response::from_parts(parts, Full::new(bytes))))
}
