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
    #[error("{}: [tls.client_auth] {key}: cannot read the file: {source}", file.display())]
    ClientAuthRead { file: PathBuf, key: &'static str, source: std::io::Error },
    #[error("{}: [tls.client_auth] {key}: not valid PEM: {detail}", file.display())]
    ClientAuthPem { file: PathBuf, key: &'static str, detail: String },
    #[error("{}: [tls.client_auth] ca: no certificate found; ca wants your device CA's certificate, PEM blocks starting with -----BEGIN CERTIFICATE----- (devices-ca.pem in the README's recipe)", file.display())]
    NoAnchor { file: PathBuf },
    #[error("{}: [tls.client_auth] ca: the file holds a private key; ca wants your device CA's certificate alone (devices-ca.pem), never its key: whoever reads the key can make devices, so keep it off this server", file.display())]
    AnchorWithKey { file: PathBuf },
    #[error("{}: [tls.client_auth] ca: a certificate in it cannot be a trust anchor for client certificates: {detail}", file.display())]
    BadAnchor { file: PathBuf, detail: String },
    #[error("{}: [tls.client_auth] crl: no certificate revocation list found{held}; expected PEM blocks starting with -----BEGIN X509 CRL----- or one DER CRL (openssl ca -gencrl -out devices.crl)", file.display())]
    NoCrl { file: PathBuf, held: &'static str },
    #[error("{}: [tls.client_auth] crl: the certificate revocation list does not parse: {detail}", file.display())]
    BadCrl { file: PathBuf, detail: String },
    #[error("{}: [tls.client_auth] crl: this CRL is issued by {issuer}, which is no certificate in ca, so it would revoke nothing; give crl the CRL of the CA that issues your devices (openssl ca -gencrl with that CA's -cert and -keyfile), and put that CA's certificate in ca", file.display())]
    CrlNotAnAnchor { file: PathBuf, issuer: String },
    #[error("{}: [tls.client_auth] crl: this CRL names {issuer} as its issuer but is not signed by the key of that certificate in ca (a CA made again under the same name?), so every device would be refused; generate it with that CA's key (openssl ca -gencrl -keyfile …), or put the CA certificate that matches it in ca", file.display())]
    CrlWrongKey { file: PathBuf, issuer: String },
    #[error("{}: [tls.client_auth] crl: {issuer} in ca may not sign CRLs (its key usage lacks cRLSign), so every device would be refused; make the CA with keyUsage = keyCertSign, cRLSign", file.display())]
    CrlNotSigner { file: PathBuf, issuer: String },
    #[error("{}: [tls.client_auth] crl: more than one CRL from {issuer}, and only the first would count; keep only the newest (each openssl ca -gencrl lists every revocation so far)", file.display())]
    CrlTwice { file: PathBuf, issuer: String },
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
