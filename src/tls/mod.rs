//! TLS: the rustls server configuration. Knows nothing about HTTP.

pub mod client_auth;
pub mod error;
pub mod local_ca;
pub mod pem;
pub mod private_files;
pub mod resolver;
pub mod self_signed;
pub mod store;
pub mod x509;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ResolvesServerCert;
use rustls::ServerConfig;

pub use error::TlsError;
pub use pem::{client_roots, key_permission_warning, load_pair};
pub use resolver::ACME_TLS_ALPN;
use resolver::{AcmeCertificate, OneCertificate};
use store::Live;

use crate::config::{TlsConfig, TlsSource};

/// A ready TLS server configuration and, for the local CA, the log line
/// that says what is served and how devices come to trust it.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub local_ca_notice: Option<String>,
    /// With `[tls.client_auth]`: the verifier its handshakes use, kept to
    /// verify a chain again where rustls does not (a resumed session).
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// ALPN protocols offered to clients, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub fn provider() -> Arc<CryptoProvider> {
    // ring's suites are all AEAD (rustls has no CBC); TLS 1.2 and 1.3 only.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration for `tls`. `live` is where an ACME or
/// local-CA certificate (and any pending TLS-ALPN-01 answer) is found; it
/// outlives reloads, so a renewal reaches every later handshake. With the
/// local CA, makes the root when there is none and issues the leaf when
/// the stored one cannot serve.
pub fn load(tls: &TlsConfig, live: &Arc<Live>) -> Result<Tls, TlsError> {
    build(tls, live, true)
}

/// What [`load`] checks, writing nothing: for `vaultgate check`, which may
/// run as another user than the server (a root it made would belong to
/// that user). The local CA's files are read, if there are any.
pub fn validate(tls: &TlsConfig) -> Result<(), TlsError> {
    build(tls, &Default::default(), false).map(|_| ())
}

fn build(tls: &TlsConfig, live: &Arc<Live>, write: bool) -> Result<Tls, TlsError> {
    let provider = provider();
    let mut local_ca_notice = None;
    let resolver: Arc<dyn ResolvesServerCert> = match &tls.source {
        TlsSource::Files { cert, key } => {
            let certified = Arc::new(load_pair(&provider, cert, key)?);
            if let Some(warning) = key_permission_warning(key) {
                tracing::warn!("{warning}");
            }
            live.set_fallback(certified.clone(), false);
            Arc::new(OneCertificate { certified, server_names: tls.server_names.clone() })
        }
        TlsSource::LocalCa(ca) if !write => {
            local_ca::describe(&provider, ca)?;
            let (certified, _) = self_signed::for_name(&provider, "localhost")?;
            Arc::new(OneCertificate {
                certified: Arc::new(certified),
                server_names: tls.server_names.clone(),
            })
        }
        TlsSource::LocalCa(ca) => {
            let (root, leaf) = local_ca::load(&provider, ca)?;
            local_ca_notice = Some(format!(
                "serving {} certificate from vaultgate's local CA for {} (expires in {}); root {} (SHA-256 fingerprint {}): \
                 devices trust this server once they install it (vaultgate ca export)",
                if leaf.issued { "a new" } else { "the stored" },
                ca.names.join(", "),
                x509::human(leaf.not_after.duration_since(std::time::SystemTime::now()).unwrap_or_default()),
                ca.state_dir.join(local_ca::ROOT).display(),
                root.fingerprint()
            ));
            live.set(Some(local_ca::installed(&leaf)));
            live.set_fallback(leaf.certified.clone(), true);
            // The resolver that reads `live` on every handshake, so the
            // renewal task's new leaf reaches new connections. (The local
            // CA never offers acme-tls/1, so its ALPN branch never answers.)
            Arc::new(AcmeCertificate {
                live: live.clone(),
                placeholder: leaf.certified,
                server_names: tls.server_names.clone(),
            })
        }
        TlsSource::Acme(acme) => {
            // Until the CA has issued one: a stand-in, so the listener (and
            // the TLS-ALPN-01 check on it) works from the first second.
            let (placeholder, _) = self_signed::for_name(&provider, &acme.domain)?;
            let placeholder = Arc::new(placeholder);
            live.set_fallback(placeholder.clone(), true);
            Arc::new(AcmeCertificate {
                live: live.clone(),
                placeholder,
                server_names: tls.server_names.clone(),
            })
        }
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // Read afresh on every load: a reload (SIGHUP, the files changing)
    // gives new connections the new anchors and CRLs; connections already
    // open keep the configuration they were accepted with.
    let client_verifier = match &tls.client_auth {
        None => None,
        Some(auth) => Some(client_auth::load(auth, provider)?.verifier),
    };
    let builder = match &client_verifier {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
    };
    // The session cache stays this configuration's own (rustls's default):
    // a resumed session skips the certificate check, so one verified under
    // an older CA or CRL must not resume into a newer configuration. Within
    // one configuration, server/conn.rs verifies a resumed chain again (it
    // may have expired since).
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    if matches!(tls.source, TlsSource::Acme(_)) {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Tls { config: Arc::new(config), local_ca_notice, client_verifier })
}
