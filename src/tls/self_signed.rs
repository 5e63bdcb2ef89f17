//! Certificates we sign ourselves: the fallback when none is configured,
//! ACME's placeholder until the CA has issued one, and the answer to a
//! TLS-ALPN-01 check (RFC 8737). One builder for all three.

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::error::TlsError;

/// A fresh key and a self-signed certificate for `names`, carrying the
/// critical acmeIdentifier extension when `acme_identifier` is given.
pub(crate) fn build(
    provider: &CryptoProvider,
    names: Vec<String>,
    acme_identifier: Option<&[u8]>,
) -> Result<CertifiedKey, TlsError> {
    let failed = |e: &dyn std::fmt::Display| TlsError::SelfSigned(e.to_string());
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| failed(&e))?;
    if let Some(digest) = acme_identifier {
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    }
    let key = rcgen::KeyPair::generate().map_err(|e| failed(&e))?;
    let cert = params.self_signed(&key).map_err(|e| failed(&e))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = provider.key_provider.load_private_key(der).map_err(|e| failed(&e))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// A self-signed certificate for `name` (localhost also gets its
/// addresses), made fresh each time, and its SHA-256 fingerprint.
pub fn for_name(provider: &CryptoProvider, name: &str) -> Result<(CertifiedKey, String), TlsError> {
    let mut names = vec![name.to_string()];
    if name == "localhost" {
        names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
    }
    let certified = build(provider, names, None)?;
    let fingerprint = sha256_fingerprint(certified.cert[0].as_ref());
    Ok((certified, fingerprint))
}

/// The certificate TLS-ALPN-01 expects: the domain as its only name and the
/// critical acmeIdentifier extension carrying `digest`, the SHA-256 of the
/// key authorization.
pub fn alpn_answer(provider: &CryptoProvider, domain: &str, digest: &[u8]) -> Result<CertifiedKey, TlsError> {
    build(provider, vec![domain.to_string()], Some(digest))
}

/// `AB:CD:…` SHA-256 of a DER certificate, as browsers display it.
pub fn sha256_fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alpn_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = [0xAB; 32];
        let cert = alpn_answer(&crate::tls::provider(), "vault.example.com", &digest).unwrap();
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
