//! What can go wrong loading certificates and keys.

use std::path::PathBuf;

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
    #[error("{}: a certificate in it cannot be a trust anchor for client certificates: {detail}", file.display())]
    BadAnchor { file: PathBuf, detail: String },
    #[error("{}: no certificate revocation list found; expected PEM blocks starting with -----BEGIN X509 CRL----- or one DER CRL (openssl ca -gencrl)", file.display())]
    NoCrl { file: PathBuf },
    #[error("{}: the certificate revocation list does not parse: {detail}", file.display())]
    BadCrl { file: PathBuf, detail: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    /// The local CA's files: which one, what is wrong, and what to do
    /// (never a new root in silence: every device that trusts the old
    /// one would refuse the server).
    #[error("{}: {problem}\n  fix: {fix}", file.display())]
    LocalCa { file: PathBuf, problem: String, fix: String },
    #[error("cannot generate a certificate: {0}")]
    SelfSigned(String),
}
