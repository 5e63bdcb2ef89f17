//! `[[access]]` lists: which client networks may reach a path prefix
//! (e.g. `/admin` only from the LAN). Pure logic.

use std::net::IpAddr;

use crate::http::client_ip::Cidr;
use crate::http::path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Lower-case path prefix, compared segment-wise on [`path::match_key`].
    pub prefix: String,
    pub allow: Vec<Cidr>,
}

/// The rule that refuses `client` on `normalized_path`, if any. When several
/// prefixes cover the path, the longest one decides.
pub fn refusing<'a>(rules: &'a [Rule], normalized_path: &str, client: IpAddr) -> Option<&'a Rule> {
    let key = path::match_key(normalized_path);
    let rule = rules.iter().filter(|r| path::under(&key, &r.prefix)).max_by_key(|r| r.prefix.len())?;
    (!rule.allow.iter().any(|c| c.contains(client))).then_some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, allow: &[&str]) -> Rule {
        Rule { prefix: prefix.into(), allow: allow.iter().map(|c| c.parse().unwrap()).collect() }
    }

    #[test]
    fn admin_only_from_the_lan() {
        let rules = [rule("/admin", &["192.168.0.0/16", "127.0.0.1"])];
        let outsider: IpAddr = "203.0.113.5".parse().unwrap();
        let insider: IpAddr = "192.168.1.20".parse().unwrap();
        for p in ["/admin", "/admin/", "/ADMIN", "/Admin;x=1/users", "/admin/diagnostics"] {
            let normalized = path::normalize(p).unwrap();
            assert!(refusing(&rules, &normalized, outsider).is_some(), "{p} must be refused");
            assert!(refusing(&rules, &normalized, insider).is_none(), "{p} is allowed from the LAN");
        }
        for p in ["/api/sync", "/administrator", "/", "/alive"] {
            assert!(refusing(&rules, p, outsider).is_none(), "{p} is not covered");
        }
    }

    #[test]
    fn spellings_that_normalise_onto_admin_are_caught() {
        let rules = [rule("/admin", &["10.0.0.0/8"])];
        let outsider: IpAddr = "203.0.113.5".parse().unwrap();
        for p in ["//admin", "/x/../admin", "/%61dmin", "/%2e%2e/admin", "/api/%2E%2E/admin/", "/./admin"] {
            let normalized = path::normalize(p).unwrap();
            assert!(refusing(&rules, &normalized, outsider).is_some(), "{p} → {normalized}");
        }
    }

    #[test]
    fn longest_prefix_decides() {
        let rules = [rule("/", &["10.0.0.0/8"]), rule("/alive", &["0.0.0.0/0"])];
        let outsider: IpAddr = "203.0.113.5".parse().unwrap();
        assert!(refusing(&rules, "/alive", outsider).is_none());
        assert!(refusing(&rules, "/api", outsider).is_some());
    }
}
