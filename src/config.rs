//! `proxy.toml`: the file format (private `Raw*` types), its defaults, and the
//! validated [`Config`] that the rest of vaultgate sees. Every error names the
//! file, the line, the key and what to write instead.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::Deserialize;
use toml::Spanned;

/// The validated configuration. Nothing past this module sees raw TOML.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from (used in log lines).
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub upstream: Upstream,
    /// Paths on which a WebSocket upgrade is carried through to the upstream.
    pub hub_paths: Vec<String>,
    pub tls: TlsSource,
    pub timeouts: Timeouts,
    /// A tracing filter such as `info` or `vaultgate=debug`.
    pub log_level: String,
}

/// The Vaultwarden server vaultgate forwards to (plain HTTP/1.1).
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` of the upstream, as written (port made explicit).
    pub authority: Authority,
    /// The URL as the user wrote it, for error pages and logs.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: a full chain and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// No files configured: a self-signed certificate for localhost is made at start.
    SelfSigned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub tls_handshake: Duration,
    pub request_header: Duration,
    pub upstream_connect: Duration,
    /// How long the upstream may take to start answering once the request has been sent.
    pub upstream_response: Duration,
    /// A hub WebSocket with no traffic either way for this long is closed.
    pub hub_idle: Duration,
    /// How long shutdown waits for in-flight requests and hubs.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tls_handshake: Duration::from_secs(10),
            request_header: Duration::from_secs(30),
            upstream_connect: Duration::from_secs(5),
            upstream_response: Duration::from_secs(100),
            // Vaultwarden pings every 15 s; nginx's 60 s default is what kills hubs.
            hub_idle: Duration::from_secs(10 * 60),
            drain: Duration::from_secs(30),
        }
    }
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:443";
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:8000";
pub const DEFAULT_HUB_PATHS: [&str; 2] = ["/notifications/hub", "/notifications/anonymous-hub"];

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
                    if !p.starts_with('/') || p.contains(['?', '#', ' ']) || p.len() < 2 {
                        return Err(ctx.err(
                            v.span(),
                            "hub_paths",
                            format!("`{p}` is not an absolute path without query"),
                            "list paths such as \"/notifications/hub\" (with a sub-path install: \"/vault/notifications/hub\")",
                        ));
                    }
                }
                v.get_ref().clone()
            }
        };

        let tls = match raw.tls {
            None => TlsSource::SelfSigned,
            Some(t) => match (t.cert, t.key) {
                (None, None) => TlsSource::SelfSigned,
                (Some(cert), Some(key)) => TlsSource::Files {
                    cert: base.join(cert.get_ref()),
                    key: base.join(key.get_ref()),
                },
                (Some(cert), None) => {
                    return Err(ctx.err(
                        cert.span(),
                        "tls.key",
                        "`cert` is set but `key` is missing".into(),
                        "add key = \"/path/to/privkey.pem\" to [tls], or remove cert to use a self-signed certificate",
                    ))
                }
                (None, Some(key)) => {
                    return Err(ctx.err(
                        key.span(),
                        "tls.cert",
                        "`key` is set but `cert` is missing".into(),
                        "add cert = \"/path/to/fullchain.pem\" to [tls], or remove key to use a self-signed certificate",
                    ))
                }
            },
        };

        let mut timeouts = Timeouts::default();
        if let Some(t) = raw.timeouts {
            let fields = [
                (t.tls_handshake, &mut timeouts.tls_handshake, "tls_handshake"),
                (t.request_header, &mut timeouts.request_header, "request_header"),
                (t.upstream_connect, &mut timeouts.upstream_connect, "upstream_connect"),
                (t.upstream_response, &mut timeouts.upstream_response, "upstream_response"),
                (t.hub_idle, &mut timeouts.hub_idle, "hub_idle"),
                (t.drain, &mut timeouts.drain, "drain"),
            ];
            for (value, slot, name) in fields {
                if let Some(v) = value {
                    *slot = parse_duration(v.get_ref()).map_err(|problem| {
                        ctx.err(
                            v.span(),
                            &format!("timeouts.{name}"),
                            problem,
                            "write a duration such as \"500ms\", \"30s\", \"10m\" or \"1h\"",
                        )
                    })?;
                }
            }
            if timeouts.hub_idle < Duration::from_secs(30) {
                return Err(ctx.err(
                    0..0,
                    "timeouts.hub_idle",
                    format!(
                        "{:?} is shorter than the 30 s after which Bitwarden clients give up; healthy hubs would be cut",
                        timeouts.hub_idle
                    ),
                    "leave it unset (10m) or write at least \"60s\"",
                ));
            }
        }

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

        Ok(Config { source: path.to_path_buf(), listen, upstream, hub_paths, tls, timeouts, log_level })
    }
}

/// A configuration error, printed as `FILE:LINE: KEY: PROBLEM` and a fix.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The dotted key, e.g. `timeouts.hub_idle`; empty for whole-file problems.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}\n  fix: {}", self.problem, self.fix)
    }
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, key: &str, problem: String, fix: &str) -> ConfigError {
        let line = if span.is_empty() && span.start == 0 {
            line_of_key(self.text, key)
        } else {
            Some(line_of(self.text, span.start))
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            key: key.to_string(),
            problem,
            fix: fix.to_string(),
        }
    }
}

/// Every key the file format knows, with the table it belongs in ("" = top level).
const KNOWN_KEYS: &[(&str, &str)] = &[
    ("", "listen"),
    ("", "upstream"),
    ("", "hub_paths"),
    ("", "tls"),
    ("", "timeouts"),
    ("", "log"),
    ("tls", "cert"),
    ("tls", "key"),
    ("timeouts", "tls_handshake"),
    ("timeouts", "request_header"),
    ("timeouts", "upstream_connect"),
    ("timeouts", "upstream_response"),
    ("timeouts", "hub_idle"),
    ("timeouts", "drain"),
    ("log", "level"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    hub_paths: Option<Spanned<Vec<String>>>,
    tls: Option<RawTls>,
    timeouts: Option<RawTimeouts>,
    log: Option<RawLog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tls_handshake: Option<Spanned<String>>,
    request_header: Option<Spanned<String>>,
    upstream_connect: Option<Spanned<String>>,
    upstream_response: Option<Spanned<String>>,
    hub_idle: Option<Spanned<String>>,
    drain: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
}

fn from_toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let line = span.as_ref().map(|s| line_of(text, s.start));
    let (table, key) = span.as_ref().map(|s| key_at(text, s.start)).unwrap_or_default();
    let dotted =
        if table.is_empty() || key.is_empty() { format!("{table}{key}") } else { format!("{table}.{key}") };
    let message = e.message().trim().to_string();
    let (problem, fix) = if let Some(unknown) = unknown_field(&message) {
        (format!("unknown key `{unknown}`"), suggest_key(&table, &unknown))
    } else if message.starts_with("invalid type") {
        (
            message.clone(),
            "durations, sizes, addresses and paths are strings in quotes, e.g. hub_idle = \"10m\"".into(),
        )
    } else {
        (message.clone(), "check the TOML syntax on that line: key = \"value\", tables as [name]".into())
    };
    ConfigError { file: path.to_path_buf(), line, key: dotted, problem, fix }
}

/// Extracts the name from serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// The "did you mean" part of an unknown-key error.
fn suggest_key(table: &str, unknown: &str) -> String {
    let here: Vec<&str> = KNOWN_KEYS.iter().filter(|(t, _)| *t == table).map(|(_, k)| *k).collect();
    let best = here.iter().map(|k| (edit_distance(&unknown.to_ascii_lowercase(), k), *k)).min();
    if let Some((d, k)) = best {
        if d <= 2.max(unknown.len() / 3) {
            return format!("did you mean `{k}`?");
        }
    }
    if let Some((t, k)) = KNOWN_KEYS.iter().find(|(t, k)| *k == unknown && *t != table) {
        return if t.is_empty() {
            format!("`{k}` belongs at the top of the file, before any [table]")
        } else {
            format!("`{k}` belongs in the [{t}] table")
        };
    }
    let place = if table.is_empty() { "at the top level".to_string() } else { format!("in [{table}]") };
    format!("remove it; the keys {place} are: {}", here.join(", "))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line on which a dotted key (e.g. `timeouts.hub_idle`) is written, if any.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix('[') {
            current = name.trim_end_matches(']').trim().to_string();
        } else if current == table && l.split('=').next().map(str::trim) == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

/// The table and key written at a byte offset: the enclosing `[table]` header
/// and the text before `=` on that line.
fn key_at(text: &str, offset: usize) -> (String, String) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    let key = match line.split_once('=') {
        Some((k, _)) if !line.trim_start().starts_with('[') => k.trim().trim_matches('"').to_string(),
        _ => String::new(),
    };
    let table = before[..line_start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').map(|t| t.trim_end_matches(']').trim().to_string()))
        .unwrap_or_default();
    (table, key)
}

/// Parses `"500ms"`, `"30s"`, `"10m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` does not start with a whole number"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "" => return Err(format!("`{s}` has no unit")),
        u => return Err(format!("`{u}` is not a unit of time (ms, s, m, h)")),
    };
    if d.is_zero() {
        return Err("a timeout of zero would cut every connection".into());
    }
    Ok(d)
}

/// Parses the upstream URL: plain `http://host:port`, no path, no credentials.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL"))?;
    match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTP => {}
        Some(scheme) if *scheme == Scheme::HTTPS => {
            return Err(format!(
                "`{s}` is https; vaultgate speaks plain HTTP to a Vaultwarden on the same host or network"
            ))
        }
        _ => return Err(format!("`{s}` has no http:// scheme")),
    }
    let authority = uri.authority().ok_or_else(|| format!("`{s}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{s}` contains credentials"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{s}` has a path; vaultgate forwards every path unchanged, so the upstream is only scheme, host and port"
        ));
    }
    let port = authority.port_u16().unwrap_or(80);
    let authority: Authority =
        format!("{}:{port}", authority.host()).parse().map_err(|_| format!("`{s}` has an invalid host"))?;
    Ok(Upstream { authority, url: s.trim_end_matches('/').to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/vaultgate/proxy.toml"), text)
    }

    #[test]
    fn empty_file_gives_vaultwarden_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:443");
        assert_eq!(c.upstream.authority.as_str(), "127.0.0.1:8000");
        assert_eq!(c.hub_paths, DEFAULT_HUB_PATHS);
        assert_eq!(c.tls, TlsSource::SelfSigned);
        assert!(c.timeouts.hub_idle >= Duration::from_secs(60));
    }

    #[test]
    fn contract_file_from_design_parses() {
        let c = parse(
            "listen = \"0.0.0.0:443\"\nupstream = \"http://127.0.0.1:8000\"\n\n[tls]\ncert = \"/etc/le/fullchain.pem\"\nkey  = \"/etc/le/privkey.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            c.tls,
            TlsSource::Files { cert: "/etc/le/fullchain.pem".into(), key: "/etc/le/privkey.pem".into() }
        );
    }

    #[test]
    fn relative_cert_paths_are_relative_to_the_config_file() {
        let c = parse("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
        assert_eq!(
            c.tls,
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
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn upstream_port_defaults_to_80() {
        assert_eq!(parse_upstream("http://vaultwarden").unwrap().authority.as_str(), "vaultwarden:80");
        assert!(parse_upstream("http://u:p@host:1").is_err());
        assert!(parse_upstream("127.0.0.1:8000").is_err());
    }

    #[test]
    fn syntax_errors_do_not_panic_and_have_a_line() {
        for text in ["listen = ", "[tls", "= 3", "a.b.c = 1\n[[x]]", "\u{0}", "listen = \"\\u{d800}\""] {
            let e = parse(text).unwrap_err();
            assert!(!e.problem.is_empty());
        }
    }
}
