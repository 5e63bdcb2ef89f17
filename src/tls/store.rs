//! The live certificate store: what every TLS handshake reads (the
//! certificate in force, pending ACME challenge answers). Written by
//! `tls::load` and the ACME task; read by the resolver and the `[redirect]`
//! listener. Lives as long as the server, across reloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::sign::CertifiedKey;

/// What handshakes read: the certificate in force and pending challenge
/// answers. Lives as long as the server, across reloads.
#[derive(Debug, Default)]
pub struct Live {
    installed: RwLock<Option<Installed>>,
    /// What handshakes get without an installed certificate: the configured
    /// chain, the local CA's first leaf, or ACME's placeholder (`true`: an
    /// installed certificate, ACME's or the local CA's renewal, takes
    /// precedence). Set by `tls::load`.
    fallback: RwLock<Option<(Arc<CertifiedKey>, bool)>>,
    pub challenges: Challenges,
    /// When ACME last failed to obtain a certificate, until it next succeeds.
    acme_failed_at: RwLock<Option<SystemTime>>,
}

#[derive(Debug, Clone)]
pub struct Installed {
    pub certified: Arc<CertifiedKey>,
    pub domain: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Live {
    /// The obtained certificate, once there is one.
    pub fn certificate(&self) -> Option<Arc<CertifiedKey>> {
        self.installed().map(|i| i.certified)
    }

    /// Records what `tls::load` made handshakes serve (see `fallback`).
    pub fn set_fallback(&self, certified: Arc<CertifiedKey>, acme: bool) {
        *self.fallback.write().unwrap_or_else(|e| e.into_inner()) = Some((certified, acme));
    }

    /// The certificate clients are being shown now: the ACME one once there
    /// is one, else the fallback. The redirect listener sends clients only to
    /// names it covers.
    pub fn served(&self) -> Option<Arc<CertifiedKey>> {
        let fallback = self.fallback.read().unwrap_or_else(|e| e.into_inner()).clone();
        match fallback {
            Some((certified, true)) => Some(self.certificate().unwrap_or(certified)),
            Some((certified, false)) => Some(certified),
            None => self.certificate(),
        }
    }

    pub fn installed(&self) -> Option<Installed> {
        self.installed.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, installed: Option<Installed>) {
        *self.installed.write().unwrap_or_else(|e| e.into_inner()) = installed;
    }

    /// Records the outcome of an ACME attempt: failed at `failed_at`, or succeeded (`None`).
    pub fn set_acme_failure(&self, failed_at: Option<SystemTime>) {
        *self.acme_failed_at.write().unwrap_or_else(|e| e.into_inner()) = failed_at;
    }

    /// When ACME last failed, if it has not succeeded since.
    pub fn acme_failed_at(&self) -> Option<SystemTime> {
        *self.acme_failed_at.read().unwrap_or_else(|e| e.into_inner())
    }

    /// When the certificate clients are shown now expires.
    pub fn served_not_after(&self) -> Option<SystemTime> {
        let served = self.served()?;
        crate::tls::x509::not_after(served.cert.first()?.as_ref())
    }
}

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

    pub fn set_alpn(&self, domain: &str, answer: Arc<CertifiedKey>) {
        self.alpn.lock().unwrap_or_else(|e| e.into_inner()).insert(domain.to_string(), answer);
    }

    pub fn set_http(&self, token: &str, key_authorization: &str) {
        self.http
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), key_authorization.into());
    }

    /// Forgets every pending answer (the order is over, either way).
    pub fn clear(&self) {
        self.alpn.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.http.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
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

        let cert =
            super::super::self_signed::alpn_answer(&crate::tls::provider(), "vault.example.com", &[7; 32])
                .unwrap();
        c.set_alpn("vault.example.com", Arc::new(cert));
        assert!(c.alpn_answer("Vault.Example.com.").is_some());
        assert!(c.alpn_answer("other.example.com").is_none());

        c.clear();
        assert!(c.alpn_answer("vault.example.com").is_none());
        assert!(c.http_answer("/.well-known/acme-challenge/tok").is_none());
    }
}
