//! TLS: PEM loading, the rustls server configuration, and the self-signed
//! fallback. Knows nothing about HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::acme::Live;
use crate::config::{TlsConfig, TlsSource};

/// Why the certificate or key could not be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read the file: {source}", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{}: no certificate found; expected PEM blocks starting with -----BEGIN CERTIFICATE----- (use fullchain.pem, not cert.pem alone)", file.display())]
    NoCertificate { file: PathBuf },
    #[error("{}: no private key found; expected a PEM block BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY (use privkey.pem)", file.display())]
    NoKey { file: PathBuf },
    #[error("{}: not valid PEM: {detail}", file.display())]
    BadPem { file: PathBuf, detail: String },
    #[error("{}: the private key cannot be used: {detail}", file.display())]
    BadKey { file: PathBuf, detail: String },
    #[error("{} does not belong to the certificate in {}: check that cert and key come from the same issuance", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// A ready TLS server configuration and, for a generated certificate, its
/// SHA-256 fingerprint (so the user can compare what the browser shows).
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub self_signed_fingerprint: Option<String>,
}

/// ALPN protocols offered to clients, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The ALPN protocol of ACME's TLS-ALPN-01 check (RFC 8737). Offered only
/// with `[tls] acme`; a connection that negotiates it is closed after the
/// handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

pub fn provider() -> Arc<CryptoProvider> {
    // ring's suites are all AEAD (rustls has no CBC); TLS 1.2 and 1.3 only.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration for `tls`. `live` is where an ACME
/// certificate (and any pending TLS-ALPN-01 answer) is found; it outlives
/// reloads, so a renewal reaches every later handshake.
pub fn load(tls: &TlsConfig, live: &Arc<Live>) -> Result<Tls, TlsError> {
    let provider = provider();
    let mut fingerprint = None;
    let resolver: Arc<dyn ResolvesServerCert> = match &tls.source {
        TlsSource::Files { cert, key } => {
            let certified = Arc::new(load_pair(&provider, cert, key)?);
            if let Some(warning) = key_permission_warning(key) {
                tracing::warn!("{warning}");
            }
            live.set_fallback(certified.clone(), false);
            Arc::new(OneCertificate { certified, server_names: tls.server_names.clone() })
        }
        TlsSource::SelfSigned => {
            let (certified, fp) = self_signed(&provider, "localhost")?;
            fingerprint = Some(fp);
            let certified = Arc::new(certified);
            live.set_fallback(certified.clone(), false);
            Arc::new(OneCertificate { certified, server_names: tls.server_names.clone() })
        }
        TlsSource::Acme(acme) => {
            // Until the CA has issued one: a stand-in, so the listener (and
            // the TLS-ALPN-01 check on it) works from the first second.
            let (placeholder, _) = self_signed(&provider, &acme.domain)?;
            let placeholder = Arc::new(placeholder);
            live.set_fallback(placeholder.clone(), true);
            Arc::new(AcmeCertificate {
                live: live.clone(),
                placeholder,
                server_names: tls.server_names.clone(),
            })
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    if matches!(tls.source, TlsSource::Acme(_)) {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Tls { config: Arc::new(config), self_signed_fingerprint: fingerprint })
}

/// The warning for a private key file that group or others may read (its
/// mode, and the `chmod 600` that fixes it); `None` when only its owner can,
/// or when its mode cannot be read (loading it reports that).
pub fn key_permission_warning(key: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then(|| {
        format!(
            "the private key {} is readable by {} (mode {mode:03o}); run chmod 600 {0}",
            key.display(),
            match (mode & 0o040 != 0, mode & 0o004 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            }
        )
    })
}

/// A chain and its key from PEM files, checked to belong together.
pub fn load_pair(provider: &CryptoProvider, cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::BadKey { file: key.to_path_buf(), detail: e.to_string() })?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|_| TlsError::Mismatch { cert: cert.to_path_buf(), key: key.to_path_buf() })?;
    Ok(certified)
}

/// The roots a client of ours (the doctor, the ACME client) trusts: the
/// system's store, or another bundle in SSL_CERT_FILE (as OpenSSL-based
/// tools read it), plus `extra` when given (e.g. a test CA's root).
pub fn client_roots(extra: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let bundle =
        std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
    if let Ok(certs) = CertificateDer::pem_file_iter(&bundle) {
        for cert in certs.flatten() {
            let _ = roots.add(cert);
        }
    }
    if let Some(file) = extra {
        for cert in load_certs(file)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::BadPem { file: file.to_path_buf(), detail: e.to_string() })?;
        }
    }
    Ok(roots)
}

/// Serves the one configured chain, to every client or (strict SNI) only to
/// clients that ask for one of `server_names`. A resolver of our own, rather
/// than `with_single_cert`, so that reloading can swap the chain later.
#[derive(Debug)]
struct OneCertificate {
    certified: Arc<CertifiedKey>,
    server_names: Vec<String>,
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
struct AcmeCertificate {
    live: Arc<Live>,
    placeholder: Arc<CertifiedKey>,
    server_names: Vec<String>,
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

pub fn load_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| pem_error(file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(file, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { file: file.to_path_buf() });
    }
    Ok(certs)
}

fn load_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(file).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey { file: file.to_path_buf() },
        e => pem_error(file, e),
    })
}

fn pem_error(file: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    let file = file.to_path_buf();
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Read { file, source },
        e => TlsError::BadPem { file, detail: e.to_string() },
    }
}

/// A self-signed certificate for `name` (localhost also gets its
/// addresses), made fresh each time, and its SHA-256 fingerprint.
fn self_signed(provider: &CryptoProvider, name: &str) -> Result<(CertifiedKey, String), TlsError> {
    let mut names = vec![name.to_string()];
    if name == "localhost" {
        names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let signing =
        provider.key_provider.load_private_key(key).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let fingerprint = sha256_fingerprint(made.cert.der());
    Ok((CertifiedKey::new(vec![made.cert.der().clone()], signing), fingerprint))
}

/// `AB:CD:…` SHA-256 of a DER certificate, as browsers display it.
pub fn sha256_fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_key_others_can_read_is_named_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("privkey.pem");
        std::fs::write(&key, "k").unwrap();
        for (mode, who) in [(0o644, "group and others"), (0o640, "its group"), (0o604, "others")] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let w = key_permission_warning(&key).unwrap();
            assert!(w.contains(&format!("{} is readable by {who}", key.display())), "{w}");
            assert!(w.contains(&format!("chmod 600 {}", key.display())), "{w}");
        }
        for mode in [0o600, 0o400, 0o700] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(key_permission_warning(&key), None, "{mode:o}");
        }
        assert_eq!(key_permission_warning(&dir.path().join("missing.pem")), None);
    }

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
