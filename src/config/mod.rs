//! `proxy.toml`: the file format (private `Raw*` types), its defaults, and the
//! validated [`Config`] that the rest of vaultgate sees. Every error names the
//! file, the line, the key and what to write instead.

mod error;
mod raw;
mod sections;
mod tls;
mod types;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::http::access;
use crate::http::client_ip;
pub use error::ConfigError;
use error::{from_toml_error, Ctx};
use raw::RawConfig;
use sections::{
    access_rules, access_settings, client_ip_policy, limits, listen_of, login_guard, proxy_protocol_from,
    timeouts,
};
use tls::tls_config;
pub use types::*;
pub use values::parse_duration;
use values::parse_upstream;

/// The validated configuration. Nothing past this module sees raw TOML.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from (used in log lines).
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub upstream: Upstream,
    /// Paths on which a WebSocket upgrade is carried through to the upstream.
    pub hub_paths: Vec<String>,
    /// Offer WebSockets over HTTP/2 (RFC 8441 extended CONNECT).
    pub http2_websockets: bool,
    pub tls: TlsConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub client_ip: client_ip::Policy,
    pub access: Vec<access::Rule>,
    /// `[proxy_protocol] from`: connections from these networks must begin
    /// with a PROXY protocol header (v1 or v2), whose source address is then
    /// the connection's client; connections from anywhere else never may.
    pub proxy_protocol: Vec<client_ip::Cidr>,
    /// The plain-HTTP listener that answers everything with a 301 to https.
    pub redirect: Option<SocketAddr>,
    /// Where `/metrics` (Prometheus) and `/healthz` are served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// A tracing filter such as `info` or `vaultgate=debug`.
    pub log_level: String,
    pub access_log: AccessDestination,
    pub access_format: AccessFormat,
    /// `[login_guard]`: bans for password guessers.
    pub login_guard: LoginGuard,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            problem: format!("cannot read the file: {e}"),
            fix: "pass the path of your proxy.toml with --config PATH".into(),
        })?;
        Config::parse(path, &text)
    }

    /// Validates configuration text; `path` is used in errors and to resolve
    /// relative certificate paths (relative to the file's directory).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| from_toml_error(path, text, &e))?;
        let ctx = Ctx { path, text };
        let base = path.parent().unwrap_or(Path::new(""));

        let listen = match &raw.listen {
            None => DEFAULT_LISTEN.parse().expect("default listen address parses"),
            Some(v) => v.get_ref().parse::<SocketAddr>().map_err(|_| {
                ctx.err(
                    v.span(),
                    "listen",
                    format!("`{}` is not an IP address with a port", v.get_ref()),
                    "write an address and port, e.g. listen = \"0.0.0.0:443\" or \"[::]:443\"",
                )
            })?,
        };

        let upstream = match &raw.upstream {
            None => parse_upstream(DEFAULT_UPSTREAM).expect("default upstream parses"),
            Some(v) => parse_upstream(v.get_ref()).map_err(|problem| {
                ctx.err(
                    v.span(),
                    "upstream",
                    problem,
                    "write the plain-HTTP address Vaultwarden listens on, e.g. upstream = \"http://127.0.0.1:8000\"",
                )
            })?,
        };

        let hub_paths = match &raw.hub_paths {
            None => DEFAULT_HUB_PATHS.iter().map(|s| s.to_string()).collect(),
            Some(v) => {
                for p in v.get_ref() {
                    let canonical = crate::http::path::normalize(p).map(|n| n == *p).unwrap_or(false);
                    if !canonical || p.contains(['?', '#', ' ']) || p.len() < 2 {
                        return Err(ctx.err(
                            v.span(),
                            "hub_paths",
                            format!("`{p}` is not a plain absolute path"),
                            "list paths such as \"/notifications/hub\" (with a sub-path install: \"/vault/notifications/hub\")",
                        ));
                    }
                }
                v.get_ref().clone()
            }
        };

        let redirect = listen_of(&ctx, raw.redirect.as_ref(), "redirect", "0.0.0.0:80")?;
        let tls = tls_config(&ctx, base, raw.tls, redirect.is_some(), listen)?;
        let timeouts = timeouts(&ctx, raw.timeouts)?;
        let limits = limits(&ctx, raw.limits)?;
        let client_ip = client_ip_policy(&ctx, raw.client_ip)?;
        let access = access_rules(&ctx, raw.access.unwrap_or_default())?;
        let proxy_protocol = proxy_protocol_from(&ctx, raw.proxy_protocol)?;
        // The bans are kept with the rest of vaultgate's state: the ACME
        // state, or the local CA's (the default); with certificate files
        // there is none unless `[login_guard] state_file` names one.
        let state_dir = match &tls.source {
            TlsSource::Acme(a) => Some(a.state_dir.as_path()),
            TlsSource::LocalCa(ca) => Some(ca.state_dir.as_path()),
            _ => None,
        };
        let login_guard = login_guard(&ctx, base, raw.login_guard, state_dir)?;

        let metrics = listen_of(&ctx, raw.metrics.as_ref(), "metrics", "127.0.0.1:9187")?;

        let (access_log, access_format) = access_settings(&ctx, base, raw.log.as_ref())?;
        let log_level = match raw.log.and_then(|l| l.level) {
            None => "info".to_string(),
            Some(v) => {
                let level = v.get_ref().trim().to_string();
                if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
                    return Err(ctx.err(
                        v.span(),
                        "log.level",
                        format!("`{level}` is not a log filter"),
                        "write one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
                    ));
                }
                level
            }
        };

        Ok(Config {
            source: path.to_path_buf(),
            listen,
            upstream,
            hub_paths,
            http2_websockets: raw.http2_websockets.unwrap_or(true),
            tls,
            timeouts,
            limits,
            client_ip,
            access,
            proxy_protocol,
            redirect,
            metrics,
            log_level,
            access_log,
            access_format,
            login_guard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/vaultgate/proxy.toml"), text)
    }

    #[test]
    fn empty_file_gives_vaultwarden_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:443");
        assert_eq!(c.upstream.authority.as_str(), "127.0.0.1:8000");
        assert_eq!(c.hub_paths, DEFAULT_HUB_PATHS);
        let TlsSource::LocalCa(ca) = &c.tls.source else { panic!("the local CA by default") };
        assert_eq!(ca.names[..3], ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(ca.state_dir, Path::new("/etc/vaultgate/local-ca"));
        assert_eq!(ca.lifetime, LOCAL_CA_LIFETIME);
        assert!(c.tls.server_names.is_empty() && !c.tls.hsts);
        assert_eq!(c.limits.max_request_body, 525_000_000);
        assert!(c.access.is_empty());
        assert_eq!(c.client_ip, client_ip::Policy::default());
        assert!(c.timeouts.hub_idle >= Duration::from_secs(60));
    }

    #[test]
    fn contract_file_from_design_parses() {
        let c = parse(
            "listen = \"0.0.0.0:443\"\nupstream = \"http://127.0.0.1:8000\"\n\n[tls]\ncert = \"/etc/le/fullchain.pem\"\nkey  = \"/etc/le/privkey.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            c.tls.source,
            TlsSource::Files { cert: "/etc/le/fullchain.pem".into(), key: "/etc/le/privkey.pem".into() }
        );
    }

    #[test]
    fn relative_cert_paths_are_relative_to_the_config_file() {
        let c = parse("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
        assert_eq!(
            c.tls.source,
            TlsSource::Files { cert: "/etc/vaultgate/c.pem".into(), key: "/etc/vaultgate/k.pem".into() }
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_suggests() {
        let e = parse("listen = \"127.0.0.1:1\"\nupstrem = \"http://x:1\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key, "upstrem");
        assert_eq!(e.fix, "did you mean `upstream`?");
        let shown = e.to_string();
        assert!(shown.starts_with("/etc/vaultgate/proxy.toml:2: `upstrem`: unknown key"), "{shown}");
    }

    #[test]
    fn unknown_key_in_a_table_is_dotted() {
        let e = parse("[timeouts]\nhub_idel = \"5m\"\n").unwrap_err();
        assert_eq!(e.key, "timeouts.hub_idel");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.fix, "did you mean `hub_idle`?");
    }

    #[test]
    fn key_in_the_wrong_table_says_where_it_belongs() {
        let e = parse("cert = \"/x.pem\"\n").unwrap_err();
        assert_eq!(e.fix, "`cert` belongs in the [tls] table");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let e = parse("\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("listen", Some(2)));
        let e = parse("upstream = \"http://127.0.0.1:8000/vault\"\n").unwrap_err();
        assert!(e.problem.contains("has a path"), "{}", e.problem);
        let e = parse("upstream = \"https://127.0.0.1:8000\"\n").unwrap_err();
        assert!(e.problem.contains("is https"));
        let e = parse("[timeouts]\ndrain = \"30 parsecs\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("timeouts.drain", Some(2)));
        let e = parse("[tls]\ncert = \"a.pem\"\n").unwrap_err();
        assert_eq!(e.key, "tls.key");
        let e = parse("hub_paths = [\"notifications/hub\"]\n").unwrap_err();
        assert_eq!(e.key, "hub_paths");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("listen = 443\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("listen", Some(1)));
        assert!(e.problem.contains("invalid type"), "{}", e.problem);
    }

    #[test]
    fn hub_idle_below_client_patience_is_refused() {
        let e = parse("[timeouts]\nhub_idle = \"15s\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("timeouts.hub_idle", Some(2)));
    }

    #[test]
    fn syntax_errors_do_not_panic_and_have_a_line() {
        for text in ["listen = ", "[tls", "= 3", "a.b.c = 1\n[[x]]", "\u{0}", "listen = \"\\u{d800}\""] {
            let e = parse(text).unwrap_err();
            assert!(!e.problem.is_empty());
        }
    }

    #[test]
    fn hardening_sections_parse() {
        let c = parse(
            "[limits]\nmax_request_body = \"1GiB\"\nmax_connections_per_ip = 10\n\n\
             [client_ip]\ntrusted_proxies = [\"10.0.0.0/8\"]\nheader = \"CF-Connecting-IP\"\n\n\
             [[access]]\npath = \"/admin\"\nallow = [\"192.168.0.0/16\"]\n\n\
             [tls]\nserver_names = [\"Vault.Example.com\"]\nhsts = true\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_request_body, 1 << 30);
        assert_eq!(c.limits.max_connections_per_ip, 10);
        assert_eq!(
            c.client_ip.source,
            client_ip::Source::Single(http::header::HeaderName::from_static("cf-connecting-ip"))
        );
        assert_eq!(c.access.len(), 1);
        assert_eq!(c.tls.server_names, ["vault.example.com"]);
        assert!(c.tls.hsts);
    }

    #[test]
    fn proxy_protocol_names_the_relays() {
        assert!(parse("").unwrap().proxy_protocol.is_empty(), "off unless asked for");
        let c = parse("[proxy_protocol]\nfrom = [\"10.0.0.0/8\", \"2001:db8::1\"]\n").unwrap();
        assert!(c.proxy_protocol[0].contains("10.1.2.3".parse().unwrap()));
        assert!(c.proxy_protocol[1].contains("2001:db8::1".parse().unwrap()));
        let e = parse("[proxy_protocol]\nfrom = [\"vps\"]\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("proxy_protocol.from", Some(2)));
        let e = parse("[proxy_protocol]\nform = []\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.fix.as_str()), ("proxy_protocol.form", "did you mean `from`?"));
    }

    #[test]
    fn hardening_errors_name_the_key() {
        let e = parse("[[access]]\npath = \"/admin\"\nallow = [\"192.168.0.0/33\"]\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("access.allow", Some(3)));
        let e = parse("[[access]]\npath = \"/admin\"\n").unwrap_err();
        assert!(e.problem.contains("`allow` is missing"), "{e}");
        assert_eq!(e.key, "access");
        let e = parse("[[access]]\npath = \"/a/../admin\"\nallow = []\n").unwrap_err();
        assert_eq!(e.key, "access.path");
        let e = parse("[[access]]\npth = \"/admin\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.fix.as_str()), ("access.pth", "did you mean `path`?"));
        let e = parse("[limits]\nmax_connections = 0\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("limits.max_connections", Some(2)));
        let e = parse("[limits]\nmax_request_body = \"525\"\n").unwrap_err();
        assert_eq!(e.key, "limits.max_request_body");
        let e = parse("[client_ip]\ntrusted_proxies = [\"lan\"]\n").unwrap_err();
        assert_eq!(e.key, "client_ip.trusted_proxies");
        let e = parse("[tls]\nserver_names = [\"10.0.0.1\"]\n").unwrap_err();
        assert_eq!(e.key, "tls.server_names");
        let e = parse("hub_paths = [\"/notifications//hub\"]\n").unwrap_err();
        assert_eq!(e.key, "hub_paths");
    }

    #[test]
    fn login_guard_is_on_by_default_and_keeps_its_bans_beside_the_acme_or_local_ca_state() {
        let g = parse("").unwrap().login_guard;
        assert!(g.enabled);
        assert_eq!(
            (g.max_failures, g.window, g.ban),
            (10, Duration::from_secs(600), Duration::from_secs(3600))
        );
        assert_eq!(g.max_ban, Duration::from_secs(7 * 86400));
        assert_eq!(
            g.state_file.as_deref(),
            Some(Path::new("/etc/vaultgate/local-ca/login_guard.json")),
            "the default local CA's state directory"
        );
        let files = parse("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap().login_guard;
        assert_eq!(files.state_file, None, "certificate files, no state file named: memory only");
        let acme =
            parse("[tls]\nacme = { domain = \"v.example.com\", state_dir = \"/var/lib/vg\" }\n").unwrap();
        assert_eq!(acme.login_guard.state_file.as_deref(), Some(Path::new("/var/lib/vg/login_guard.json")));
        let c = parse(
            "[login_guard]\nenabled = false\nmax_failures = 5\nwindow = \"1h\"\nban = \"2h\"\nmax_ban = \"1d\"\nallow = [\"192.168.0.0/16\"]\nstate_file = \"bans.json\"\n",
        )
        .unwrap()
        .login_guard;
        assert!(!c.enabled);
        assert_eq!(
            (c.max_failures, c.window, c.ban, c.max_ban),
            (5, Duration::from_secs(3600), Duration::from_secs(7200), Duration::from_secs(86400))
        );
        assert_eq!(c.allow.len(), 1);
        assert_eq!(
            c.state_file.as_deref(),
            Some(Path::new("/etc/vaultgate/bans.json")),
            "relative to the file"
        );
        // A first ban longer than the default cap is its own cap.
        assert_eq!(
            parse("[login_guard]\nban = \"30d\"\n").unwrap().login_guard.max_ban,
            Duration::from_secs(30 * 86400)
        );
    }

    #[test]
    fn login_guard_errors_name_the_key_and_the_fix() {
        for (text, key, fix) in [
            ("[login_guard]\nmax_failures = 0\n", "login_guard.max_failures", "from 1 to 1000"),
            ("[login_guard]\nwindow = \"10s\"\n", "login_guard.window", "window = \"10m\""),
            ("[login_guard]\nban = \"1x\"\n", "login_guard.ban", "ban = \"1h\""),
            (
                "[login_guard]\nban = \"2h\"\nmax_ban = \"1h\"\n",
                "login_guard.max_ban",
                "at least as long as `ban`",
            ),
            ("[login_guard]\nallow = [\"lan\"]\n", "login_guard.allow", "192.168.0.0/16"),
            ("[login_guard]\nstate_file = \"\"\n", "login_guard.state_file", "state_file = "),
            ("[login_guard]\nmax_failure = 3\n", "login_guard.max_failure", "max_failures"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key, key, "{text}");
            assert!(e.fix.contains(fix) || e.problem.contains(fix), "{text}: {e}");
            assert!(e.line.is_some(), "{text}: {e}");
        }
    }

    #[test]
    fn acme_reads_well_and_defaults_to_lets_encrypt() {
        let c =
            parse("[tls]\nacme = { domain = \"Vault.Example.com\", email = \"me@example.com\" }\n").unwrap();
        let TlsSource::Acme(a) = c.tls.source else { panic!("not acme") };
        assert_eq!(a.domain, "vault.example.com");
        assert_eq!(a.email.as_deref(), Some("me@example.com"));
        assert_eq!(a.directory, LETSENCRYPT);
        assert_eq!(a.state_dir, Path::new("/etc/vaultgate/acme"));
        assert_eq!(a.challenges, [Challenge::TlsAlpn01]);

        let c = parse(
            "[tls]\nacme = { domain = \"v.example.com\", directory = \"letsencrypt-staging\", ca = \"root.pem\", state_dir = \"/var/lib/vg\" }\n[redirect]\nlisten = \"0.0.0.0:80\"\n",
        )
        .unwrap();
        let TlsSource::Acme(a) = c.tls.source else { panic!("not acme") };
        assert_eq!(a.directory, LETSENCRYPT_STAGING);
        assert_eq!(a.ca.as_deref(), Some(Path::new("/etc/vaultgate/root.pem")));
        assert_eq!(a.state_dir, Path::new("/var/lib/vg"));
        assert_eq!(a.challenges, [Challenge::TlsAlpn01, Challenge::Http01], "both when port 80 is served");

        let c = parse("[tls.acme]\ndomain = \"v.example.com\"\nchallenge = \"http-01\"\n[redirect]\nlisten = \"0.0.0.0:80\"\n")
            .unwrap();
        let TlsSource::Acme(a) = c.tls.source else { panic!("not acme") };
        assert_eq!(a.challenges, [Challenge::Http01]);
    }

    #[test]
    fn acme_mistakes_name_the_key_and_the_fix() {
        let e = parse("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nacme = { domain = \"v.example.com\" }\n")
            .unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tls.acme", Some(4)));
        assert!(e.fix.contains("remove cert and key"), "{e}");
        for bad in ["10.0.0.1", "*.example.com", "localhost", "a b.com"] {
            let e = parse(&format!("[tls]\nacme = {{ domain = \"{bad}\" }}\n")).unwrap_err();
            assert_eq!(e.key, "tls.acme.domain", "{bad}");
        }
        let e = parse("[tls]\nacme = { domain = \"v.example.com\", email = \"nobody\" }\n").unwrap_err();
        assert_eq!(e.key, "tls.acme.email");
        let e = parse("[tls]\nacme = { domain = \"v.example.com\", directory = \"http://ca/dir\" }\n")
            .unwrap_err();
        assert_eq!(e.key, "tls.acme.directory");
        let e = parse("[tls]\nacme = { domain = \"v.example.com\", challenge = \"http-01\" }\n").unwrap_err();
        assert_eq!(e.key, "tls.acme.challenge");
        assert!(e.fix.contains("[redirect]"), "{e}");
        let e = parse("[tls]\nacme = { domain = \"v.example.com\", challenge = \"dns-01\" }\n").unwrap_err();
        assert_eq!(e.key, "tls.acme.challenge");
        let e = parse("[tls]\nacme = { domian = \"v.example.com\" }\n").unwrap_err();
        assert!(e.problem.contains("domian"), "{e}");
        assert_eq!(
            (e.key.as_str(), e.fix.as_str()),
            ("tls.acme.domian", "did you mean `domain`?"),
            "inline tables too"
        );
    }

    #[test]
    fn workers_default_to_one_per_core_and_are_bounded() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(parse("").unwrap().limits.workers, cores);
        assert_eq!(parse("[limits]\nworkers = 4\n").unwrap().limits.workers, 4);
        for bad in ["0", "-1", "100000"] {
            let e = parse(&format!("[limits]\nworkers = {bad}\n")).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), ("limits.workers", Some(2)), "{bad}");
        }
    }

    #[test]
    fn every_duration_key_has_a_maximum_named_in_its_error() {
        let mut keys: Vec<(String, String)> = sections::TIMEOUT_BOUNDS
            .iter()
            .map(|(name, b)| (format!("[timeouts]\n{name}"), values::show_duration(b.max)))
            .collect();
        keys.push(("[tls]\nwatch_interval".into(), "1d".into()));
        for (key, max) in keys {
            for huge in ["18446744073709551615s", "366d", "99999999999999999999999h"] {
                let e = parse(&format!("# a comment\n{key} = \"{huge}\"\n")).unwrap_err();
                let dotted = key.trim_start_matches('[').replace("]\n", ".");
                assert_eq!((e.key.as_str(), e.line), (dotted.as_str(), Some(3)), "{e}");
                assert!(e.problem.contains(&format!("longer than the maximum of {max}")), "{e}");
                assert!(e.fix.contains(&format!("to {max}")), "the key's own maximum: {e}");
                assert!(e.to_string().starts_with("/etc/vaultgate/proxy.toml:3: "), "{e}");
            }
            // One step past the key's maximum is refused, the maximum itself is not.
            let at = parse(&format!("{key} = \"{max}\"\n"));
            assert!(at.is_ok(), "{key} = {max}: {:?}", at.err());
            let past = values::parse_duration(&max).unwrap() + Duration::from_millis(1);
            let e = parse(&format!("{key} = \"{}ms\"\n", past.as_millis())).unwrap_err();
            assert!(e.problem.contains(&format!("maximum of {max}")), "{e}");
        }
    }

    #[test]
    fn durations_below_their_minimum_are_refused() {
        for (text, min) in [
            ("[timeouts]\ntls_handshake = \"10ms\"", "100ms"),
            ("[timeouts]\nkeep_alive = \"99ms\"", "100ms"),
            ("[timeouts]\nupstream_connect = \"5ms\"", "10ms"),
            ("[timeouts]\nhub_idle = \"29s\"", "30s"),
            ("[tls]\nwatch_interval = \"10ms\"", "100ms"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.problem.contains(&format!("shorter than the minimum of {min}")), "{e}");
            assert_eq!(e.line, Some(2));
        }
        assert_eq!(parse("[timeouts]\ndrain = \"1ms\"\n").unwrap().timeouts.drain, Duration::from_millis(1));
    }

    #[test]
    fn every_size_and_count_is_bounded_with_the_bound_in_the_error() {
        for (text, key, bound) in [
            ("max_request_body = \"65GiB\"", "limits.max_request_body", "maximum of 64GiB"),
            ("max_request_body = \"999B\"", "limits.max_request_body", "minimum of 1KB"),
            ("max_request_body = \"99999999999GiB\"", "limits.max_request_body", "maximum of 64GiB"),
            ("min_upload_rate = \"2GiB\"", "limits.min_upload_rate", "maximum of 1GiB"),
            ("max_header_line = \"65KiB\"", "limits.max_header_line", "maximum of 64KiB"),
            ("max_header_line = \"255B\"", "limits.max_header_line", "minimum of 256B"),
            ("max_connections = 9223372036854775807", "limits.max_connections", "maximum of 1000000"),
            ("max_connections = 0", "limits.max_connections", "minimum of 1"),
            ("max_connections_per_ip = -1", "limits.max_connections_per_ip", "minimum of 1"),
            ("max_connections_per_ip = 1000001", "limits.max_connections_per_ip", "maximum of 1000000"),
            ("max_hubs_per_ip = 100001", "limits.max_hubs_per_ip", "maximum of 100000"),
            ("max_upstream_per_connection = 10001", "limits.max_upstream_per_connection", "maximum of 10000"),
            ("max_upstream_per_ip = 2305843009213693952", "limits.max_upstream_per_ip", "maximum of 1000000"),
            ("workers = 1025", "limits.workers", "maximum of 1024"),
            ("ipv6_prefix = 129", "limits.ipv6_prefix", "maximum of 128"),
            ("ipv6_prefix = 16", "limits.ipv6_prefix", "minimum of 32"),
        ] {
            let e = parse(&format!("[limits]\n{text}\n")).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), (key, Some(2)), "{e}");
            assert!(e.problem.contains(bound), "{e}");
            assert!(e.fix.starts_with("write a "), "{e}");
        }
        let c = parse(
            "[limits]\nmax_request_body = \"64GiB\"\nmin_upload_rate = \"0B\"\nmax_connections = 1000000\nipv6_prefix = 128\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_request_body, 64 << 30);
        assert_eq!(c.limits.min_upload_rate, 0);
        assert_eq!(c.limits.ipv6_prefix, 128);
    }
}
