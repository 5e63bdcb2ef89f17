//! RFC 2136 dynamic updates signed with TSIG (RFC 8945): how the DNS-01
//! record is added to and removed from a zone on BIND, Knot, PowerDNS and
//! the bridges of many hosting providers' DNS APIs.

use std::net::SocketAddr;
use std::path::Path;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use hickory_proto::op::update_message;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as HickoryAlgorithm, TsigError};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordSet, TSigner};

use super::dns::{self, Refusal};
use crate::config::{DnsServer, TsigAlgorithm};

/// The record's TTL: short, since it is removed after the check anyway.
const TTL: u32 = 60;
/// How far apart our clock and the server's may be (RFC 8945 §10 suggests 300 s).
const FUDGE: u16 = 300;

pub struct Updater {
    pub server: DnsServer,
    key_name: String,
    algorithm: TsigAlgorithm,
    signer: TSigner,
}

impl Updater {
    /// Reads the key's secret (base64, as `tsig-keygen`, `keymgr -t` and
    /// `knsupdate` write it) from `secret_file`.
    pub fn load(
        server: &DnsServer,
        key_name: &str,
        algorithm: TsigAlgorithm,
        secret_file: &Path,
    ) -> Result<Updater, String> {
        let text = std::fs::read_to_string(secret_file).map_err(|e| {
            format!("tls.acme.dns.key_secret_file: cannot read {}: {e}", secret_file.display())
        })?;
        let secret = BASE64_STANDARD.decode(text.trim()).map_err(|_| {
            format!(
                "tls.acme.dns.key_secret_file: {} does not hold a base64 secret (write only the key's secret, e.g. the `secret` of `tsig-keygen` output)",
                secret_file.display()
            )
        })?;
        if secret.is_empty() {
            return Err(format!("tls.acme.dns.key_secret_file: {} is empty", secret_file.display()));
        }
        let hickory = match algorithm {
            TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
        };
        let name = Name::from_ascii(key_name).map_err(|e| format!("tls.acme.dns.key_name: {e}"))?;
        let signer = TSigner::new(secret, hickory, name, FUDGE).map_err(|e| format!("TSIG: {e}"))?;
        Ok(Updater { server: server.clone(), key_name: key_name.to_string(), algorithm, signer })
    }

    /// "`vaultgate` (hmac-sha256)", for log lines.
    pub fn key(&self) -> String {
        format!("`{}` ({})", self.key_name, self.algorithm.name())
    }

    /// The server's first address.
    pub async fn addr(&self) -> Result<SocketAddr, String> {
        Ok(dns::resolve(&self.server).await?[0])
    }

    /// Adds the TXT record `value` at `fqdn` in `zone`.
    pub async fn add(&self, zone: &Name, fqdn: &Name, value: &str) -> Result<(), String> {
        self.send(zone, fqdn, value, true).await
    }

    /// Removes exactly that record (others at the name, such as a second
    /// order's, stay).
    pub async fn remove(&self, zone: &Name, fqdn: &Name, value: &str) -> Result<(), String> {
        self.send(zone, fqdn, value, false).await
    }

    async fn send(&self, zone: &Name, fqdn: &Name, value: &str, add: bool) -> Result<(), String> {
        if !zone.zone_of(fqdn) {
            return Err(format!("{fqdn} is not in the zone {zone}: fix acme.dns.zone"));
        }
        let record = Record::from_rdata(fqdn.clone(), TTL, RData::TXT(TXT::new(vec![value.to_string()])));
        let rrset = RecordSet::from(record);
        let message = if add {
            update_message::append(rrset, zone.clone(), false, false)
        } else {
            update_message::delete_by_rdata(rrset, zone.clone(), false)
        };
        let addr = self.addr().await?;
        let server = if self.server.host.parse::<std::net::IpAddr>().is_ok() {
            self.server.to_string()
        } else {
            format!("{} ({addr})", self.server)
        };
        dns::exchange(addr, message, Some(&self.signer)).await.map(|_| ()).map_err(|e| match e {
            Refusal::Unreachable(_) | Refusal::Unsigned(_) => {
                format!("cannot update zone {zone} on the DNS server {server}: {}", self.explain(&e, zone))
            }
            _ => format!(
                "the DNS server {server} refused the update of zone {zone}: {}",
                self.explain(&e, zone)
            ),
        })
    }

    /// A refusal as what to check.
    fn explain(&self, refusal: &Refusal, zone: &Name) -> String {
        let key = self.key();
        match refusal {
            Refusal::Unreachable(why) => format!("{why} (check acme.dns.server and that it accepts TCP)"),
            Refusal::Tsig(TsigError::BadKey) => format!(
                "it does not know the TSIG key {key} (BADKEY): check key_name and key_algorithm against the key configured on the server"
            ),
            Refusal::Tsig(TsigError::BadSig) => format!(
                "the signature made with the TSIG key {key} does not verify there (BADSIG): the secret in key_secret_file is not the server's secret for that key"
            ),
            Refusal::Tsig(TsigError::BadTime) => {
                "this machine's clock and the server's differ by more than 5 minutes (TSIG BADTIME): fix the clocks (NTP)".into()
            }
            Refusal::Tsig(other) => format!("TSIG error {}", dns::tsig_error_name(other)),
            Refusal::Code(ResponseCode::NotAuth) => format!(
                "NOTAUTH: the key {key} is not accepted, or the server is not authoritative for {zone} (check the key, and set acme.dns.zone)"
            ),
            Refusal::Code(ResponseCode::Refused) => format!(
                "REFUSED: the key {key} may not update {zone} (BIND: update-policy or allow-update; Knot: an acl with action update for the key)"
            ),
            Refusal::Code(ResponseCode::NotZone) => {
                format!("NOTZONE: {zone} is not a zone there (set acme.dns.zone to the zone the name is in)")
            }
            Refusal::Code(code) => format!("{} (see the server's log)", code.to_str()),
            Refusal::Unsigned(why) => format!(
                "its answer is not signed with the TSIG key {key} ({why}): forged on the way, or the server does not sign its answers; the update is not trusted"
            ),
        }
    }
}
