//! The optional plain-HTTP listener: every request gets a 301 to the same
//! host and path on https, and nothing else, except the CA's HTTP-01 checks
//! while an ACME order is pending.

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::acme::{Live, HTTP01_PREFIX};
use crate::body::{self, ProxyBody};
use crate::{headers, path};

/// Where a plain-HTTP request is sent: `https://` + the host it named
/// (without its port) + the HTTPS port unless 443 + the normalised path and
/// the query. `None` when the request does not name a usable host.
pub fn location(
    uri: &Uri,
    req_headers: &http::HeaderMap,
    https_port: u16,
    server_names: &[String],
) -> Option<String> {
    let host = headers::request_host(uri, req_headers).ok()?;
    let authority: http::uri::Authority = host.to_str().ok()?.parse().ok()?;
    let mut name = authority.host().to_ascii_lowercase();
    // With strict SNI configured, only the configured names are redirected to.
    if !server_names.is_empty() && !server_names.contains(&name) {
        name = server_names[0].clone();
    }
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let path = path::normalize(uri.path()).ok()?;
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("https://{name}{port}{path}{query}"))
}

fn respond(
    req: &Request<Incoming>,
    https_port: u16,
    server_names: &[String],
    live: &Live,
) -> Response<ProxyBody> {
    if req.uri().path().starts_with(HTTP01_PREFIX) {
        let Some(answer) = live.challenges.http_answer(req.uri().path()) else {
            let mut resp =
                Response::new(body::full("404 Not Found\n\nvaultgate: no ACME check is pending.\n"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            return resp;
        };
        tracing::info!("answered an ACME HTTP-01 check");
        let mut resp = Response::new(body::full(answer));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        return resp;
    }
    let target = location(req.uri(), req.headers(), https_port, server_names);
    let Some(value) = target.and_then(|t| HeaderValue::from_str(&t).ok()) else {
        let mut resp = Response::new(body::full("400 Bad Request\n\nvaultgate: use https.\n"));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    resp.headers_mut().insert(header::LOCATION, value);
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Binds the redirect listener; the returned future serves until `stop`.
pub async fn start(
    listen: SocketAddr,
    https_port: u16,
    server_names: Vec<String>,
    live: std::sync::Arc<Live>,
    stop: watch::Receiver<bool>,
    cap: std::sync::Arc<crate::conn_limit::ConnLimit>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    crate::plain_http::listener(listen, "redirect", stop, cap, move |req| {
        let resp = respond(&req, https_port, &server_names, &live);
        async move { resp }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(target: &str, host: &str, port: u16, names: &[&str]) -> Option<String> {
        let mut h = http::HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        location(&target.parse().unwrap(), &h, port, &names)
    }

    #[test]
    fn same_host_and_path_on_https() {
        assert_eq!(
            loc("/?x=1", "vault.example.com", 443, &[]).as_deref(),
            Some("https://vault.example.com/?x=1")
        );
        assert_eq!(
            loc("/api/x?a=%2F", "Vault.Example.com:80", 443, &[]).as_deref(),
            Some("https://vault.example.com/api/x?a=%2F")
        );
        assert_eq!(loc("/a", "localhost:8080", 8443, &[]).as_deref(), Some("https://localhost:8443/a"));
        assert_eq!(loc("/a/../b//c", "h", 443, &[]).as_deref(), Some("https://h/b/c"));
    }

    #[test]
    fn unknown_hosts_go_to_the_configured_name_and_junk_is_refused() {
        assert_eq!(
            loc("/", "evil.example", 443, &["vault.example.com"]).as_deref(),
            Some("https://vault.example.com/")
        );
        assert_eq!(loc("/", "user@evil", 443, &[]), None);
        assert_eq!(loc("/a%2fb", "h", 443, &[]), None);
    }
}
