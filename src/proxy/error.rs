//! Every answer vaultgate gives of its own instead of Vaultwarden's: one
//! enum, one place that maps it to a status, one short page.
//!
//! The page says only what kind of problem it was, in fixed words: nothing
//! the client sent (a path, a `:protocol`, a method) and nothing about the
//! upstream (its address, an OS error) ever reaches it. The `Display` text,
//! with all the detail, is for the log; client-derived parts in it are
//! quoted and escaped (`{:?}`).

use std::net::IpAddr;

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::http::host::HostError;
use crate::http::path::PathError;
use crate::proxy::body::{self, BodyStalled, ProxyBody};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    BadHost(#[from] HostError),
    #[error("the request target is not a path")]
    BadTarget,
    #[error(transparent)]
    UnresolvedClient(#[from] crate::http::client_ip::Unresolved),
    #[error("the requested host is not among [tls] server_names")]
    Misdirected,
    #[error("a header field is longer than {limit} bytes")]
    HeaderTooLong { limit: usize },
    #[error("the request path is not acceptable: {0}")]
    BadPath(#[from] PathError),
    #[error("the request has more than one Content-Length")]
    AmbiguousLength,
    #[error("the request body was malformed or cut short")]
    BadRequestBody,
    #[error("the request body stalled: {0}")]
    BodyTimeout(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{path:?} is not available from {client}")]
    Forbidden { path: String, client: IpAddr },
    #[error("{path:?} needs a client certificate and the connection from {peer} presented none")]
    CertificateRequired { path: String, peer: IpAddr },
    #[error("the client certificate of the connection from {peer} no longer verifies after a reload (revoked, expired or no longer under ca)")]
    CertificateRevoked { peer: IpAddr },
    #[error("{0} is not supported")]
    MethodNotAllowed(Method),
    #[error(
        "{protocol:?} tunnels are not offered on {path:?}; WebSockets are carried only on the hub paths"
    )]
    NotAHub { protocol: String, path: String },
    #[error("{client} already has {limit} hubs open")]
    TooManyHubs { client: IpAddr, limit: usize },
    #[error("{client} already has {limit} requests waiting on Vaultwarden")]
    TooManyRequests { client: IpAddr, limit: usize },
    #[error("{client} is banned by the login guard for {}s more", retry_after.as_secs())]
    Banned { client: IpAddr, retry_after: std::time::Duration },
    #[error("too many connections are open ({0})")]
    Busy(&'static str),
    #[error("Vaultwarden answered the WebSocket upgrade with a wrong Sec-WebSocket-Accept")]
    BadUpgrade,
    #[error("Vaultwarden at {url} is not answering ({detail})")]
    UpstreamUnreachable { url: String, detail: String },
    #[error("Vaultwarden at {url} did not answer within {secs} s")]
    UpstreamTimeout { url: String, secs: u64 },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadHost(_)
            | ProxyError::BadTarget
            | ProxyError::UnresolvedClient(_)
            | ProxyError::BadPath(_)
            | ProxyError::AmbiguousLength
            | ProxyError::BadRequestBody => StatusCode::BAD_REQUEST,
            // RFC 9110 §15.5.20: the answer for a connection reused, or a
            // certificate shown, for a name this server does not serve.
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::HeaderTooLong { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Forbidden { .. }
            | ProxyError::CertificateRequired { .. }
            | ProxyError::CertificateRevoked { .. } => StatusCode::FORBIDDEN,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NotAHub { .. } => StatusCode::NOT_FOUND,
            ProxyError::TooManyHubs { .. }
            | ProxyError::TooManyRequests { .. }
            | ProxyError::Banned { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadUpgrade => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Classifies a failure of the client's request body from the error the
    /// upstream client reported (the body's own error is in its source chain).
    pub fn from_body_failure(e: &(dyn std::error::Error + 'static), limit: u64) -> ProxyError {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return ProxyError::TooLarge { limit };
            }
            if let Some(stalled) = c.downcast_ref::<BodyStalled>() {
                return ProxyError::BodyTimeout(stalled.to_string());
            }
            cause = c.source();
        }
        ProxyError::BadRequestBody
    }

    /// What the client is told: fixed words per kind of error. The body
    /// size and rate limits are the operator's settings, which a client
    /// needs to know.
    pub fn public_text(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ProxyError::BadHost(_) => "the Host header is missing or not acceptable".into(),
            ProxyError::BadTarget => "the request target is not a path".into(),
            ProxyError::UnresolvedClient(_) => {
                "a trusted proxy reported a client address that is not an IP address".into()
            }
            ProxyError::Misdirected => "this server does not serve the requested host".into(),
            // The operator's setting, which a client needs to know.
            ProxyError::HeaderTooLong { limit } => {
                format!("a header field is longer than {limit} bytes").into()
            }
            ProxyError::BadPath(_) => "the request path is not acceptable".into(),
            ProxyError::AmbiguousLength => "the request has more than one Content-Length".into(),
            ProxyError::BadRequestBody => "the request body was malformed or cut short".into(),
            // Made by the body watcher from the configured limits, never from
            // what the client sent.
            ProxyError::BodyTimeout(_) => self.to_string().into(),
            ProxyError::TooLarge { limit } => {
                format!("the request body is larger than the limit of {limit} bytes").into()
            }
            ProxyError::Forbidden { .. } => "this path is not available from your address".into(),
            ProxyError::CertificateRequired { .. } => {
                "this vault requires a device certificate; install yours in the app, browser or \
                 system certificate store and open the connection again"
                    .into()
            }
            ProxyError::CertificateRevoked { .. } => {
                "this device's certificate is no longer accepted; ask the vault's owner for a new one".into()
            }
            ProxyError::MethodNotAllowed(_) => "this method is not supported".into(),
            ProxyError::NotAHub { .. } => "tunnels are offered only for WebSockets on the hub paths".into(),
            ProxyError::TooManyHubs { limit, .. } => {
                format!("your address already has {limit} hubs open").into()
            }
            ProxyError::TooManyRequests { limit, .. } => {
                format!("your address already has {limit} requests waiting on Vaultwarden").into()
            }
            ProxyError::Banned { retry_after, .. } => format!(
                "too many failed logins from your address; it is blocked for {} more minutes",
                retry_after.as_secs().div_ceil(60)
            )
            .into(),
            ProxyError::Busy(_) => "too many connections are open; try again shortly".into(),
            ProxyError::BadUpgrade => "Vaultwarden's answer to the WebSocket upgrade was not valid".into(),
            ProxyError::UpstreamUnreachable { .. } => "Vaultwarden is not answering".into(),
            ProxyError::UpstreamTimeout { .. } => "Vaultwarden did not answer in time".into(),
        }
    }

    /// The short page the client sees ([`Self::public_text`]). Errors that
    /// leave the connection in doubt (a body not read to its end) also close it.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let text = format!(
            "{} {}\n\nvaultgate: {}.\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.public_text()
        );
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let ProxyError::Banned { retry_after, .. } = &self {
            // Whole seconds, rounded up: a client that waits this long is let in.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        if matches!(
            self,
            ProxyError::TooLarge { .. }
                | ProxyError::BodyTimeout(_)
                | ProxyError::BadRequestBody
                | ProxyError::CertificateRevoked { .. }
        ) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_error_has_its_status() {
        let url = || "http://127.0.0.1:8000".to_string();
        let cases = [
            (ProxyError::BadHost(HostError::Missing), 400),
            (ProxyError::BadTarget, 400),
            (
                ProxyError::UnresolvedClient(crate::http::client_ip::Unresolved {
                    peer: "192.0.2.1".parse().unwrap(),
                }),
                400,
            ),
            (ProxyError::Misdirected, 421),
            (ProxyError::HeaderTooLong { limit: 8192 }, 431),
            (ProxyError::BadPath(PathError::ForbiddenEscape), 400),
            (ProxyError::BadRequestBody, 400),
            (ProxyError::AmbiguousLength, 400),
            (ProxyError::BodyTimeout("nothing for 60 s".into()), 408),
            (ProxyError::TooLarge { limit: 1 }, 413),
            (ProxyError::Forbidden { path: "/admin".into(), client: "192.0.2.1".parse().unwrap() }, 403),
            (
                ProxyError::CertificateRequired { path: "/api".into(), peer: "192.0.2.1".parse().unwrap() },
                403,
            ),
            (ProxyError::CertificateRevoked { peer: "192.0.2.1".parse().unwrap() }, 403),
            (ProxyError::MethodNotAllowed(Method::CONNECT), 405),
            (ProxyError::NotAHub { protocol: "websocket".into(), path: "/api".into() }, 404),
            (ProxyError::TooManyHubs { client: "192.0.2.1".parse().unwrap(), limit: 32 }, 429),
            (ProxyError::TooManyRequests { client: "192.0.2.1".parse().unwrap(), limit: 128 }, 429),
            (
                ProxyError::Banned {
                    client: "192.0.2.1".parse().unwrap(),
                    retry_after: Duration::from_secs(60),
                },
                429,
            ),
            (ProxyError::Busy("max_connections"), 503),
            (ProxyError::BadUpgrade, 502),
            (ProxyError::UpstreamUnreachable { url: url(), detail: "Connection refused".into() }, 502),
            (ProxyError::UpstreamTimeout { url: url(), secs: 100 }, 504),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert_eq!(e.into_response().status().as_u16(), status);
        }
    }

    #[test]
    fn a_ban_says_when_to_come_back() {
        let e = ProxyError::Banned {
            client: "192.0.2.1".parse().unwrap(),
            retry_after: Duration::from_millis(3_599_400),
        };
        let resp = e.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3600", "rounded up");
    }

    #[test]
    fn pages_say_what_is_wrong() {
        let e = ProxyError::UpstreamUnreachable {
            url: "http://127.0.0.1:8000".into(),
            detail: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            e.to_string(),
            "Vaultwarden at http://127.0.0.1:8000 is not answering (Connection refused (os error 111))"
        );
    }

    #[tokio::test]
    async fn pages_carry_no_client_or_upstream_text() {
        use http_body_util::BodyExt;
        let url = "http://127.0.0.1:8000".to_string();
        let hostile = "<script>alert(1)</script>";
        let cases = [
            ProxyError::Forbidden { path: format!("/admin/{hostile}"), client: "192.0.2.1".parse().unwrap() },
            ProxyError::NotAHub { protocol: hostile.into(), path: format!("/api/{hostile}") },
            ProxyError::UpstreamUnreachable {
                url: url.clone(),
                detail: "Connection refused (os error 111)".into(),
            },
            ProxyError::UpstreamTimeout { url, secs: 100 },
            ProxyError::BodyTimeout("the client sent no body data for 60 s".into()),
        ];
        for e in cases {
            let shown = e.to_string();
            let page = e.into_response().into_body().collect().await.unwrap().to_bytes();
            let page = String::from_utf8(page.to_vec()).unwrap();
            for leak in
                ["<", "script", "127.0.0.1", "8000", "os error", "refused", "192.0.2.1", "/api", "/admin"]
            {
                assert!(!page.contains(leak), "{leak} in the page for {shown}: {page}");
            }
        }
    }

    #[test]
    fn log_text_quotes_what_the_client_sent() {
        let e = ProxyError::NotAHub { protocol: "x\"\n".into(), path: "/a".into() };
        assert_eq!(
            e.to_string(),
            "\"x\\\"\\n\" tunnels are not offered on \"/a\"; WebSockets are carried only on the hub paths"
        );
    }

    #[tokio::test]
    async fn body_failures_are_classified_through_the_source_chain() {
        use http_body_util::BodyExt;
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper")]
        struct Wrapper(#[source] Box<dyn std::error::Error + Send + Sync>);
        let too_long =
            http_body_util::Limited::new(http_body_util::Full::new(bytes::Bytes::from("0123456789")), 5);
        let limit = Wrapper(too_long.collect().await.unwrap_err());
        assert!(matches!(ProxyError::from_body_failure(&limit, 5), ProxyError::TooLarge { limit: 5 }));
        let idle = Wrapper(Box::new(BodyStalled::Idle(Duration::from_secs(3))));
        assert!(matches!(ProxyError::from_body_failure(&idle, 5), ProxyError::BodyTimeout(_)));
        let other = Wrapper("bad chunk".into());
        assert!(matches!(ProxyError::from_body_failure(&other, 5), ProxyError::BadRequestBody));
    }
}
