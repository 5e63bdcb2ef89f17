//! Certificates and keys from PEM files, and the roots our own clients trust.

use std::path::Path;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::TlsError;

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

/// The roots a client of ours (`vaultgate check --probe`, the ACME client) trusts: the
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
