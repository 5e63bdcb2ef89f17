//! Which certificate a handshake gets: the one configured chain, or the
//! ACME certificate (and the CA's TLS-ALPN-01 answer while one is pending).

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::store::Live;

/// The ALPN protocol of ACME's TLS-ALPN-01 check (RFC 8737). Offered only
/// with `[tls] acme`; a connection that negotiates it is closed after the
/// handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Serves the one configured chain, to every client or (strict SNI) only to
/// clients that ask for one of `server_names`. A resolver of our own, rather
/// than `with_single_cert`, so that reloading can swap the chain later.
#[derive(Debug)]
pub struct OneCertificate {
    pub certified: Arc<CertifiedKey>,
    pub server_names: Vec<String>,
}

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.server_names.is_empty()
            || hello.server_name().is_some_and(|name| sni_allowed(&self.server_names, name))
        {
            return Some(self.certified.clone());
        }
        // No certificate: the handshake fails, and scanners that connect by
        // bare IP or a made-up name learn nothing about the server.
        tracing::debug!(sni = hello.server_name(), "refusing TLS for an unknown server name");
        None
    }
}

/// Serves the ACME certificate once there is one (a self-signed stand-in
/// until then), and answers the CA's TLS-ALPN-01 check while it is pending.
#[derive(Debug)]
pub struct AcmeCertificate {
    pub live: Arc<Live>,
    pub placeholder: Arc<CertifiedKey>,
    pub server_names: Vec<String>,
}

impl ResolvesServerCert for AcmeCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name();
        if hello.alpn().is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN)) {
            // Only the CA asks for this; without a pending check there is
            // nothing to show, and the handshake fails.
            return sni.and_then(|name| self.live.challenges.alpn_answer(name));
        }
        if !self.server_names.is_empty() && !sni.is_some_and(|name| sni_allowed(&self.server_names, name)) {
            tracing::debug!(sni, "refusing TLS for an unknown server name");
            return None;
        }
        Some(self.live.certificate().unwrap_or_else(|| self.placeholder.clone()))
    }
}

fn sni_allowed(names: &[String], requested: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(requested.trim_end_matches('.')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_matching_is_case_insensitive_and_exact() {
        let names = vec!["vault.example.com".to_string()];
        assert!(sni_allowed(&names, "vault.example.com"));
        assert!(sni_allowed(&names, "VAULT.Example.COM"));
        assert!(sni_allowed(&names, "vault.example.com."));
        assert!(!sni_allowed(&names, "example.com"));
        assert!(!sni_allowed(&names, "evil.vault.example.com"));
    }
}
