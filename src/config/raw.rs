//! What `proxy.toml` may say, as serde reads it (before any value is
//! checked), and the list of keys that "did you mean" suggests from.

use serde::Deserialize;
use toml::Spanned;

/// Every key the file format knows, with the table it belongs in ("" = top level).
pub(super) const KNOWN_KEYS: &[(&str, &str)] = &[
    ("", "listen"),
    ("", "upstream"),
    ("", "hub_paths"),
    ("", "http2_websockets"),
    ("", "tls"),
    ("", "timeouts"),
    ("", "limits"),
    ("", "client_ip"),
    ("", "access"),
    ("", "log"),
    ("", "redirect"),
    ("redirect", "listen"),
    ("", "metrics"),
    ("metrics", "listen"),
    ("", "proxy_protocol"),
    ("proxy_protocol", "from"),
    ("tls", "cert"),
    ("tls", "key"),
    ("tls", "server_names"),
    ("tls", "hsts"),
    ("tls", "watch_interval"),
    ("tls", "acme"),
    ("tls", "client_auth"),
    ("tls", "local_ca"),
    ("tls.local_ca", "names"),
    ("tls.local_ca", "state_dir"),
    ("tls.local_ca", "lifetime"),
    ("tls.client_auth", "ca"),
    ("tls.client_auth", "required"),
    ("tls.client_auth", "exempt_paths"),
    ("tls.client_auth", "exempt_networks"),
    ("tls.client_auth", "crl"),
    ("tls.client_auth", "subject_header"),
    ("tls.acme", "domain"),
    ("tls.acme", "email"),
    ("tls.acme", "directory"),
    ("tls.acme", "ca"),
    ("tls.acme", "state_dir"),
    ("tls.acme", "challenge"),
    ("tls.acme", "dns"),
    ("tls.acme.dns", "server"),
    ("tls.acme.dns", "key_name"),
    ("tls.acme.dns", "key_algorithm"),
    ("tls.acme.dns", "key_secret_file"),
    ("tls.acme.dns", "zone"),
    ("tls.acme.dns", "hook"),
    ("tls.acme.dns", "check_servers"),
    ("tls.acme.dns", "propagation_timeout"),
    ("timeouts", "tls_handshake"),
    ("timeouts", "request_header"),
    ("timeouts", "request_body_idle"),
    ("timeouts", "keep_alive"),
    ("timeouts", "upstream_connect"),
    ("timeouts", "upstream_response"),
    ("timeouts", "hub_idle"),
    ("timeouts", "drain"),
    ("timeouts", "send_idle"),
    ("limits", "max_request_body"),
    ("limits", "max_connections"),
    ("limits", "max_connections_per_ip"),
    ("limits", "min_upload_rate"),
    ("limits", "workers"),
    ("limits", "ipv6_prefix"),
    ("limits", "max_hubs_per_ip"),
    ("limits", "max_upstream_per_connection"),
    ("limits", "max_upstream_per_ip"),
    ("limits", "max_header_line"),
    ("client_ip", "trusted_proxies"),
    ("client_ip", "header"),
    ("access", "path"),
    ("access", "allow"),
    ("log", "level"),
    ("log", "access"),
    ("log", "access_format"),
    ("", "login_guard"),
    ("login_guard", "enabled"),
    ("login_guard", "max_failures"),
    ("login_guard", "window"),
    ("login_guard", "ban"),
    ("login_guard", "max_ban"),
    ("login_guard", "allow"),
    ("login_guard", "state_file"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) upstream: Option<Spanned<String>>,
    pub(super) hub_paths: Option<Spanned<Vec<String>>>,
    pub(super) http2_websockets: Option<bool>,
    pub(super) tls: Option<RawTls>,
    pub(super) timeouts: Option<RawTimeouts>,
    pub(super) limits: Option<RawLimits>,
    pub(super) client_ip: Option<RawClientIp>,
    pub(super) access: Option<Vec<RawAccess>>,
    pub(super) redirect: Option<RawListen>,
    pub(super) metrics: Option<RawListen>,
    pub(super) proxy_protocol: Option<RawProxyProtocol>,
    pub(super) log: Option<RawLog>,
    pub(super) login_guard: Option<RawLoginGuard>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoginGuard {
    pub(super) enabled: Option<bool>,
    pub(super) max_failures: Option<Spanned<i64>>,
    pub(super) window: Option<Spanned<String>>,
    pub(super) ban: Option<Spanned<String>>,
    pub(super) max_ban: Option<Spanned<String>>,
    pub(super) allow: Option<Spanned<Vec<String>>>,
    pub(super) state_file: Option<Spanned<String>>,
}

/// A table with one `listen` address: `[redirect]`, `[metrics]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Option<Spanned<String>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) server_names: Option<Spanned<Vec<String>>>,
    pub(super) hsts: Option<bool>,
    pub(super) watch_interval: Option<Spanned<String>>,
    pub(super) acme: Option<Spanned<RawAcme>>,
    pub(super) client_auth: Option<Spanned<RawClientAuth>>,
    pub(super) local_ca: Option<Spanned<RawLocalCa>>,
}

/// `[tls] local_ca`: certificates from a root CA of vaultgate's own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocalCa {
    pub(super) names: Option<Spanned<Vec<String>>>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) lifetime: Option<Spanned<String>>,
}

/// `[tls.client_auth]`: client certificates (mTLS).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientAuth {
    pub(super) ca: Spanned<String>,
    pub(super) required: Option<bool>,
    pub(super) exempt_paths: Option<Spanned<Vec<String>>>,
    pub(super) exempt_networks: Option<Spanned<Vec<String>>>,
    pub(super) crl: Option<Spanned<String>>,
    pub(super) subject_header: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub(super) domain: Spanned<String>,
    pub(super) email: Option<Spanned<String>>,
    pub(super) directory: Option<Spanned<String>>,
    pub(super) ca: Option<Spanned<String>>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) challenge: Option<Spanned<String>>,
    pub(super) dns: Option<Spanned<RawDns>>,
}

/// `acme.dns`: DNS-01 through RFC 2136 (`server` and a TSIG key) or a `hook`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub(super) server: Option<Spanned<String>>,
    pub(super) key_name: Option<Spanned<String>>,
    pub(super) key_algorithm: Option<Spanned<String>>,
    pub(super) key_secret_file: Option<Spanned<String>>,
    pub(super) zone: Option<Spanned<String>>,
    pub(super) hook: Option<Spanned<String>>,
    pub(super) check_servers: Option<Spanned<Vec<String>>>,
    pub(super) propagation_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) tls_handshake: Option<Spanned<String>>,
    pub(super) request_header: Option<Spanned<String>>,
    pub(super) request_body_idle: Option<Spanned<String>>,
    pub(super) keep_alive: Option<Spanned<String>>,
    pub(super) upstream_connect: Option<Spanned<String>>,
    pub(super) upstream_response: Option<Spanned<String>>,
    pub(super) hub_idle: Option<Spanned<String>>,
    pub(super) drain: Option<Spanned<String>>,
    pub(super) send_idle: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_request_body: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) max_connections_per_ip: Option<Spanned<i64>>,
    pub(super) min_upload_rate: Option<Spanned<String>>,
    pub(super) workers: Option<Spanned<i64>>,
    pub(super) ipv6_prefix: Option<Spanned<i64>>,
    pub(super) max_hubs_per_ip: Option<Spanned<i64>>,
    pub(super) max_upstream_per_connection: Option<Spanned<i64>>,
    pub(super) max_upstream_per_ip: Option<Spanned<i64>>,
    pub(super) max_header_line: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientIp {
    pub(super) trusted_proxies: Option<Spanned<Vec<String>>>,
    pub(super) header: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxyProtocol {
    pub(super) from: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    pub(super) path: Spanned<String>,
    pub(super) allow: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<Spanned<String>>,
    pub(super) access: Option<Spanned<String>>,
    pub(super) access_format: Option<Spanned<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys serde accepts in `table`, read from its refusal of one it
    /// does not know ("unknown field `…`, expected one of `a`, `b`").
    fn accepted(table: &str) -> Vec<String> {
        let doc = match table {
            "" => "zz_unknown = 1\n".to_string(),
            "access" => "[[access]]\nzz_unknown = 1\n".to_string(),
            t => format!("[{t}]\nzz_unknown = 1\n"),
        };
        let e = toml::from_str::<RawConfig>(&doc).err().expect("an unknown key is refused").to_string();
        let listed =
            e.split("expected one of ").nth(1).or_else(|| e.split("expected ").nth(1)).unwrap_or_default();
        let mut keys: Vec<String> = listed.split('`').skip(1).step_by(2).map(str::to_string).collect();
        keys.sort();
        keys
    }

    #[test]
    fn the_known_keys_are_the_ones_serde_accepts() {
        let mut tables: Vec<&str> = KNOWN_KEYS.iter().map(|(t, _)| *t).collect();
        tables.dedup();
        tables.sort();
        tables.dedup();
        for table in tables {
            let mut known: Vec<String> =
                KNOWN_KEYS.iter().filter(|(t, _)| *t == table).map(|(_, k)| k.to_string()).collect();
            known.sort();
            assert_eq!(known, accepted(table), "[{table}]: KNOWN_KEYS and the Raw structs disagree");
        }
        // Every table with a Raw struct is in the list.
        for (_, key) in KNOWN_KEYS.iter().filter(|(t, _)| t.is_empty()) {
            let nested = matches!(
                *key,
                "tls"
                    | "timeouts"
                    | "limits"
                    | "client_ip"
                    | "access"
                    | "log"
                    | "redirect"
                    | "metrics"
                    | "proxy_protocol"
                    | "login_guard"
            );
            assert_eq!(nested, KNOWN_KEYS.iter().any(|(t, _)| t == key), "{key}");
        }
    }
}
