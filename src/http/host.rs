//! The host a request is for (RFC 9112 §3.2, RFC 9113 §8.3.1): checked
//! once, compared with `[tls] server_names`.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, Uri};

/// Why a request's host is refused (RFC 9112 §3.2, RFC 9113 §8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the request has no Host header")]
    Missing,
    #[error("the request has more than one Host header")]
    Duplicate,
    #[error("the Host header or request authority is malformed")]
    Malformed,
    #[error("the Host header does not match the request target's authority")]
    Mismatch,
}

/// The host the client addressed, validated: the target's authority (HTTP/2's
/// `:authority`, or an HTTP/1.1 absolute-form target) when there is one, else
/// the single `Host` header. Userinfo (`user@host`) is refused.
pub fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<HeaderValue, HostError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Duplicate);
    }
    if let Some(v) = host {
        valid_authority(v.as_bytes())?;
    }
    match (uri.authority(), host) {
        (Some(authority), host) => {
            // Parsed as an authority already, with the URI.
            plain_authority(authority)?;
            if host.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes())) {
                return Err(HostError::Mismatch);
            }
            HeaderValue::from_str(authority.as_str()).map_err(|_| HostError::Malformed)
        }
        // The client's own value, shared rather than copied.
        (None, Some(host)) => Ok(host.clone()),
        (None, None) => Err(HostError::Missing),
    }
}

/// True when the host part of `host` (a value from [`request_host`]; any
/// port ignored, one trailing dot allowed) is one of `names` (lower-case, as
/// the config keeps them), compared case-insensitively.
pub fn host_among(host: &HeaderValue, names: &[String]) -> bool {
    let Ok(authority) = Authority::try_from(host.as_bytes()) else {
        return false;
    };
    let name = authority.host();
    let name = name.strip_suffix('.').unwrap_or(name);
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// A host and optional port, nothing else (no user info, not empty).
fn valid_authority(bytes: &[u8]) -> Result<(), HostError> {
    plain_authority(&Authority::try_from(bytes).map_err(|_| HostError::Malformed)?)
}

fn plain_authority(authority: &Authority) -> Result<(), HostError> {
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(HostError::Malformed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn host_among_ignores_port_case_and_one_trailing_dot() {
        let names = vec!["vault.example.com".to_string()];
        for ok in
            ["vault.example.com", "Vault.Example.COM:8443", "vault.example.com.", "vault.example.com.:443"]
        {
            assert!(host_among(&HeaderValue::from_static(ok), &names), "{ok}");
        }
        for bad in
            ["example.com", "evil.vault.example.com", "vault.example.com..", "127.0.0.1", "[::1]:443", ""]
        {
            assert!(!host_among(&HeaderValue::from_static(bad), &names), "{bad}");
        }
        assert!(!host_among(&HeaderValue::from_static("vault.example.com"), &[]));
    }

    #[test]
    fn request_host_rules() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let h = |v: &str| map(&[("host", v)]);
        assert_eq!(request_host(&uri("/x"), &h("vault.example:8443")).unwrap(), "vault.example:8443");
        assert_eq!(request_host(&uri("/x"), &HeaderMap::new()), Err(HostError::Missing));
        assert_eq!(
            request_host(&uri("/x"), &map(&[("host", "a"), ("host", "b")])),
            Err(HostError::Duplicate)
        );
        assert_eq!(request_host(&uri("/x"), &h("user@vault.example")), Err(HostError::Malformed));
        assert_eq!(request_host(&uri("/x"), &h("vault example")), Err(HostError::Malformed));
        assert_eq!(request_host(&uri("/x"), &h("")), Err(HostError::Malformed));
        assert_eq!(request_host(&uri("/x"), &h("[::1]:8443")).unwrap(), "[::1]:8443");
        // Absolute-form or :authority wins, and must agree with Host.
        assert_eq!(
            request_host(&uri("https://vault.example/x"), &HeaderMap::new()).unwrap(),
            "vault.example"
        );
        assert_eq!(
            request_host(&uri("https://Vault.example/x"), &h("vault.EXAMPLE")).unwrap(),
            "Vault.example"
        );
        assert_eq!(
            request_host(&uri("https://vault.example/x"), &h("evil.example")),
            Err(HostError::Mismatch)
        );
        assert_eq!(
            request_host(&uri("https://u@vault.example/x"), &HeaderMap::new()),
            Err(HostError::Malformed)
        );
    }
}
