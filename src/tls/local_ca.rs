//! vaultgate's local CA: with `[tls] local_ca` (the default without
//! `cert`/`key`/`acme`), a root CA kept in the state directory issues the
//! server's certificate. Devices install the root once (`vaultgate ca
//! export`) and then trust every leaf it issues, across restarts and
//! renewals, as Caddy's local CA does.
//!
//! ```text
//! state_dir/            0700
//!   root.pem            0600  the root certificate (ten years)
//!   root-key.pem        0600  its key
//!   leaf.pem            0600  the server's certificate (365 days by default)
//!   leaf-key.pem        0600  its key
//! ```
//!
//! The root is precious: a new one breaks every device that trusts the old
//! one, so a root file that cannot be read is an error that names it, never
//! a reason to make another. The leaf is not: one that is missing, broken,
//! for other names, or due is issued anew.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::task::JoinHandle;

use super::error::TlsError;
use super::private_files::{private_dir, write_private};
use super::store::{Installed, Live};
use super::x509;
use crate::config::LocalCaConfig;

pub const ROOT: &str = "root.pem";
pub const ROOT_KEY: &str = "root-key.pem";
pub const LEAF: &str = "leaf.pem";
pub const LEAF_KEY: &str = "leaf-key.pem";

/// The root's lifetime (Caddy's too): devices install it once a decade.
const ROOT_LIFETIME: Duration = Duration::from_secs(3650 * 86400);
/// Certificates start an hour in the past, so a device whose clock is a
/// little behind accepts a leaf issued a moment ago.
const BACKDATE: Duration = Duration::from_secs(3600);

/// What `Installed::domain` says for the local CA's leaf: never a DNS name,
/// so an ACME manager started by a later reload does not take it for its own.
const INSTALLED_AS: &str = "(local CA)";

/// The root certificate and its key, as stored.
pub struct Root {
    pub der: CertificateDer<'static>,
    pub pem: String,
    key: rcgen::KeyPair,
}

/// A leaf in force, and whether it was issued just now.
pub struct Leaf {
    pub certified: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub issued: bool,
}

fn problem(file: &Path, problem: String, fix: &str) -> TlsError {
    TlsError::LocalCa { file: file.to_path_buf(), problem, fix: fix.to_string() }
}

/// A file's text, `None` when it does not exist; any other failure (a
/// permission, an I/O error) is an error that names the file.
fn read(file: &Path) -> Result<Option<String>, TlsError> {
    match std::fs::read(file) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            problem(file, "not a PEM file (not text)".into(), "restore it from a backup (see the README's local CA section)")
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(problem(
            file,
            format!("cannot read the file: {e}"),
            "the state directory's path runs through a file: set [tls] local_ca = { state_dir = \"/var/lib/vaultgate/local-ca\" } or another directory",
        )),
        Err(e) => Err(problem(
            file,
            format!("cannot read the file: {e}"),
            "run vaultgate as the user that owns the state directory, or give that user the directory back (chown -R)",
        )),
    }
}

impl Root {
    /// The stored root, `None` when there is none yet. Reads only.
    pub fn open(dir: &Path) -> Result<Option<Root>, TlsError> {
        let (cert_file, key_file) = (dir.join(ROOT), dir.join(ROOT_KEY));
        let Some(cert_pem) = read(&cert_file)? else { return Ok(None) };
        let restore =
            "restore it from a backup; to start over with a new root instead (every device must then \
                       install the new one), move root.pem and root-key.pem out of the directory";
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| problem(&cert_file, format!("not a PEM certificate ({e})"), restore))?;
        if x509::validity(&der).is_none() {
            return Err(problem(
                &cert_file,
                "not a PEM certificate (its content does not parse)".into(),
                restore,
            ));
        }
        let Some(key_pem) = read(&key_file)? else {
            return Err(problem(
                &key_file,
                "missing: the root in root.pem cannot issue certificates without its key".into(),
                restore,
            ));
        };
        let key = rcgen::KeyPair::from_pem(&key_pem)
            .map_err(|e| problem(&key_file, format!("not a private key vaultgate can use ({e})"), restore))?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        if x509::public_key_info(&der) != Some(&spki[..]) {
            return Err(problem(
                &key_file,
                format!("not the key of the root certificate in {}", cert_file.display()),
                restore,
            ));
        }
        if x509::is_self_issued(&der) != Some(true) {
            return Err(problem(
                &cert_file,
                "not a root certificate (it is not self-issued)".into(),
                restore,
            ));
        }
        if x509::not_after(&der).is_some_and(|end| end <= SystemTime::now()) {
            return Err(problem(
                &cert_file,
                "the root has expired".into(),
                "move root.pem and root-key.pem out of the directory: a new root is made at the next start, \
                 and every device must install it (vaultgate ca export)",
            ));
        }
        Ok(Some(Root { der, pem: cert_pem, key }))
    }

    /// The stored root, or a new one (stored) when there is none.
    pub fn open_or_create(dir: &Path) -> Result<Root, TlsError> {
        if let Some(root) = Root::open(dir)? {
            return Ok(root);
        }
        let orphan = dir.join(ROOT_KEY);
        if orphan.exists() {
            // The key is written first: a key without a certificate is most
            // likely a creation cut short. But it may be a root whose
            // root.pem was lost (a partial restore): the key is moved aside,
            // never overwritten, so that root can still be put back.
            let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let aside = dir.join(format!("{ROOT_KEY}.orphan-{secs}"));
            std::fs::rename(&orphan, &aside).map_err(|e| {
                problem(
                    &orphan,
                    format!("has no root.pem beside it and cannot be moved aside: {e}"),
                    "put the root.pem that belongs to it back, or move the key away yourself to make a new root",
                )
            })?;
            tracing::warn!(
                "local CA: {} has no root.pem beside it (an interrupted start, or a lost root.pem?); it is kept as {} and a new root is made. If devices trust the old root, stop vaultgate, put its root.pem back and rename the key back to {}",
                orphan.display(),
                aside.display(),
                ROOT_KEY
            );
        }
        let root = Root::create(SystemTime::now())?;
        let cannot = |file: &Path, e: std::io::Error| {
            problem(
                file,
                format!("cannot write the local CA: {e}"),
                "make the directory writable by the user vaultgate runs as, or set [tls] local_ca = { state_dir = \"/var/lib/vaultgate/local-ca\" }",
            )
        };
        private_dir(dir).map_err(|e| cannot(dir, e))?;
        write_private(&dir.join(ROOT_KEY), root.key.serialize_pem().as_bytes())
            .map_err(|e| cannot(&dir.join(ROOT_KEY), e))?;
        write_private(&dir.join(ROOT), root.pem.as_bytes()).map_err(|e| cannot(&dir.join(ROOT), e))?;
        tracing::info!(
            "local CA: made a new root in {} (SHA-256 fingerprint {}); devices trust this server once they install it: vaultgate ca export",
            dir.display(),
            root.fingerprint()
        );
        Ok(root)
    }

    fn create(now: SystemTime) -> Result<Root, TlsError> {
        let failed = |e: rcgen::Error| TlsError::SelfSigned(format!("the local CA's root: {e}"));
        let mut params = rcgen::CertificateParams::default();
        let day = time::OffsetDateTime::from(now).date();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "vaultgate");
        // The date tells one root from another in a phone's list of profiles.
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("vaultgate local CA {day}"));
        // A root that signs leaves only, never another CA.
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + ROOT_LIFETIME).into();
        params.serial_number = Some(random_serial()?);
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok(Root { der: cert.der().clone(), pem: cert.pem(), key })
    }

    /// `AB:CD:…`, as phones and browsers show it.
    pub fn fingerprint(&self) -> String {
        super::self_signed::sha256_fingerprint(&self.der)
    }

    /// A new leaf for `names`, valid for `lifetime` from `now` (and an hour
    /// before): what iOS demands of a trusted server certificate (the
    /// serverAuth EKU, every name in the SAN, at most 825 days).
    fn issue(
        &self,
        provider: &CryptoProvider,
        names: &[String],
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<(Leaf, String, String), TlsError> {
        let failed =
            |e: &dyn std::fmt::Display| TlsError::SelfSigned(format!("a certificate from the local CA: {e}"));
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| failed(&e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(first) = names.first() {
            params.distinguished_name.push(rcgen::DnType::CommonName, first.as_str());
        }
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + lifetime).into();
        params.serial_number = Some(random_serial()?);
        let issuer = rcgen::Issuer::from_ca_cert_der(&self.der, &self.key).map_err(|e| failed(&e))?;
        let key = rcgen::KeyPair::generate().map_err(|e| failed(&e))?;
        let cert = params.signed_by(&key, &issuer).map_err(|e| failed(&e))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = provider.key_provider.load_private_key(der).map_err(|e| failed(&e))?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        let (not_before, not_after) =
            x509::validity(cert.der()).ok_or_else(|| failed(&"cannot read the new certificate's dates"))?;
        let leaf = Leaf { certified: Arc::new(certified), not_before, not_after, issued: true };
        // Checked as a client will check it, before anyone is shown it.
        self.verifies(provider, &leaf.certified.cert, names, now).map_err(|e| failed(&e))?;
        Ok((leaf, cert.pem(), key.serialize_pem()))
    }

    /// Whether `chain` (leaf first) verifies, as a client trusting this
    /// root alone checks it at `now`, for every one of `names`.
    pub fn verifies(
        &self,
        provider: &CryptoProvider,
        chain: &[CertificateDer<'_>],
        names: &[String],
        now: SystemTime,
    ) -> Result<(), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).map_err(|e| e.to_string())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(provider.clone()),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let end_entity = chain.first().ok_or("no certificate")?;
        let at = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        for name in names {
            let server_name = ServerName::try_from(name.as_str()).map_err(|e| format!("{name}: {e}"))?;
            verifier
                .verify_server_cert(end_entity, &chain[1..], &server_name, &[], at)
                .map_err(|e| format!("not valid for {name}: {e}"))?;
        }
        Ok(())
    }
}

/// 16 random bytes, positive (RFC 5280: at most 20 octets, unpredictable).
fn random_serial() -> Result<rcgen::SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| TlsError::SelfSigned("no randomness for a serial number".into()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// How long until a leaf that ends at `not_after` is renewed: when a third
/// of `lifetime` remains (121 days of 365, as ACME renews at 30 of 90).
pub fn renew_in(not_after: SystemTime, lifetime: Duration, now: SystemTime) -> Duration {
    let due = not_after.checked_sub(lifetime / 3).unwrap_or(UNIX_EPOCH);
    due.duration_since(now).unwrap_or_default()
}

/// The stored leaf, if it can go on serving at `now`: its key matches, it
/// verifies against `root` for every configured name, it is not due, and
/// it is no longer-lived than `lifetime` says. Why not, otherwise.
fn stored_leaf(
    provider: &CryptoProvider,
    root: &Root,
    config: &LocalCaConfig,
    now: SystemTime,
) -> Result<Leaf, String> {
    let (cert_file, key_file) = (config.state_dir.join(LEAF), config.state_dir.join(LEAF_KEY));
    if !cert_file.exists() {
        return Err("there is none yet".into());
    }
    let certified = super::pem::load_pair(provider, &cert_file, &key_file).map_err(|e| e.to_string())?;
    let (not_before, not_after) = certified
        .cert
        .first()
        .and_then(|c| x509::validity(c))
        .ok_or_else(|| format!("{}: cannot read its dates", cert_file.display()))?;
    root.verifies(provider, &certified.cert, &config.names, now)?;
    if renew_in(not_after, config.lifetime, now).is_zero() {
        return Err("it is due for renewal".into());
    }
    if not_after.duration_since(not_before).unwrap_or_default()
        > config.lifetime + BACKDATE + Duration::from_secs(60)
    {
        return Err("it is longer-lived than `lifetime` now allows".into());
    }
    Ok(Leaf { certified: Arc::new(certified), not_before, not_after, issued: false })
}

/// A new leaf from `root`, stored. A leaf that cannot be stored is served
/// all the same (with a warning): only the root must survive a restart.
fn new_leaf(
    provider: &CryptoProvider,
    root: &Root,
    config: &LocalCaConfig,
    now: SystemTime,
) -> Result<Leaf, TlsError> {
    let (leaf, cert_pem, key_pem) = root.issue(provider, &config.names, config.lifetime, now)?;
    let stored = write_private(&config.state_dir.join(LEAF_KEY), key_pem.as_bytes())
        .and_then(|()| write_private(&config.state_dir.join(LEAF), cert_pem.as_bytes()));
    if let Err(e) = stored {
        tracing::warn!(
            "local CA: cannot store the new certificate in {} ({e}); it is served, and issued again at the next start",
            config.state_dir.display()
        );
    }
    Ok(leaf)
}

/// At start and on every reload: the root (made when there is none yet)
/// and the leaf to serve, the stored one or a new one.
pub fn load(provider: &CryptoProvider, config: &LocalCaConfig) -> Result<(Root, Leaf), TlsError> {
    let root = Root::open_or_create(&config.state_dir)?;
    let now = SystemTime::now();
    let leaf = match stored_leaf(provider, &root, config, now) {
        Ok(leaf) => leaf,
        Err(why) => {
            tracing::info!(
                "local CA: issuing a new certificate for {} because the stored one cannot serve: {why}",
                config.names.join(", ")
            );
            new_leaf(provider, &root, config, now)?
        }
    };
    Ok((root, leaf))
}

/// What `Live` holds for `leaf`.
pub fn installed(leaf: &Leaf) -> Installed {
    Installed {
        certified: leaf.certified.clone(),
        domain: INSTALLED_AS.to_string(),
        not_before: leaf.not_before,
        not_after: leaf.not_after,
    }
}

/// The task that renews the leaf while the server runs, swapping the new
/// one into `Live`: later handshakes get it, open connections keep theirs.
/// Dropping it stops the task (a reload starts another).
pub struct Renewal {
    task: JoinHandle<()>,
}

impl Renewal {
    /// Must run inside a tokio runtime, after `tls::load` has put the leaf
    /// in `live`.
    pub fn start(provider: Arc<CryptoProvider>, config: LocalCaConfig, live: Arc<Live>) -> Renewal {
        Renewal { task: tokio::spawn(renew(provider, config, live)) }
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn renew(provider: Arc<CryptoProvider>, config: LocalCaConfig, live: Arc<Live>) {
    // After a failure, again in a tenth of the lifetime (an hour at most),
    // well before the leaf in force runs out.
    let retry = (config.lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        let not_after = live.installed().filter(|i| i.domain == INSTALLED_AS).map(|i| i.not_after);
        let wait = not_after.map_or(Duration::ZERO, |end| renew_in(end, config.lifetime, SystemTime::now()));
        if !wait.is_zero() {
            tracing::info!("local CA: next renewal of the certificate in {}", x509::human(wait));
            tokio::time::sleep(wait).await;
        }
        // Read again: a root that went missing or bad since the start is
        // reported, never replaced.
        let result = match Root::open(&config.state_dir) {
            Ok(Some(root)) => new_leaf(&provider, &root, &config, SystemTime::now()),
            Ok(None) => Err(problem(
                &config.state_dir.join(ROOT),
                "the root has disappeared since the start".into(),
                "restore root.pem and root-key.pem from a backup, or restart vaultgate to make a new root (every device must then install it)",
            )),
            Err(e) => Err(e),
        };
        match result {
            Ok(leaf) => {
                tracing::info!(
                    "local CA: new certificate for {} installed (expires in {}); new connections get it, open ones are kept",
                    config.names.join(", "),
                    x509::human(leaf.not_after.duration_since(SystemTime::now()).unwrap_or_default())
                );
                live.set(Some(installed(&leaf)));
            }
            Err(e) => {
                tracing::error!(
                    "local CA: cannot renew the certificate: {e}; the current one is served until it expires, retrying in {}",
                    x509::human(retry)
                );
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// For `vaultgate check`: where the root is and what the leaf covers, read
/// only (a root that is not there yet is made at the first start, not by
/// `check`, which may run as another user). Errors are the start's errors.
pub fn describe(provider: &CryptoProvider, config: &LocalCaConfig) -> Result<String, TlsError> {
    let names = config.names.join(", ");
    let Some(root) = Root::open(&config.state_dir)? else {
        return Ok(format!(
            "local CA: no root yet in {}; it is made at the first start, with a certificate for {names}",
            config.state_dir.display()
        ));
    };
    let leaf = match stored_leaf(provider, &root, config, SystemTime::now()) {
        Ok(leaf) => format!(
            "certificate for {names} expires in {}",
            x509::human(leaf.not_after.duration_since(SystemTime::now()).unwrap_or_default())
        ),
        Err(why) => format!("a new certificate for {names} is issued at start ({why})"),
    };
    Ok(format!(
        "local CA: root in {} (SHA-256 fingerprint {}); {leaf}; devices trust it once they install the root: vaultgate ca export",
        config.state_dir.join(ROOT).display(),
        root.fingerprint()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(dir: &Path, names: &[&str]) -> LocalCaConfig {
        LocalCaConfig {
            names: names.iter().map(|n| n.to_string()).collect(),
            state_dir: dir.join("local-ca"),
            lifetime: crate::config::LOCAL_CA_LIFETIME,
        }
    }

    fn serial(leaf: &Leaf) -> String {
        x509::serial(&leaf.certified.cert[0]).unwrap()
    }

    #[test]
    fn the_root_is_made_once_and_the_leaf_kept_until_the_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let provider = crate::tls::provider();
        let config = config(dir.path(), &["vault.home.arpa", "192.168.1.10"]);
        let (root, leaf) = load(&provider, &config).unwrap();
        assert!(leaf.issued);
        let (again, kept) = load(&provider, &config).unwrap();
        assert_eq!(again.der, root.der, "the same root after a restart");
        assert!(!kept.issued, "the stored leaf serves again");
        assert_eq!(serial(&kept), serial(&leaf));

        let more =
            LocalCaConfig { names: vec!["vault.home.arpa".into(), "vault.lan".into()], ..config.clone() };
        let (third, renamed) = load(&provider, &more).unwrap();
        assert_eq!(third.der, root.der);
        assert!(renamed.issued, "a leaf for other names is issued anew");
        root.verifies(&provider, &renamed.certified.cert, &more.names, SystemTime::now()).unwrap();

        let state = &config.state_dir;
        assert_eq!(std::fs::metadata(state).unwrap().permissions().mode() & 0o777, 0o700);
        for file in [ROOT, ROOT_KEY, LEAF, LEAF_KEY] {
            let mode = std::fs::metadata(state.join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
    }

    #[test]
    fn a_due_or_too_long_lived_leaf_is_issued_anew_from_the_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let provider = crate::tls::provider();
        let config = config(dir.path(), &["localhost"]);
        let (root, leaf) = load(&provider, &config).unwrap();
        // 245 days on: a third of 365 days remains, the leaf is due.
        let later = SystemTime::now() + Duration::from_secs(245 * 86400);
        let why = stored_leaf(&provider, &root, &config, later).err().unwrap();
        assert!(why.contains("due"), "{why}");
        assert!(stored_leaf(&provider, &root, &config, SystemTime::now()).is_ok());
        let shorter = LocalCaConfig { lifetime: Duration::from_secs(30 * 86400), ..config.clone() };
        let why = stored_leaf(&provider, &root, &shorter, SystemTime::now()).err().unwrap();
        assert!(why.contains("longer-lived"), "{why}");
        let (_, renewed) = load(&provider, &shorter).unwrap();
        assert!(renewed.issued);
        assert_ne!(serial(&renewed), serial(&leaf));
        let lifetime = renewed.not_after.duration_since(renewed.not_before).unwrap();
        assert_eq!(lifetime, shorter.lifetime + BACKDATE);
    }

    #[test]
    fn renewal_falls_when_a_third_of_the_lifetime_remains() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let lifetime = Duration::from_secs(30);
        assert_eq!(renew_in(now + lifetime, lifetime, now), Duration::from_secs(20));
        assert_eq!(renew_in(now + Duration::from_secs(10), lifetime, now), Duration::ZERO);
        assert_eq!(renew_in(now, lifetime, now), Duration::ZERO);
        assert_eq!(renew_in(UNIX_EPOCH, lifetime, now), Duration::ZERO, "no underflow");
    }

    #[test]
    fn a_broken_root_is_an_error_that_names_the_file_and_never_a_new_root() {
        let dir = tempfile::tempdir().unwrap();
        let provider = crate::tls::provider();
        let config = config(dir.path(), &["localhost"]);
        let (root, _) = load(&provider, &config).unwrap();
        let state = &config.state_dir;
        let key = std::fs::read(state.join(ROOT_KEY)).unwrap();

        let broken = |what: &str, expect_file: &str, expect: &str| {
            let e = load(&provider, &config).err().unwrap_or_else(|| panic!("{what}: loaded"));
            let shown = e.to_string();
            assert!(shown.contains(&state.join(expect_file).display().to_string()), "{what}: {shown}");
            assert!(shown.contains(expect), "{what}: {shown}");
            assert!(shown.contains("fix: "), "{what}: {shown}");
        };
        std::fs::write(state.join(ROOT), "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
            .unwrap();
        broken("a corrupted root", ROOT, "not a PEM certificate");
        std::fs::write(state.join(ROOT), "").unwrap();
        broken("an emptied root", ROOT, "not a PEM certificate");
        std::fs::write(state.join(ROOT), &root.pem).unwrap();

        std::fs::remove_file(state.join(ROOT_KEY)).unwrap();
        broken("a missing key", ROOT_KEY, "missing");
        std::fs::write(state.join(ROOT_KEY), rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        broken("another key", ROOT_KEY, "not the key of the root");
        std::fs::write(state.join(ROOT_KEY), "not a key").unwrap();
        broken("a corrupted key", ROOT_KEY, "not a private key");
        // Unreadable (a directory in its place: unreadable even to root).
        std::fs::remove_file(state.join(ROOT_KEY)).unwrap();
        std::fs::create_dir(state.join(ROOT_KEY)).unwrap();
        broken("an unreadable key", ROOT_KEY, "cannot read the file");
        std::fs::remove_dir(state.join(ROOT_KEY)).unwrap();

        std::fs::write(state.join(ROOT_KEY), &key).unwrap();
        let (again, _) = load(&provider, &config).unwrap();
        assert_eq!(again.der, root.der, "with its files back, the same root");
    }

    #[test]
    fn a_state_directory_that_cannot_be_made_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let config = LocalCaConfig {
            state_dir: dir.path().join("file/local-ca"),
            ..config(dir.path(), &["localhost"])
        };
        let shown = load(&crate::tls::provider(), &config).err().unwrap().to_string();
        assert!(shown.contains(&config.state_dir.display().to_string()), "{shown}");
        assert!(shown.contains("fix: the state directory's path runs through a file"), "{shown}");
        // A directory that cannot be written (not even by root).
        let config = LocalCaConfig { state_dir: "/proc/local-ca".into(), ..config };
        let shown = load(&crate::tls::provider(), &config).err().unwrap().to_string();
        assert!(shown.starts_with("/proc/local-ca: cannot write the local CA"), "{shown}");
        assert!(shown.contains("fix: make the directory writable") && shown.contains("state_dir"), "{shown}");
    }

    #[test]
    fn a_key_without_its_root_is_an_interrupted_start_and_makes_a_new_root() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("local-ca");
        private_dir(&state).unwrap();
        write_private(&state.join(ROOT_KEY), b"half a creation").unwrap();
        let root = Root::open_or_create(&state).unwrap();
        assert_eq!(Root::open(&state).unwrap().unwrap().der, root.der);
        // The old key is kept aside, never overwritten: it may be a root
        // whose certificate was lost, that devices still trust.
        let kept: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".orphan-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(std::fs::read(&kept[0]).unwrap(), b"half a creation");
    }
}
