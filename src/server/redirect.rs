//! The optional plain-HTTP listener: every request gets a 301 to the same
//! host and path on https, and nothing else, except the CA's HTTP-01 checks
//! while an ACME order is pending.

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::sync::watch;

use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;

use crate::http::{host, path};
use crate::proxy::body::{self, ProxyBody};
use crate::tls::store::{Live, HTTP01_PREFIX};

/// Where a plain-HTTP request is sent: `https://` + the host it named
/// (without its port) + the HTTPS port unless 443 + the normalised path and
/// the query. `None` when the request does not name a host vaultgate serves:
/// with `[tls] server_names`, one of those; without, a name (or IP address)
/// the served certificate `covers`. Anything else gets no `Location` at all,
/// so the redirect never sends a browser to a host of the client's choosing,
/// and a scanner asking by IP address learns no name.
pub fn location(
    uri: &Uri,
    req_headers: &http::HeaderMap,
    https_port: u16,
    server_names: &[String],
    covers: impl Fn(&ServerName<'_>) -> bool,
) -> Option<String> {
    let host = host::request_host(uri, req_headers).ok()?;
    let authority: http::uri::Authority = host.to_str().ok()?.parse().ok()?;
    let name = authority.host().to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name);
    if name.ends_with('.') {
        return None;
    }
    // `[::1]` in a URL, `::1` as an address.
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    let known = if server_names.is_empty() {
        ServerName::try_from(bare).is_ok_and(|n| covers(&n))
    } else {
        server_names.iter().any(|n| n == name)
    };
    if !known {
        return None;
    }
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let path = path::normalize(uri.path()).ok()?;
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("https://{name}{port}{path}{query}"))
}

/// True when `certified`'s leaf certificate is valid for `name` (DNS names
/// and wildcards as browsers match them, IP addresses against IP SANs), by
/// rustls's own webpki check.
fn certificate_covers(certified: Option<&CertifiedKey>, name: &ServerName<'_>) -> bool {
    let Some(leaf) = certified.and_then(|c| c.cert.first()) else {
        return false;
    };
    rustls::server::ParsedCertificate::try_from(leaf)
        .is_ok_and(|parsed| rustls::client::verify_server_name(&parsed, name).is_ok())
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
    if host::request_host(req.uri(), req.headers()).is_err() || path::normalize(req.uri().path()).is_err() {
        let mut resp = Response::new(body::full("400 Bad Request\n\nvaultgate: use https.\n"));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    }
    let served = live.served();
    let covers = |name: &ServerName<'_>| certificate_covers(served.as_deref(), name);
    let target = location(req.uri(), req.headers(), https_port, server_names, covers);
    let Some(value) = target.and_then(|t| HeaderValue::from_str(&t).ok()) else {
        // A host this server has no certificate for: nothing of the
        // client's is echoed back.
        let mut resp = Response::new(body::full(
            "421 Misdirected Request\n\nvaultgate: this server does not serve the requested host over https.\n",
        ));
        *resp.status_mut() = StatusCode::MISDIRECTED_REQUEST;
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
    crate::server::accept::plain_http(listen, "redirect", stop, cap, move |req| {
        let resp = respond(&req, https_port, &server_names, &live);
        async move { resp }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(target: &str, host: &str, port: u16, names: &[&str]) -> Option<String> {
        loc_covered(target, host, port, names, &["vault.example.com", "localhost", "127.0.0.1", "::1"])
    }

    fn loc_covered(target: &str, host: &str, port: u16, names: &[&str], covered: &[&str]) -> Option<String> {
        let mut h = http::HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let covers = |n: &ServerName<'_>| covered.iter().any(|c| ServerName::try_from(*c).unwrap() == *n);
        location(&target.parse().unwrap(), &h, port, &names, covers)
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
        assert_eq!(loc("/a/../b//c", "localhost", 443, &[]).as_deref(), Some("https://localhost/b/c"));
        assert_eq!(loc("/", "localhost.", 443, &[]).as_deref(), Some("https://localhost/"));
        // IP literals only when the certificate has that address.
        assert_eq!(loc("/", "127.0.0.1:80", 8443, &[]).as_deref(), Some("https://127.0.0.1:8443/"));
        assert_eq!(loc("/", "[::1]", 443, &[]).as_deref(), Some("https://[::1]/"));
        assert_eq!(loc("/", "10.0.0.1", 443, &[]), None);
    }

    #[test]
    fn unknown_hosts_get_no_location_and_junk_is_refused() {
        // Without server_names: only what the certificate covers.
        for host in ["evil.example", "evil.example:80", "vault.example.com.evil", "localhost..", "[::2]"] {
            assert_eq!(loc("/", host, 443, &[]), None, "{host}");
        }
        assert_eq!(loc_covered("/", "localhost", 443, &[], &[]), None, "no certificate, no redirect");
        // With server_names: only those, even if the certificate covers more.
        let names = ["vault.example.com"];
        assert_eq!(loc("/", "evil.example", 443, &names), None);
        assert_eq!(loc("/", "localhost", 443, &names), None);
        assert_eq!(loc("/", "127.0.0.1", 443, &names), None);
        assert_eq!(
            loc("/", "VAULT.example.com:80", 443, &names).as_deref(),
            Some("https://vault.example.com/")
        );
        assert_eq!(loc("/", "user@evil", 443, &[]), None);
        assert_eq!(loc("/a%2fb", "localhost", 443, &[]), None);
    }

    #[test]
    fn certificate_names_are_matched_by_webpki_wildcards_included() {
        let names = vec!["*.example.com".to_string(), "127.0.0.1".to_string()];
        let certified = crate::tls::self_signed::build(&crate::tls::provider(), names, None).unwrap();
        let covers = |n: &str| certificate_covers(Some(&certified), &ServerName::try_from(n).unwrap());
        assert!(covers("vault.example.com") && covers("127.0.0.1"));
        assert!(
            !covers("example.com")
                && !covers("a.b.example.com")
                && !covers("127.0.0.2")
                && !covers("evil.test")
        );
        assert!(!certificate_covers(None, &ServerName::try_from("vault.example.com").unwrap()));
    }
}
