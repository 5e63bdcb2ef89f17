//! The answers to the CA's checks while an order is pending: a certificate
//! for TLS-ALPN-01 (RFC 8737) by server name, a key authorization for
//! HTTP-01 by token. Written by the ACME task, read by the TLS resolver and
//! the `[redirect]` listener.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Where HTTP-01 asks (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

#[derive(Debug, Default)]
pub struct Challenges {
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    http: Mutex<HashMap<String, String>>,
}

impl Challenges {
    /// The TLS-ALPN-01 certificate for `server_name`, if a check is pending.
    pub fn alpn_answer(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        self.alpn.lock().unwrap_or_else(|e| e.into_inner()).get(&name).cloned()
    }

    /// The body for `GET /.well-known/acme-challenge/<token>`, if pending.
    pub fn http_answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.http.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }

    pub(super) fn set_alpn(&self, domain: &str, answer: Arc<CertifiedKey>) {
        self.alpn.lock().unwrap_or_else(|e| e.into_inner()).insert(domain.to_string(), answer);
    }

    pub(super) fn set_http(&self, token: &str, key_authorization: &str) {
        self.http
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), key_authorization.into());
    }

    /// Forgets every pending answer (the order is over, either way).
    pub(super) fn clear(&self) {
        self.alpn.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.http.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The self-signed certificate TLS-ALPN-01 expects: the domain as its only
/// name and the critical acmeIdentifier extension carrying the SHA-256 of
/// the key authorization.
pub fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = crate::tls::provider().key_provider.load_private_key(der).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_what_is_pending() {
        let c = Challenges::default();
        assert!(c.http_answer("/.well-known/acme-challenge/tok").is_none());
        c.set_http("tok", "tok.thumb");
        assert_eq!(c.http_answer("/.well-known/acme-challenge/tok").as_deref(), Some("tok.thumb"));
        assert!(c.http_answer("/.well-known/acme-challenge/other").is_none());
        assert!(c.http_answer("/tok").is_none());

        let cert = alpn_certificate("vault.example.com", &[7; 32]).unwrap();
        c.set_alpn("vault.example.com", Arc::new(cert));
        assert!(c.alpn_answer("Vault.Example.com.").is_some());
        assert!(c.alpn_answer("other.example.com").is_none());

        c.clear();
        assert!(c.alpn_answer("vault.example.com").is_none());
        assert!(c.http_answer("/.well-known/acme-challenge/tok").is_none());
    }

    #[test]
    fn the_alpn_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = [0xAB; 32];
        let cert = alpn_certificate("vault.example.com", &digest).unwrap();
        let der = cert.cert[0].as_ref();
        // id-pe-acmeIdentifier 1.3.6.1.5.5.7.1.31, critical, OCTET STRING { OCTET STRING (32) }
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        let at = der.windows(oid.len()).position(|w| w == oid).expect("acmeIdentifier present");
        let rest = &der[at + oid.len()..];
        assert_eq!(&rest[..3], &[0x01, 0x01, 0xff], "critical");
        assert_eq!(&rest[3..7], &[0x04, 34, 0x04, 32]);
        assert_eq!(&rest[7..39], &digest);
    }
}
