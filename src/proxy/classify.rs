//! What a request is, decided from its head alone before anything is
//! opened upstream: refused (and why), forwarded, or a hub tunnel.

use std::borrow::Cow;

use http::header::HeaderValue;
use http::{Method, Request, Uri, Version};

use super::error::ProxyError;
use crate::config::Config;
use crate::http::client_ip::Client;
use crate::http::{access, header_line, headers, host, path};
use crate::websocket;

/// What `classify` decides with: the configuration's rules for requests.
pub struct Rules {
    hub_paths: Vec<String>,
    /// Bytes in one header field, else 431 (HTTP/2 here; HTTP/1.1 in `io::h1_guard`).
    pub max_header_line: usize,
    /// `[tls] server_names`: when set, a request for any other host is 421.
    server_names: Vec<String>,
    access: Vec<access::Rule>,
    max_request_body: u64,
}

impl Rules {
    pub fn new(config: &Config) -> Rules {
        Rules {
            hub_paths: config.hub_paths.clone(),
            max_header_line: config.limits.max_header_line,
            server_names: config.tls.server_names.clone(),
            access: config.access.clone(),
            max_request_body: config.limits.max_request_body,
        }
    }
}

/// Where a request goes.
#[derive(Debug)]
pub enum Route {
    /// Answered by the proxy itself with this error's status.
    Refuse(ProxyError),
    /// An ordinary request, forwarded with its body.
    Forward(Target),
    /// A hub: an HTTP/1.1 WebSocket upgrade, or an HTTP/2 extended CONNECT
    /// (RFC 8441) that is translated to one.
    Hub(Target),
}

/// Where a request goes upstream.
#[derive(Debug)]
pub struct Target {
    /// The Host Vaultwarden gets (the client's, checked).
    pub host: HeaderValue,
    /// The request target in origin form.
    pub uri: Uri,
}

/// Decides what `req` is, from `client` (the resolved client address).
pub fn classify<B: http_body::Body>(rules: &Rules, req: &Request<B>, client: &Client) -> Route {
    match decide(rules, req, client) {
        Ok(route) => route,
        Err(e) => Route::Refuse(e),
    }
}

fn decide<B: http_body::Body>(rules: &Rules, req: &Request<B>, client: &Client) -> Result<Route, ProxyError> {
    // HTTP/2 extended CONNECT (RFC 8441) is how browsers open WebSockets
    // on an HTTP/2 connection; any other CONNECT is a tunnel request.
    let protocol = req.extensions().get::<hyper::ext::Protocol>().map(|p| p.as_str().to_ascii_lowercase());
    if req.method() == Method::CONNECT && protocol.is_none() {
        return Err(ProxyError::MethodNotAllowed(Method::CONNECT));
    }
    if req.uri().scheme_str().is_some_and(|s| s != "http" && s != "https") {
        return Err(ProxyError::BadTarget);
    }
    if header_line::has_long_field(req, rules.max_header_line) {
        return Err(ProxyError::HeaderTooLong { limit: rules.max_header_line });
    }
    let host = host::request_host(req.uri(), req.headers())?;
    if let Some(unresolved) = client.unresolved {
        return Err(unresolved.into());
    }
    if !rules.server_names.is_empty() && !host::host_among(&host, &rules.server_names) {
        return Err(ProxyError::Misdirected);
    }
    if headers::has_repeated_content_length(req.headers()) {
        return Err(ProxyError::AmbiguousLength);
    }
    // The normalised path when it differs from the one sent (most do not:
    // then the request target goes upstream as it came, nothing rebuilt).
    let rewritten = match path::normalize(req.uri().path())? {
        Cow::Owned(p) if p != req.uri().path() => Some(p),
        _ => None,
    };
    let normalized = rewritten.as_deref().unwrap_or(req.uri().path());
    if access::refusing(&rules.access, normalized, client.ip).is_some() {
        return Err(ProxyError::Forbidden { path: normalized.to_string(), client: client.ip });
    }
    if http_body::Body::size_hint(req.body()).lower() > rules.max_request_body {
        return Err(ProxyError::TooLarge { limit: rules.max_request_body });
    }
    // A tunnel only for the hub path written plainly: any other spelling
    // (`//`, dot segments, escapes) is served as an ordinary request.
    let on_hub_path = rewritten.is_none() && websocket::is_hub_path(normalized, &rules.hub_paths);
    if let Some(protocol) = protocol {
        if protocol != "websocket" || !on_hub_path {
            return Err(ProxyError::NotAHub { protocol, path: normalized.to_string() });
        }
    }
    let is_http1_hub =
        req.version() == Version::HTTP_11 && websocket::wants_websocket(req.headers()) && on_hub_path;
    let target = Target { host, uri: origin_form(req.uri(), rewritten.as_deref())? };
    if is_http1_hub || req.method() == Method::CONNECT {
        Ok(Route::Hub(target))
    } else {
        Ok(Route::Forward(target))
    }
}

/// The request target sent upstream (origin form): the path, or `rewritten`
/// (the normalised one) when it differs, and the query byte for byte.
fn origin_form(uri: &Uri, rewritten: Option<&str>) -> Result<Uri, ProxyError> {
    let path_and_query = match (rewritten, uri.path_and_query()) {
        (None, _) if uri.scheme().is_none() && uri.authority().is_none() => return Ok(uri.clone()),
        (None, Some(pq)) => pq.clone(),
        (Some(path), _) => {
            let rebuilt = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            http::uri::PathAndQuery::try_from(rebuilt).map_err(|_| ProxyError::BadTarget)?
        }
        (None, None) => http::uri::PathAndQuery::from_static("/"),
    };
    Ok(Uri::from(path_and_query))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    fn rules(extra: &str) -> Rules {
        let text = format!("upstream = \"http://127.0.0.1:8000\"\n{extra}");
        Rules::new(&Config::parse(std::path::Path::new("proxy.toml"), &text).unwrap())
    }

    fn client() -> Client {
        crate::http::client_ip::Policy::default()
            .resolve("192.0.2.7".parse::<std::net::IpAddr>().unwrap(), &http::HeaderMap::new())
    }

    fn get(target: &str, headers: &[(&str, &str)]) -> Request<Empty<bytes::Bytes>> {
        let mut req = Request::get(target).body(Empty::new()).unwrap();
        for (k, v) in headers {
            req.headers_mut().append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        req
    }

    fn upgrade(target: &str) -> Request<Empty<bytes::Bytes>> {
        get(target, &[("host", "vault.example"), ("upgrade", "websocket"), ("connection", "Upgrade")])
    }

    fn extended_connect(protocol: &str, path: &str) -> Request<Empty<bytes::Bytes>> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri(format!("https://vault.example{path}"))
            .body(Empty::new())
            .unwrap();
        req.extensions_mut().insert(hyper::ext::Protocol::from(protocol));
        req
    }

    fn route(rules: &Rules, req: &Request<Empty<bytes::Bytes>>) -> Route {
        classify(rules, req, &client())
    }

    #[test]
    fn ordinary_requests_are_forwarded_with_the_host_and_target_as_sent() {
        let Route::Forward(t) = route(&rules(""), &get("/api/sync?x=1", &[("host", "vault.example")])) else {
            panic!("forwarded")
        };
        assert_eq!(t.host, "vault.example");
        assert_eq!(t.uri, "/api/sync?x=1");
        // An absolute-form target goes upstream in origin form.
        let Route::Forward(t) = route(&rules(""), &get("http://vault.example/api?q", &[])) else { panic!() };
        assert_eq!((t.host.to_str().unwrap(), t.uri.to_string().as_str()), ("vault.example", "/api?q"));
        // A path that normalises differently is sent normalised, query kept.
        let Route::Forward(t) = route(&rules(""), &get("/api/../alive?a=b", &[("host", "v")])) else {
            panic!()
        };
        assert_eq!(t.uri, "/alive?a=b");
    }

    #[test]
    fn hubs_only_on_the_hub_path_written_plainly() {
        let r = rules("");
        assert!(matches!(route(&r, &upgrade("/notifications/hub?access_token=x")), Route::Hub(_)));
        assert!(matches!(route(&r, &upgrade("/notifications/anonymous-hub")), Route::Hub(_)));
        // Any other spelling is an ordinary request (the upgrade is not honoured).
        for other in ["/notifications//hub", "/notifications/x/../hub", "/notifications/Hub", "/api"] {
            assert!(matches!(route(&r, &upgrade(other)), Route::Forward(_)), "{other}");
        }
        assert!(matches!(route(&r, &extended_connect("websocket", "/notifications/hub")), Route::Hub(_)));
        assert!(matches!(route(&r, &extended_connect("WebSocket", "/notifications/hub")), Route::Hub(_)));
    }

    #[test]
    fn refusals_say_why() {
        let r = rules("[tls]\nserver_names = [\"vault.example\"]\n[[access]]\npath = \"/admin\"\nallow = [\"10.0.0.0/8\"]\n");
        let refused = |req: &Request<Empty<bytes::Bytes>>| match route(&r, req) {
            Route::Refuse(e) => e.status().as_u16(),
            other => panic!("not refused: {other:?}"),
        };
        let connect =
            Request::builder().method(Method::CONNECT).uri("vault.example:443").body(Empty::new()).unwrap();
        assert_eq!(refused(&connect), 405);
        assert_eq!(refused(&get("/", &[])), 400, "no host");
        assert_eq!(refused(&get("/", &[("host", "a"), ("host", "b")])), 400, "two hosts");
        assert_eq!(refused(&get("/", &[("host", "other.example")])), 421);
        assert_eq!(
            refused(&get(
                "/",
                &[("host", "vault.example"), ("content-length", "1"), ("content-length", "2")]
            )),
            400
        );
        assert_eq!(refused(&get("/admin", &[("host", "vault.example")])), 403);
        assert_eq!(
            refused(&get("/%2e%2e/Admin/", &[("host", "vault.example")])),
            403,
            "on the normalised path"
        );
        assert_eq!(refused(&get("/admin%2f", &[("host", "vault.example")])), 400);
        assert_eq!(refused(&extended_connect("h2c", "/notifications/hub")), 404);
        assert_eq!(refused(&extended_connect("websocket", "/api")), 404);
        // HTTP/2 here (HTTP/1.1's lines are measured in `io::h1_guard`).
        let mut long = get("/", &[("host", "vault.example"), ("x-long", &"a".repeat(9000))]);
        *long.version_mut() = Version::HTTP_2;
        assert_eq!(refused(&long), 431);
    }

    #[test]
    fn an_unresolved_client_is_refused_after_the_host_check() {
        let mut client = client();
        client.unresolved = Some(crate::http::client_ip::Unresolved { peer: "127.0.0.1".parse().unwrap() });
        let req = get("/", &[("host", "vault.example")]);
        assert!(matches!(
            classify(&rules(""), &req, &client),
            Route::Refuse(ProxyError::UnresolvedClient(_))
        ));
        let req = get("/", &[]);
        assert!(matches!(classify(&rules(""), &req, &client), Route::Refuse(ProxyError::BadHost(_))));
    }
}
