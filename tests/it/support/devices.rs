//! A device CA made at test time, for `[tls.client_auth]`: a root, an
//! intermediate under it, leaves for devices (one revoked by a CRL, one
//! expired), and a leaf of another CA that nobody trusts. Every file is PEM
//! in [`DeviceCa::dir`].

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A device certificate: its chain as a client presents it, and its key.
pub struct Device {
    /// `CN=…` as vaultgate logs it (`CN=phone,O=vaultgate tests`).
    pub subject: String,
    /// Lower-case hex.
    pub serial: String,
    /// The leaf alone (what iOS presents).
    pub leaf_path: PathBuf,
    /// The leaf and the intermediate (what a well-configured client presents).
    pub chain_path: PathBuf,
    pub key_path: PathBuf,
    /// PKCS#12 of the leaf and its key (password `test`), for NSS and phones.
    pub p12_path: Option<PathBuf>,
}

impl Device {
    /// The chain ([`Device::chain_path`] when `full`, else the leaf alone) and the key.
    pub fn identity(&self, full: bool) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let certs = CertificateDer::pem_file_iter(if full { &self.chain_path } else { &self.leaf_path })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (certs, PrivateKeyDer::from_pem_file(&self.key_path).unwrap())
    }
}

pub struct DeviceCa {
    pub dir: tempfile::TempDir,
    /// The root alone.
    pub root_path: PathBuf,
    /// The intermediate alone (an anchor that is not self-signed).
    pub intermediate_path: PathBuf,
    /// A CRL of the intermediate listing [`DeviceCa::revoked`].
    pub crl_path: PathBuf,
    /// A CRL of the intermediate listing nothing.
    pub empty_crl_path: PathBuf,
    /// Under the intermediate.
    pub phone: Device,
    /// Under the intermediate; a second valid one (revoked later in reload tests).
    pub tablet: Device,
    /// Under the intermediate, in [`DeviceCa::crl_path`].
    pub revoked: Device,
    /// Under the intermediate, expired in 2020.
    pub expired: Device,
    /// Of another CA altogether.
    pub stranger: Device,
    intermediate: Issuer<'static, KeyPair>,
    root: Issuer<'static, KeyPair>,
}

/// Who signs a CRL made by [`DeviceCa::crl_by`].
pub enum CrlSigner {
    /// The intermediate, which issues the devices (the right one).
    Intermediate,
    /// The root, which issued only the intermediate.
    Root,
    /// A CA named like the intermediate with a key of its own.
    SameNameOtherKey,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

impl DeviceCa {
    pub fn new() -> DeviceCa {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("vaultgate test devices root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let inter_key = KeyPair::generate().unwrap();
        let inter_params = ca_params("vaultgate test devices intermediate");
        let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
        let intermediate = Issuer::new(inter_params, inter_key);
        let other_key = KeyPair::generate().unwrap();
        let other_params = ca_params("someone else's CA");
        let other = Issuer::new(other_params, other_key);

        let root_path = write("root.pem", &root.pem());
        let intermediate_path = write("intermediate.pem", &inter.pem());
        let mut serial = 100u64;
        let mut device = |name: &str, issuer: &Issuer<'static, KeyPair>, expired: bool| {
            serial += 1;
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.distinguished_name.push(DnType::OrganizationName, "vaultgate tests");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.serial_number = Some(SerialNumber::from(serial));
            if expired {
                p.not_before = rcgen::date_time_ymd(2019, 1, 1);
                p.not_after = rcgen::date_time_ymd(2020, 1, 1);
            }
            let cert = p.signed_by(&key, issuer).unwrap();
            let file = name.replace(' ', "-");
            let leaf_path = write(&format!("{file}.pem"), &cert.pem());
            let chain_path = write(&format!("{file}-chain.pem"), &format!("{}{}", cert.pem(), inter.pem()));
            let key_path = write(&format!("{file}.key"), &key.serialize_pem());
            Device {
                subject: format!("CN={name},O=vaultgate tests"),
                serial: format!("{serial:02x}"),
                leaf_path,
                chain_path,
                key_path,
                p12_path: None,
            }
        };
        let phone = device("phone", &intermediate, false);
        let tablet = device("tablet", &intermediate, false);
        let revoked = device("revoked phone", &intermediate, false);
        let expired = device("expired phone", &intermediate, true);
        let stranger = device("stranger", &other, false);
        let ca = DeviceCa {
            crl_path: dir.path().join("devices.crl"),
            empty_crl_path: dir.path().join("empty.crl"),
            root_path,
            intermediate_path,
            phone,
            tablet,
            revoked,
            expired,
            stranger,
            intermediate,
            root: root_issuer,
            dir,
        };
        let revoked_serial = u64::from_str_radix(&ca.revoked.serial, 16).unwrap();
        std::fs::write(&ca.crl_path, ca.crl(&[revoked_serial])).unwrap();
        std::fs::write(&ca.empty_crl_path, ca.crl(&[])).unwrap();
        ca
    }

    /// A PEM CRL of the intermediate listing `serials`.
    pub fn crl(&self, serials: &[u64]) -> String {
        self.crl_by(CrlSigner::Intermediate, serials)
    }

    /// A PEM CRL signed by `signer`, listing `serials`.
    pub fn crl_by(&self, signer: CrlSigner, serials: &[u64]) -> String {
        let impostor;
        let issuer = match signer {
            CrlSigner::Intermediate => &self.intermediate,
            CrlSigner::Root => &self.root,
            CrlSigner::SameNameOtherKey => {
                let params = ca_params("vaultgate test devices intermediate");
                impostor = Issuer::new(params, KeyPair::generate().unwrap());
                &impostor
            }
        };
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(30),
            crl_number: SerialNumber::from(serials.len() as u64 + 1),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - time::Duration::minutes(30),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(issuer).unwrap().pem().unwrap()
    }

    /// The intermediate again (its name and key, under the root), with a
    /// key usage that lacks cRLSign: an anchor that may not sign its CRL.
    pub fn intermediate_without_crl_sign(&self) -> PathBuf {
        let mut params = ca_params("vaultgate test devices intermediate");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.signed_by(self.intermediate.key(), &self.root).unwrap();
        let p = self.dir.path().join("intermediate-no-crlsign.pem");
        std::fs::write(&p, cert.pem()).unwrap();
        p
    }

    /// A further device under the intermediate, valid from an hour ago
    /// until `not_after` (a short-lived certificate, say), with `serial`.
    pub fn device_until(&self, name: &str, serial: u64, not_after: time::OffsetDateTime) -> Device {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name.push(DnType::OrganizationName, "vaultgate tests");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        p.not_after = not_after;
        let cert = p.signed_by(&key, &self.intermediate).unwrap();
        let file = name.replace(' ', "-");
        let write = |name: String, text: String| {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let inter = std::fs::read_to_string(&self.intermediate_path).unwrap();
        Device {
            subject: format!("CN={name},O=vaultgate tests"),
            serial: format!("{serial:02x}"),
            leaf_path: write(format!("{file}.pem"), cert.pem()),
            chain_path: write(format!("{file}-chain.pem"), format!("{}{inter}", cert.pem())),
            key_path: write(format!("{file}.key"), key.serialize_pem()),
            p12_path: None,
        }
    }

    /// The root and the intermediate in one file (both anchors).
    pub fn both_path(&self) -> PathBuf {
        let p = self.dir.path().join("both.pem");
        let text = format!(
            "{}{}",
            std::fs::read_to_string(&self.root_path).unwrap(),
            std::fs::read_to_string(&self.intermediate_path).unwrap()
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `client_auth = { ca = "…", … }` for [`ProxyToml::tls`](super::ProxyToml::tls),
    /// with `more` (e.g. `required = false`) inside the braces.
    pub fn client_auth(&self, ca: &std::path::Path, more: &str) -> String {
        let more = if more.is_empty() { String::new() } else { format!(", {more}") };
        format!("client_auth = {{ ca = \"{}\"{more} }}", ca.display())
    }
}
