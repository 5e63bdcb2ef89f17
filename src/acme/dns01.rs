//! DNS-01 (RFC 8555 §8.4): the TXT record `_acme-challenge.<domain>` holds
//! the digest of the key authorization. Put in place (RFC 2136 update or
//! the hook), waited for on the zone's authoritative servers (the CA asks
//! any of them, so all of them must have it), removed after the check.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::Name;

use super::dns;
use super::hook::Hook;
use super::rfc2136::Updater;
use crate::config::{DnsConfig, DnsProvider};

/// How often the servers are asked again while the record is not there.
const POLL: Duration = Duration::from_secs(1);

enum Provider {
    Rfc2136(Updater),
    Hook(Hook),
}

pub struct Dns01 {
    provider: Provider,
    config: DnsConfig,
}

/// A record put in place, to remove afterwards.
pub struct Placed {
    fqdn: Name,
    zone: Option<Name>,
    value: String,
}

/// `_acme-challenge.vault.example.com.` for `vault.example.com` and for
/// `*.example.com` alike (the wildcard label is dropped).
pub fn record_name(domain: &str) -> Result<Name, String> {
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    let mut name = Name::from_ascii(format!("_acme-challenge.{base}."))
        .map_err(|e| format!("`{domain}` makes no DNS name: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

fn parse_zone(zone: &str) -> Result<Name, String> {
    Name::from_ascii(format!("{zone}.")).map_err(|e| format!("tls.acme.dns.zone: {e}"))
}

impl Dns01 {
    /// Reads what the provider needs (the TSIG secret; that the hook can be
    /// run): at start, on every attempt, and by `vaultgate check`.
    pub fn load(config: &DnsConfig) -> Result<Dns01, String> {
        let provider = match &config.provider {
            DnsProvider::Rfc2136 { server, key_name, key_algorithm, key_secret_file } => {
                Provider::Rfc2136(Updater::load(server, key_name, *key_algorithm, key_secret_file)?)
            }
            DnsProvider::Hook { program } => Provider::Hook(Hook::load(program)?),
        };
        Ok(Dns01 { provider, config: config.clone() })
    }

    /// One line for `vaultgate check` and the log.
    pub fn describe(&self) -> String {
        let how = match &self.provider {
            Provider::Rfc2136(u) => {
                format!("RFC 2136 updates to {} signed with the TSIG key {}", u.server, u.key())
            }
            Provider::Hook(h) => format!("the hook {}", h.program.display()),
        };
        let checked = if self.config.check_servers.is_empty() {
            "on the zone's name servers".to_string()
        } else {
            let list: Vec<String> = self.config.check_servers.iter().map(|s| s.to_string()).collect();
            format!("on {}", list.join(", "))
        };
        format!(
            "dns-01 through {how}; the record is awaited {checked} (at most {} s)",
            self.config.propagation_timeout.as_secs()
        )
    }

    /// Where the zone and its name servers are looked up, and whether that
    /// server answers recursively: the update server for RFC 2136 (it is
    /// authoritative), the system resolver for a hook.
    async fn authority(&self) -> Result<(SocketAddr, bool), String> {
        match &self.provider {
            Provider::Rfc2136(u) => Ok((u.addr().await?, false)),
            Provider::Hook(_) => Ok((dns::system_resolver()?, true)),
        }
    }

    async fn zone(&self, fqdn: &Name) -> Result<Name, String> {
        if let Some(zone) = &self.config.zone {
            return parse_zone(zone);
        }
        let (addr, recurse) = self.authority().await?;
        dns::zone_of(fqdn, addr, recurse).await
    }

    /// Puts the TXT record `value` at `fqdn`.
    pub async fn present(&self, fqdn: &Name, value: &str) -> Result<Placed, String> {
        let zone = match &self.provider {
            Provider::Rfc2136(u) => {
                let zone = self.zone(fqdn).await?;
                u.add(&zone, fqdn, value).await?;
                Some(zone)
            }
            Provider::Hook(h) => {
                h.call("present", &fqdn.to_ascii(), value).await?;
                None
            }
        };
        tracing::info!("ACME: TXT record {fqdn} put in place through {}", self.via());
        Ok(Placed { fqdn: fqdn.clone(), zone, value: value.to_string() })
    }

    /// Removes a record put in place; failures are logged (the record is
    /// harmless, if untidy, and the certificate does not depend on it).
    pub async fn cleanup(&self, placed: Placed) {
        let result = match (&self.provider, &placed.zone) {
            (Provider::Rfc2136(u), Some(zone)) => u.remove(zone, &placed.fqdn, &placed.value).await,
            (Provider::Hook(h), _) => h.call("cleanup", &placed.fqdn.to_ascii(), &placed.value).await,
            (Provider::Rfc2136(_), None) => Ok(()),
        };
        match result {
            Ok(()) => tracing::info!("ACME: TXT record {} removed through {}", placed.fqdn, self.via()),
            Err(e) => tracing::warn!("ACME: cannot remove the TXT record {}: {e}", placed.fqdn),
        }
    }

    fn via(&self) -> String {
        match &self.provider {
            Provider::Rfc2136(u) => format!("an RFC 2136 update to {}", u.server),
            Provider::Hook(h) => format!("the hook {}", h.program.display()),
        }
    }

    /// The servers the record must be visible on: `check_servers`, else the
    /// zone's NS (and, for RFC 2136, the server updated).
    async fn check_servers(&self, fqdn: &Name) -> Result<Vec<(String, SocketAddr)>, String> {
        let mut servers: Vec<(String, SocketAddr)> = Vec::new();
        let mut add = |label: String, addr: SocketAddr| {
            if !servers.iter().any(|(_, a)| *a == addr) {
                servers.push((label, addr));
            }
        };
        if !self.config.check_servers.is_empty() {
            for server in &self.config.check_servers {
                for addr in dns::resolve(server).await? {
                    add(server.to_string(), addr);
                }
            }
            return Ok(servers);
        }
        if let Provider::Rfc2136(u) = &self.provider {
            add(u.server.to_string(), u.addr().await?);
        }
        let zone = self.zone(fqdn).await?;
        let (addr, recurse) = self.authority().await?;
        for (host, addrs) in dns::name_servers(&zone, addr, recurse).await? {
            if addrs.is_empty() {
                return Err(format!(
                    "the name server {host} of {zone} has no address: set acme.dns.check_servers"
                ));
            }
            for addr in addrs {
                add(host.clone(), addr);
            }
        }
        Ok(servers)
    }

    /// Waits until every authoritative server answers the record, at most
    /// `propagation_timeout`; the CA is told to look only then.
    pub async fn wait_visible(&self, fqdn: &Name, value: &str) -> Result<(), String> {
        let timeout = self.config.propagation_timeout;
        // The whole wait is bounded, name-server discovery and every
        // question included: a zone's servers (or whoever answers for them)
        // may be slow, silent or many.
        let deadline = tokio::time::Instant::now() + timeout;
        let servers = tokio::time::timeout_at(deadline, self.check_servers(fqdn)).await.map_err(|_| {
            format!(
                "finding the name servers of {fqdn}'s zone took longer than acme.dns.propagation_timeout ({} s): set acme.dns.check_servers",
                timeout.as_secs()
            )
        })??;
        let names: Vec<String> = servers.iter().map(|(label, addr)| show(label, *addr)).collect();
        tracing::info!(
            "ACME: waiting up to {} s for the TXT record {fqdn} to be visible on {}",
            timeout.as_secs(),
            names.join(", ")
        );
        let mut pending = servers;
        loop {
            let mut still = Vec::new();
            for (label, addr) in pending {
                let why = match tokio::time::timeout_at(deadline, dns::txt_visible(fqdn, value, addr)).await {
                    Ok(Ok(true)) => continue,
                    Ok(Ok(false)) => "not there yet".to_string(),
                    Ok(Err(e)) => e,
                    Err(_) => "no answer before the deadline".to_string(),
                };
                still.push((label, addr, why));
            }
            if still.is_empty() {
                tracing::info!(
                    "ACME: the TXT record {fqdn} is visible on every server; asking the CA to check it"
                );
                return Ok(());
            }
            if tokio::time::Instant::now() + POLL > deadline {
                let missing: Vec<String> = still
                    .iter()
                    .map(|(label, addr, why)| format!("{} ({why})", show(label, *addr)))
                    .collect();
                return Err(format!(
                    "the TXT record {fqdn} is still not visible after {} s on {}: check that the zone's servers get the change from the one updated (NOTIFY, zone transfers), or raise acme.dns.propagation_timeout",
                    timeout.as_secs(),
                    missing.join(", ")
                ));
            }
            tokio::time::sleep(POLL).await;
            pending = still.into_iter().map(|(label, addr, _)| (label, addr)).collect();
        }
    }
}

fn show(label: &str, addr: SocketAddr) -> String {
    if label == addr.to_string() {
        label.to_string()
    } else {
        format!("{label} ({addr})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_of_a_wildcard_is_the_one_of_its_base() {
        assert_eq!(
            record_name("vault.example.com").unwrap().to_ascii(),
            "_acme-challenge.vault.example.com."
        );
        assert_eq!(record_name("*.example.com").unwrap().to_ascii(), "_acme-challenge.example.com.");
    }
}
