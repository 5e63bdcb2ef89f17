//! The WebSocket opening handshake (RFC 6455 §4): which requests ask for
//! one, and the keys.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use http::header::{self, HeaderMap};

use crate::http::headers::has_token;

/// True for an HTTP/1.1 WebSocket opening handshake: `Upgrade` lists
/// `websocket` and `Connection` lists `upgrade`, token-wise in any case.
/// (`Upgrade: h2c` and everything else is never honoured.)
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, &header::UPGRADE, "websocket") && has_token(headers, &header::CONNECTION, "upgrade")
}

/// True when `path` is exactly one of the configured hub paths.
pub fn is_hub_path(path: &str, hub_paths: &[String]) -> bool {
    hub_paths.iter().any(|p| p == path)
}

/// RFC 6455's GUID, appended to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key() -> String {
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .expect("the system random source works");
    BASE64_STANDARD.encode(nonce)
}

/// The `Sec-WebSocket-Accept` that answers `key`: base64(SHA-1(key + GUID)).
pub fn accept_for(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(ACCEPT_GUID);
    BASE64_STANDARD.encode(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn websocket_upgrade_needs_both_tokens() {
        assert!(wants_websocket(&headers(&[("upgrade", "websocket"), ("connection", "Upgrade")])));
        // Firefox's form.
        assert!(wants_websocket(&headers(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade")
        ])));
        assert!(!wants_websocket(&headers(&[("upgrade", "websocket")])));
        assert!(!wants_websocket(&headers(&[("upgrade", "h2c"), ("connection", "Upgrade, HTTP2-Settings")])));
        assert!(!wants_websocket(&headers(&[("upgrade", "websocketx"), ("connection", "upgrade")])));
        assert!(!wants_websocket(&headers(&[("upgrade", "websocket"), ("connection", "upgraded")])));
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn base64_and_fresh_keys() {
        // RFC 6455 wants RFC 4648 §4 base64: the standard alphabet (`+`
        // and `/`, not the URL-safe `-` and `_`), padded.
        assert_eq!(BASE64_STANDARD.encode(b""), "");
        assert_eq!(BASE64_STANDARD.encode(b"f"), "Zg==");
        assert_eq!(BASE64_STANDARD.encode(b"fo"), "Zm8=");
        assert_eq!(BASE64_STANDARD.encode(b"foo"), "Zm9v");
        assert_eq!(BASE64_STANDARD.encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(BASE64_STANDARD.encode([0xfb, 0xff]), "+/8=");
        let (a, b) = (new_key(), new_key());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    #[test]
    fn hub_paths_match_exactly() {
        let hubs = vec!["/notifications/hub".to_string(), "/notifications/anonymous-hub".to_string()];
        assert!(is_hub_path("/notifications/hub", &hubs));
        assert!(is_hub_path("/notifications/anonymous-hub", &hubs));
        assert!(!is_hub_path("/notifications/hub/../../api", &hubs));
        assert!(!is_hub_path("/notifications/hubx", &hubs));
        assert!(!is_hub_path("/api", &hubs));
    }
}
