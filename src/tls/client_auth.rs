//! Client certificates (`[tls.client_auth]`): the verifier handshakes use,
//! built on rustls's WebPKI verifier from the configured anchors and CRLs.
//!
//! Clients without a certificate pass the handshake (`allow_unauthenticated`):
//! whether a request needs one depends on its path and network, which only
//! `proxy/` knows. A certificate that is presented must verify, or the
//! handshake fails, with a log line naming its subject and why.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::error::TlsError;
use super::pem::load_certs;
use super::x509;
use crate::config::ClientAuth;
use crate::observe::redact::escape;

/// What the anchors and CRLs of `[tls.client_auth]` hold, for `vaultgate check`.
#[derive(Debug)]
pub struct Loaded {
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The anchors' subjects, in file order.
    pub anchors: Vec<String>,
    /// Each CRL's issuer (an anchor's subject), in file order (empty without `crl`).
    pub crls: Vec<String>,
    /// What `check` should warn about the anchors (they load, but may not do
    /// what the operator thinks).
    pub warnings: Vec<String>,
}

/// More anchors than a household's device CAs: likely a system bundle.
const MANY_ANCHORS: usize = 20;

/// Anchors that load but weaken what `ca` means: webpki keeps neither an
/// anchor's basicConstraints nor its dates, and never checks an anchor
/// against a CRL.
fn anchor_warnings(file: &Path, certs: &[CertificateDer<'_>]) -> Vec<String> {
    let mut warnings = Vec::new();
    let now = std::time::SystemTime::now();
    for cert in certs {
        let subject = x509::subject(cert).unwrap_or_else(|| "?".into());
        if x509::ca_use(cert).is_some_and(|u| !u.is_ca) {
            warnings.push(format!(
                "{}: [tls.client_auth] ca: {subject} is not a CA certificate (no basicConstraints CA:TRUE), \
                 yet it is trusted as one: whoever holds its key can make more certificates that vaultgate \
                 accepts, and no CRL covers them; put the CA that issued your devices in ca, not a device's own",
                file.display()
            ));
        }
        if let Some((_, end)) = x509::validity(cert).filter(|(_, end)| *end < now) {
            let date = time::OffsetDateTime::from(end).date();
            warnings.push(format!(
                "{}: [tls.client_auth] ca: {subject} expired on {date}, and is still trusted as an anchor \
                 (an anchor's dates are not checked): replace it with the CA's renewed certificate, or remove it",
                file.display()
            ));
        }
    }
    if certs.len() > MANY_ANCHORS {
        warnings.push(format!(
            "{}: [tls.client_auth] ca: {} certificates, each a device CA: is this a system bundle \
             (ca-certificates.crt)? Then a certificate from any public CA gets in; give ca only your own device CA",
            file.display(),
            certs.len()
        ));
    }
    warnings
}

/// The verifier for `auth`: every certificate in `ca` is a trust anchor (an
/// intermediate as much as a root: iOS presents the leaf alone), revocation
/// checked against `crl` when given.
pub fn load(auth: &ClientAuth, provider: Arc<CryptoProvider>) -> Result<Loaded, TlsError> {
    let certs = load_certs(&auth.ca).map_err(|e| in_client_auth(e, "ca"))?;
    if holds(&auth.ca, b"PRIVATE KEY-----") {
        return Err(TlsError::AnchorWithKey { file: auth.ca.clone() });
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut anchors = Vec::new();
    for cert in &certs {
        anchors.push(x509::subject(cert).unwrap_or_else(|| "?".into()));
        roots
            .add(cert.clone())
            .map_err(|e| TlsError::BadAnchor { file: auth.ca.clone(), detail: e.to_string() })?;
    }
    let (crls, issuers) = match &auth.crl {
        None => (Vec::new(), Vec::new()),
        Some(file) => {
            let crls = load_crls(file)?;
            let issuers = check_crls(file, &crls, &certs, &provider)?;
            (crls, issuers)
        }
    };
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        // The handshake lets anonymous clients in; proxy/ refuses their
        // requests where a certificate is needed, with a page that says so.
        .allow_unauthenticated();
    if !crls.is_empty() {
        builder = builder
            .with_crls(crls)
            // A CRL covers the certificates of its issuer; the others (an
            // anchor whose CA publishes none, the intermediate under a root
            // without one) are not refused for lacking one. An expired CRL
            // still counts (the default): refusing every device because a
            // CRL was not re-signed in time would lock the owner out.
            .allow_unknown_revocation_status();
    }
    let inner = builder.build().map_err(|e| match (&auth.crl, e) {
        (Some(file), rustls::server::VerifierBuilderError::InvalidCrl(e)) => {
            TlsError::BadCrl { file: file.clone(), detail: format!("{e:?}") }
        }
        (_, e) => TlsError::BadAnchor { file: auth.ca.clone(), detail: e.to_string() },
    })?;
    let warnings = anchor_warnings(&auth.ca, &certs);
    let verifier = Arc::new(Logged { inner, budget: WarnBudget::default() });
    Ok(Loaded { verifier, anchors, crls: issuers, warnings })
}

/// Each CRL must be an anchor's, signed with that anchor's key, and one per
/// issuer; its issuer's name is returned. Checked here because webpki, at
/// the handshake, takes the first CRL whose issuer *name* is the
/// certificate's issuer and, with unknown status allowed, lets a
/// certificate through when none is: a CRL from the wrong CA (a root's,
/// revoking what its intermediate issued) would silently revoke nothing.
/// A second CRL from the same issuer would be ignored just as silently
/// (`cat old.crl new.crl`), or checked against the wrong key when two
/// anchors share a name; it is refused rather than picked by CRL number,
/// because either mistake is the operator's to see, and the newest CRL
/// lists every earlier revocation anyway.
fn check_crls(
    file: &Path,
    crls: &[CertificateRevocationListDer<'_>],
    anchors: &[CertificateDer<'_>],
    provider: &CryptoProvider,
) -> Result<Vec<String>, TlsError> {
    let bad = |detail: String| TlsError::BadCrl { file: file.to_path_buf(), detail };
    let mut issuers: Vec<Vec<u8>> = Vec::new();
    let mut names = Vec::new();
    for crl in crls {
        let parsed = webpki::BorrowedCertRevocationList::from_der(crl).map_err(|e| bad(format!("{e:?}")))?;
        let issuer = webpki::CertRevocationList::from(parsed).issuer().to_vec();
        let name = x509::name(&issuer).unwrap_or_else(|| "(unreadable name)".into());
        if issuers.contains(&issuer) {
            return Err(TlsError::CrlTwice { file: file.to_path_buf(), issuer: name });
        }
        let parts = x509::crl_parts(crl).ok_or_else(|| bad("its signature cannot be read".into()))?;
        let same_name: Vec<_> = anchors
            .iter()
            .filter(|a| webpki::EndEntityCert::try_from(*a).is_ok_and(|c| c.subject() == issuer.as_slice()))
            .collect();
        if same_name.is_empty() {
            return Err(TlsError::CrlNotAnAnchor { file: file.to_path_buf(), issuer: name });
        }
        let signer = same_name.into_iter().find(|anchor| {
            let Ok(cert) = webpki::EndEntityCert::try_from(*anchor) else { return false };
            provider
                .signature_verification_algorithms
                .all
                .iter()
                .filter(|alg| alg.signature_alg_id().as_ref() == parts.algorithm)
                .any(|alg| cert.verify_signature(*alg, parts.signed, parts.signature).is_ok())
        });
        let Some(signer) = signer else {
            return Err(TlsError::CrlWrongKey { file: file.to_path_buf(), issuer: name });
        };
        if !x509::ca_use(signer).is_some_and(|u| u.crl_sign) {
            return Err(TlsError::CrlNotSigner { file: file.to_path_buf(), issuer: name });
        }
        issuers.push(issuer);
        names.push(name);
    }
    Ok(names)
}

/// A file error of `key` (`ca`, `crl`) told as that key's, with its own advice
/// (the server certificate's, "use fullchain.pem", is no help here).
fn in_client_auth(e: TlsError, key: &'static str) -> TlsError {
    match e {
        TlsError::Read { file, source } => TlsError::ClientAuthRead { file, key, source },
        TlsError::BadPem { file, detail } => TlsError::ClientAuthPem { file, key, detail },
        TlsError::NoCertificate { file } if holds(&file, b"PRIVATE KEY-----") => {
            TlsError::AnchorWithKey { file }
        }
        TlsError::NoCertificate { file } => TlsError::NoAnchor { file },
        e => e,
    }
}

/// Whether `file` holds a PEM block whose label ends with `label`.
fn holds(file: &Path, label: &[u8]) -> bool {
    let text = std::fs::read(file).unwrap_or_default();
    text.windows(label.len()).any(|w| w == label)
}

/// The CRLs in `file`: PEM blocks `BEGIN X509 CRL`, or one DER CRL (what
/// `openssl ca -gencrl -outform DER` writes).
fn load_crls(file: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = std::fs::read(file).map_err(|source| TlsError::ClientAuthRead {
        file: file.to_path_buf(),
        key: "crl",
        source,
    })?;
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCrl { file: file.to_path_buf(), detail: e.to_string() })?;
    if crls.is_empty() {
        let held = if holds(file, b"PRIVATE KEY-----") {
            " (the file holds a private key: never give vaultgate a CA's key)"
        } else if holds(file, b"BEGIN CERTIFICATE-----") {
            " (the file holds a certificate: the CA's goes in ca)"
        } else {
            ""
        };
        return Err(TlsError::NoCrl { file: file.to_path_buf(), held });
    }
    Ok(crls)
}

/// Verifies `chain` (the leaf first, as the client presented it) again
/// with `verifier` at the present time: what rustls skips when a session
/// resumes, and what a connection opened under an older CA or CRL needs
/// after a reload. The verifier logs a refusal as at a handshake.
pub fn verify_again(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    let Some((leaf, intermediates)) = chain.split_first() else { return Ok(()) };
    verifier.verify_client_cert(leaf, intermediates, UnixTime::now()).map(|_| ())
}

/// Why a client certificate was refused, in a word (the metrics' label).
pub fn refusal_reason(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Revoked => "revoked",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "not_yet_valid",
            CertificateError::UnknownIssuer => "unknown_issuer",
            _ => "invalid",
        },
        // A CRL that cannot be used for the certificate's issuer (load
        // refuses the ones it can tell): every device of that CA is refused.
        rustls::Error::InvalidCertRevocationList(_) => "crl",
        _ => "invalid",
    }
}

/// Why, in words for the operator.
fn refusal_text(e: &rustls::Error) -> String {
    match refusal_reason(e) {
        "revoked" => "it is revoked (listed in the [tls.client_auth] crl)".into(),
        "expired" => "it has expired".into(),
        "not_yet_valid" => "it is not valid yet".into(),
        "unknown_issuer" => "it is not issued by a [tls.client_auth] ca".into(),
        "crl" => format!("the [tls.client_auth] crl of its issuer cannot be used ({e})"),
        _ => e.to_string(),
    }
}

/// The WebPKI verifier, with a log line for the certificates it refuses
/// (the first few each minute).
#[derive(Debug)]
struct Logged {
    inner: Arc<dyn ClientCertVerifier>,
    budget: WarnBudget,
}

/// Refusals logged per minute: anyone can present any certificate as often
/// as handshakes go, and must not fill the log (the metrics count them all).
const WARNINGS_PER_MINUTE: u32 = 10;

/// How many refusals the current minute has seen.
#[derive(Debug, Default)]
struct WarnBudget {
    window: std::sync::Mutex<(u64, u32)>,
}

impl WarnBudget {
    /// Whether to log a refusal in `minute`, and how many refusals the
    /// window before went unlogged (said once, with the first line after).
    fn take(&self, minute: u64) -> (bool, u32) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let mut missed = 0;
        if window.0 != minute {
            missed = window.1.saturating_sub(WARNINGS_PER_MINUTE);
            *window = (minute, 0);
        }
        window.1 = window.1.saturating_add(1);
        (window.1 <= WARNINGS_PER_MINUTE, missed)
    }
}

/// Bytes of an unverified subject a log line shows (the client chose it).
const LOGGED_SUBJECT: usize = 256;

impl ClientCertVerifier for Logged {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner.verify_client_cert(end_entity, intermediates, now).inspect_err(|e| {
            let minute = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 60);
            let (log, missed) = self.budget.take(minute);
            if missed > 0 {
                tracing::warn!(
                    "{missed} more refused client certificates were not logged \
                     (vaultgate_client_cert_rejected_total counts them all)"
                );
            }
            if !log {
                return;
            }
            // The subject is what the client wrote, so it is cut short and
            // escaped (x509::subject is printable ASCII already). Only a
            // revoked certificate has had its signatures checked (webpki
            // checks the dates and finds the issuer first): the others only
            // claim to be whoever they name.
            let mut subject = x509::subject(end_entity).unwrap_or_else(|| "(unreadable)".into());
            if subject.len() > LOGGED_SUBJECT {
                subject.truncate(LOGGED_SUBJECT);
                subject.push('…');
            }
            let serial = x509::serial(end_entity).unwrap_or_else(|| "?".into());
            let what = if refusal_reason(e) == "revoked" {
                "client certificate"
            } else {
                "unverified certificate claiming"
            };
            tracing::warn!(
                subject = %escape(&subject),
                serial = %serial.get(..64).unwrap_or(&serial),
                "{what} {} refused: {}",
                escape(&subject),
                refusal_text(e)
            );
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_refusals_a_minute_are_logged_and_the_rest_counted_once() {
        let budget = WarnBudget::default();
        for _ in 0..WARNINGS_PER_MINUTE {
            assert_eq!(budget.take(7), (true, 0));
        }
        for _ in 0..5 {
            assert_eq!(budget.take(7), (false, 0));
        }
        assert_eq!(budget.take(8), (true, 5), "the next minute says how many were not");
        assert_eq!(budget.take(8), (true, 0));
    }

    #[test]
    fn reasons_in_a_word() {
        let e = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(refusal_reason(&e(CertificateError::Revoked)), "revoked");
        assert_eq!(refusal_reason(&e(CertificateError::Expired)), "expired");
        assert_eq!(refusal_reason(&e(CertificateError::UnknownIssuer)), "unknown_issuer");
        assert_eq!(refusal_reason(&e(CertificateError::BadSignature)), "invalid");
        assert_eq!(refusal_reason(&rustls::Error::DecryptError), "invalid");
        let crl = rustls::Error::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature);
        assert_eq!(refusal_reason(&crl), "crl");
        assert!(crate::observe::metrics::CERT_REASONS.contains(&"crl"), "counted under its own label");
    }
}
