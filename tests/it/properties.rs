//! Property tests for everything that parses client or config input: no input
//! panics, and the invariants the proxy's safety rests on always hold.

use std::net::IpAddr;
use std::path::Path;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use vaultgate::testing::{access, client_ip, headers, host, parse_duration, path, redact};

/// Paths built from the pieces that matter: separators, dots, escapes, `;`.
fn tricky_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2f".to_string()),
        Just("%5c".to_string()),
        Just("%".to_string()),
        Just(";".to_string()),
        Just("admin".to_string()),
        Just("ADMIN".to_string()),
        Just("%61".to_string()),
        "[a-z0-9~_-]{1,4}",
        "%[0-9a-fA-Fg-z]{0,2}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| format!("/{}", parts.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalize_never_panics_and_is_idempotent(p in tricky_path()) {
        if let Ok(n) = path::normalize(&p) {
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.contains("//"), "{n}");
            prop_assert!(!n.split('/').any(|s| s == "." || s == ".."), "{n}");
            let lower = n.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"), "{n}");
            let again = path::normalize(&n).unwrap();
            prop_assert_eq!(again.as_ref(), n.as_ref());
        }
    }

    #[test]
    fn normalize_survives_any_string(s in "\\PC{0,64}") {
        let _ = path::normalize(&s);
        let _ = path::match_key(&s);
    }

    #[test]
    fn admin_cannot_be_reached_from_outside_by_any_spelling(p in tricky_path()) {
        let rules = [access::Rule { prefix: "/admin".into(), allow: vec!["10.0.0.0/8".parse().unwrap()] }];
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        if let Ok(n) = path::normalize(&p) {
            let key = path::match_key(&n);
            if key == "/admin" || key.starts_with("/admin/") {
                prop_assert!(access::refusing(&rules, &n, outsider).is_some(), "{p} → {n} got through");
            }
        }
    }

    #[test]
    fn connection_named_headers_never_survive_and_ours_always_do(
        names in prop::collection::vec("[a-zA-Z-]{1,12}", 0..6),
        include_ours in any::<bool>(),
    ) {
        let mut h = HeaderMap::new();
        let mut listed = names.clone();
        if include_ours {
            listed.push("X-Real-IP".into());
            listed.push("x-forwarded-for".into());
        }
        for n in &names {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("v"));
        }
        h.append("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.append(http::header::CONNECTION, HeaderValue::from_str(&listed.join(", ")).unwrap());
        headers::strip_hop_by_hop(&mut h);
        for n in &listed {
            prop_assert!(!h.contains_key(n.as_str()), "{n} survived");
        }
        let client = client_ip::Policy::default().resolve("192.0.2.1".parse::<std::net::IpAddr>().unwrap(), &h);
        headers::set_forwarding(&mut h, &client, &HeaderValue::from_static("vault.example"), None);
        prop_assert_eq!(h.get_all("x-real-ip").iter().count(), 1);
        prop_assert_eq!(&h["x-real-ip"], "192.0.2.1");
    }

    #[test]
    fn untrusted_peers_are_always_themselves(
        xff in "\\PC{0,40}",
        real in "\\PC{0,20}",
        a in any::<u8>(), b in any::<u8>(),
    ) {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&xff) { h.insert("x-forwarded-for", v); }
        if let Ok(v) = HeaderValue::from_str(&real) { h.insert("x-real-ip", v); }
        let peer = IpAddr::from([198, 51, a, b]);
        let policy = client_ip::Policy { trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()], source: client_ip::Source::XForwardedFor };
        prop_assert_eq!(policy.resolve(peer, &h).ip, peer);
        // And a trusted peer's junk never panics.
        let _ = policy.resolve("10.1.2.3".parse::<std::net::IpAddr>().unwrap(), &h);
    }

    #[test]
    fn tokens_never_reach_the_log(
        token in "[A-Za-z0-9._-]{8,40}",
        other in "[a-z]{1,8}=[a-z0-9]{0,8}",
        which in 0..6usize,
        spelling in prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 12),
        sep in prop::sample::select(vec!["&", ";"]),
    ) {
        // A secret name as Vaultwarden (Rocket) would still read it: any
        // character %-escaped, hex in either case, letters in either case.
        let name = ["access_token", "Token", "t", "code", "state", "duo_code"][which];
        let spelt: String = name.chars().zip(spelling.iter().cycle()).map(|(c, (escape, upper_hex, upper))| {
            match (escape, upper_hex) {
                (true, true) => format!("%{:02X}", c as u32),
                (true, false) => format!("%{:02x}", c as u32),
                _ if *upper => c.to_ascii_uppercase().to_string(),
                _ => c.to_string(),
            }
        }).collect();
        let raw = format!("/notifications/hub?{other}{sep}{spelt}={token}{sep}{other}");
        let line = redact::redact(&raw);
        prop_assert!(!line.contains(&token), "{line}");
        prop_assert!(line.contains(&format!("{spelt}=REDACTED")), "{line}");
    }

    #[test]
    fn any_duration_that_parses_can_be_added_to_now(
        key in prop::sample::select(vec![
            "timeouts.tls_handshake", "timeouts.request_header", "timeouts.request_body_idle",
            "timeouts.keep_alive", "timeouts.upstream_connect", "timeouts.upstream_response",
            "timeouts.hub_idle", "timeouts.drain", "timeouts.send_idle", "tls.watch_interval",
        ]),
        n in prop_oneof![any::<u64>(), 0..100_000u64, Just(u64::MAX), Just(u64::MAX / 1000)],
        unit in prop::sample::select(vec!["ms", "s", "m", "h", "d"]),
    ) {
        let value = format!("{n}{unit}");
        if let Ok(d) = parse_duration(&value) {
            prop_assert!(std::time::Instant::now().checked_add(d).is_some(), "{value}");
            let _ = tokio::time::Instant::now() + d;
        }
        let (table, k) = key.split_once('.').unwrap();
        if let Ok(c) = vaultgate::Config::parse(Path::new("proxy.toml"), &format!("[{table}]\n{k} = \"{value}\"\n")) {
            let t = &c.timeouts;
            for d in [t.tls_handshake, t.request_header, t.request_body_idle, t.keep_alive, t.upstream_connect,
                      t.upstream_response, t.hub_idle, t.drain, t.send_idle, c.tls.watch_interval] {
                // What the server does with them: deadlines from now, and
                // hyper's idle and ping timers (a deadline per interval).
                let now = std::time::Instant::now();
                prop_assert!(now.checked_add(d).is_some());
                let _ = tokio::time::Instant::now() + d + d;
            }
        }
    }

    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,200}") {
        let _ = vaultgate::Config::parse(Path::new("proxy.toml"), &text);
    }

    #[test]
    fn config_values_never_panic(
        key in prop::sample::select(vec!["listen", "upstream", "hub_paths", "timeouts.drain", "limits.max_request_body",
            "limits.max_connections", "client_ip.trusted_proxies", "tls.server_names", "log.level"]),
        value in prop_oneof!["\"\\PC{0,30}\"", "-?[0-9]{1,25}", "\\[\"\\PC{0,20}\"\\]", "true"],
    ) {
        let text = match key.split_once('.') {
            Some((table, k)) => format!("[{table}]\n{k} = {value}\n"),
            None => format!("{key} = {value}\n"),
        };
        if let Err(e) = vaultgate::Config::parse(Path::new("proxy.toml"), &text) {
            prop_assert!(!e.fix.is_empty(), "every error says what to write: {e}");
        }
    }

    #[test]
    fn host_validation_never_panics(host in "\\PC{0,40}", target in "/[a-z]{0,5}|https?://\\PC{0,20}/") {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&host) { h.insert("host", v); }
        if let Ok(uri) = target.parse::<http::Uri>() {
            if let Ok(v) = host::request_host(&uri, &h) {
                prop_assert!(!v.as_bytes().contains(&b'@'));
            }
        }
    }
}
