//! The optional tables of proxy.toml, each validated into its typed part of
//! `Config`: timeouts, limits, client IP, access lists, the extra
//! listeners, the access log (`[tls]` is `tls.rs`'s).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::header::HeaderName;
use toml::Spanned;

use super::error::{ConfigError, Ctx};
use super::raw::{
    RawAccess, RawClientIp, RawLimits, RawListen, RawLog, RawLoginGuard, RawProxyProtocol, RawTimeouts,
};
use super::types::{AccessDestination, AccessFormat, Limits, LoginGuard, Timeouts, LOGIN_GUARD_STATE};
use super::values::{parse_duration, parse_size, show_duration, show_size};
use crate::http::access;
use crate::http::client_ip::{self, Cidr};

pub(super) fn access_settings(
    ctx: &Ctx,
    base: &Path,
    raw: Option<&RawLog>,
) -> Result<(AccessDestination, AccessFormat), ConfigError> {
    let destination = match raw.and_then(|l| l.access.as_ref()) {
        None => AccessDestination::Log,
        Some(v) => match v.get_ref().as_str() {
            "log" => AccessDestination::Log,
            "stderr" => AccessDestination::Stderr,
            "off" => AccessDestination::Off,
            "" => return Err(ctx.err(
                v.span(),
                "log.access",
                "an empty destination".into(),
                "write \"log\", \"stderr\", \"off\" or a file path such as \"/var/log/vaultgate/access.log\"",
            )),
            path => AccessDestination::File(base.join(path)),
        },
    };
    let format = match raw.and_then(|l| l.access_format.as_ref()) {
        None => AccessFormat::Text,
        Some(v) => match v.get_ref().as_str() {
            "text" => AccessFormat::Text,
            "json" => AccessFormat::Json,
            other => {
                return Err(ctx.err(
                    v.span(),
                    "log.access_format",
                    format!("`{other}` is not a format"),
                    "write \"text\" (combined-log-like) or \"json\"",
                ))
            }
        },
    };
    Ok((destination, format))
}

pub(super) fn listen_of(
    ctx: &Ctx,
    raw: Option<&RawListen>,
    table: &str,
    example: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(r) = raw else { return Ok(None) };
    r.listen.get_ref().parse::<SocketAddr>().map(Some).map_err(|_| {
        ctx.err(
            r.listen.span(),
            &format!("{table}.listen"),
            format!("`{}` is not an IP address with a port", r.listen.get_ref()),
            &format!("write e.g. listen = \"{example}\" under [{table}]"),
        )
    })
}

/// The smallest and largest value a duration key accepts, and why the
/// smallest (shown when a value is below it).
pub(super) struct DurationBounds {
    pub min: Duration,
    pub max: Duration,
    pub why_min: &'static str,
}

const fn bounds(min_ms: u64, max_secs: u64, why_min: &'static str) -> DurationBounds {
    DurationBounds { min: Duration::from_millis(min_ms), max: Duration::from_secs(max_secs), why_min }
}

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86400;

/// `tls.watch_interval`: a file check more often than ten times a second is
/// only work; less often than daily and a renewal is missed for days.
pub(super) const WATCH_INTERVAL_BOUNDS: DurationBounds = bounds(100, DAY, "");

/// Each `[timeouts]` key: name, bounds. The maxima keep every deadline
/// (`Instant::now()` + timeout) far from overflowing and still catch a
/// typo'd unit; the minima refuse values so small that nothing could be
/// served (`"10ms"` for `"10m"`), and for `hub_idle`, ones that cut healthy hubs.
pub(super) const TIMEOUT_BOUNDS: [(&str, DurationBounds); 9] = [
    ("tls_handshake", bounds(100, 5 * MINUTE, "")),
    ("request_header", bounds(100, HOUR, "")),
    ("request_body_idle", bounds(100, HOUR, "")),
    ("keep_alive", bounds(100, DAY, "")),
    ("upstream_connect", bounds(10, 10 * MINUTE, "")),
    ("upstream_response", bounds(100, DAY, "")),
    (
        "hub_idle",
        bounds(
            30_000,
            7 * DAY,
            "; Bitwarden clients give up after 30 s without traffic, so healthy hubs would be cut",
        ),
    ),
    ("drain", bounds(1, HOUR, "")),
    ("send_idle", bounds(100, DAY, "")),
];

/// A duration key's value, parsed and within `b`; errors name the key, the
/// bound and what to write.
pub(super) fn bounded_duration(
    ctx: &Ctx,
    v: &Spanned<String>,
    key: &str,
    b: &DurationBounds,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let (min, max) = (show_duration(b.min), show_duration(b.max));
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let fix = format!(
        "write a duration from {min} to {max}, e.g. {leaf} = \"{}\" (the default)",
        show_duration(default)
    );
    let too_long = || {
        let problem = format!("`{}` is longer than the maximum of {max}", v.get_ref().trim());
        ctx.err(v.span(), key, problem, &fix)
    };
    let d = parse_duration(v.get_ref()).map_err(|problem| {
        if problem.contains("longer than the maximum") {
            too_long()
        } else {
            ctx.err(v.span(), key, problem, &fix)
        }
    })?;
    if d > b.max {
        return Err(too_long());
    }
    if d < b.min {
        return Err(ctx.err(
            v.span(),
            key,
            format!("`{}` is shorter than the minimum of {min}{}", v.get_ref().trim(), b.why_min),
            &fix,
        ));
    }
    Ok(d)
}

pub(super) fn timeouts(ctx: &Ctx, raw: Option<RawTimeouts>) -> Result<Timeouts, ConfigError> {
    let mut timeouts = Timeouts::default();
    let defaults = Timeouts::default();
    let Some(t) = raw else { return Ok(timeouts) };
    let fields = [
        (t.tls_handshake, &mut timeouts.tls_handshake, defaults.tls_handshake),
        (t.request_header, &mut timeouts.request_header, defaults.request_header),
        (t.request_body_idle, &mut timeouts.request_body_idle, defaults.request_body_idle),
        (t.keep_alive, &mut timeouts.keep_alive, defaults.keep_alive),
        (t.upstream_connect, &mut timeouts.upstream_connect, defaults.upstream_connect),
        (t.upstream_response, &mut timeouts.upstream_response, defaults.upstream_response),
        (t.hub_idle, &mut timeouts.hub_idle, defaults.hub_idle),
        (t.drain, &mut timeouts.drain, defaults.drain),
        (t.send_idle, &mut timeouts.send_idle, defaults.send_idle),
    ];
    for ((value, slot, default), (name, b)) in fields.into_iter().zip(&TIMEOUT_BOUNDS) {
        if let Some(v) = value {
            *slot = bounded_duration(ctx, &v, &format!("timeouts.{name}"), b, default)?;
        }
    }
    Ok(timeouts)
}

/// `[limits]` sizes: name, smallest, largest (bytes).
pub(super) const SIZE_BOUNDS: [(&str, u64, u64); 3] = [
    // Below 1 KB not even a login fits; above 64 GiB is a typo'd unit
    // (Vaultwarden's own limit is 525 MB).
    ("max_request_body", 1000, 64 << 30),
    // 0 turns the check off; above 1 GiB/s would cut honest uploads.
    ("min_upload_rate", 0, 1 << 30),
    // Bitwarden's bearer tokens are 1-2 KiB; hyper's whole head is 64 KiB.
    ("max_header_line", 256, 64 << 10),
];

/// `[limits]` counts: name, smallest, largest, an example.
pub(super) const COUNT_BOUNDS: [(&str, i64, i64, &str); 7] = [
    ("max_connections", 1, 1_000_000, "4096"),
    ("max_connections_per_ip", 1, 1_000_000, "256"),
    ("max_hubs_per_ip", 1, 100_000, "32"),
    ("max_upstream_per_connection", 1, 10_000, "32"),
    ("max_upstream_per_ip", 1, 1_000_000, "128"),
    ("workers", 1, 1024, "2 (the default is one per core)"),
    (
        "ipv6_prefix",
        32,
        128,
        "64 (one subscriber's network, the default), 56 or 48; 128 counts every address alone",
    ),
];

fn bounded_size(ctx: &Ctx, v: &Spanned<String>, name: &str, example: &str) -> Result<u64, ConfigError> {
    let (_, min, max) =
        SIZE_BOUNDS.iter().find(|(n, _, _)| *n == name).copied().unwrap_or((name, 0, u64::MAX));
    let key = format!("limits.{name}");
    let fix =
        format!("write a size from {} to {}, e.g. {name} = \"{example}\"", show_size(min), show_size(max));
    let too_large = || {
        let problem = format!("`{}` is more than the maximum of {}", v.get_ref().trim(), show_size(max));
        ctx.err(v.span(), &key, problem, &fix)
    };
    let n = parse_size(v.get_ref()).map_err(|problem| {
        if problem.contains("too large") {
            too_large()
        } else {
            ctx.err(v.span(), &key, problem, &fix)
        }
    })?;
    if n > max {
        return Err(too_large());
    }
    if n < min {
        let problem = format!("`{}` is less than the minimum of {}", v.get_ref().trim(), show_size(min));
        return Err(ctx.err(v.span(), &key, problem, &fix));
    }
    Ok(n)
}

fn bounded_count(ctx: &Ctx, v: &Spanned<i64>, name: &str) -> Result<i64, ConfigError> {
    let (_, min, max, example) =
        COUNT_BOUNDS.iter().find(|(n, ..)| *n == name).copied().unwrap_or((name, 1, i64::MAX, "1"));
    let n = *v.get_ref();
    if (min..=max).contains(&n) {
        return Ok(n);
    }
    let problem = if n > max {
        format!("{n} is more than the maximum of {max}")
    } else {
        format!("{n} is less than the minimum of {min}")
    };
    let fix = format!("write a whole number from {min} to {max}, e.g. {name} = {example}");
    Err(ctx.err(v.span(), &format!("limits.{name}"), problem, &fix))
}

pub(super) fn limits(ctx: &Ctx, raw: Option<RawLimits>) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    let Some(l) = raw else { return Ok(limits) };
    if let Some(v) = l.max_request_body {
        limits.max_request_body = bounded_size(ctx, &v, "max_request_body", "525MB")?;
    }
    if let Some(v) = l.min_upload_rate {
        limits.min_upload_rate = bounded_size(ctx, &v, "min_upload_rate", "1KiB")?;
    }
    if let Some(v) = l.max_header_line {
        // At most 64 KiB: fits any usize.
        limits.max_header_line = bounded_size(ctx, &v, "max_header_line", "8KiB")? as usize;
    }
    if let Some(v) = l.ipv6_prefix {
        // 32..=128: fits a u8.
        limits.ipv6_prefix = bounded_count(ctx, &v, "ipv6_prefix")? as u8;
    }
    for (value, slot, name) in [
        (l.max_connections, &mut limits.max_connections, "max_connections"),
        (l.max_connections_per_ip, &mut limits.max_connections_per_ip, "max_connections_per_ip"),
        (l.max_hubs_per_ip, &mut limits.max_hubs_per_ip, "max_hubs_per_ip"),
        (
            l.max_upstream_per_connection,
            &mut limits.max_upstream_per_connection,
            "max_upstream_per_connection",
        ),
        (l.max_upstream_per_ip, &mut limits.max_upstream_per_ip, "max_upstream_per_ip"),
        (l.workers, &mut limits.workers, "workers"),
    ] {
        if let Some(v) = value {
            // At most 1,000,000: fits any usize.
            *slot = bounded_count(ctx, &v, name)? as usize;
        }
    }
    Ok(limits)
}

pub(super) fn cidrs(ctx: &Ctx, list: &Spanned<Vec<String>>, key: &str) -> Result<Vec<Cidr>, ConfigError> {
    list.get_ref()
        .iter()
        .map(|c| {
            c.parse::<Cidr>().map_err(|problem| {
                ctx.err(
                    list.span(),
                    key,
                    problem,
                    "write addresses or networks, e.g. [\"192.168.0.0/16\", \"10.0.0.0/8\", \"::1\"]",
                )
            })
        })
        .collect()
}

pub(super) fn client_ip_policy(
    ctx: &Ctx,
    raw: Option<RawClientIp>,
) -> Result<client_ip::Policy, ConfigError> {
    let mut policy = client_ip::Policy::default();
    let Some(c) = raw else { return Ok(policy) };
    if let Some(list) = &c.trusted_proxies {
        policy.trusted_proxies = cidrs(ctx, list, "client_ip.trusted_proxies")?;
    }
    if let Some(h) = &c.header {
        policy.source = match HeaderName::from_bytes(h.get_ref().trim().as_bytes()) {
            Ok(name) if name == crate::http::names::X_FORWARDED_FOR => client_ip::Source::XForwardedFor,
            Ok(name) => client_ip::Source::Single(name),
            Err(_) => {
                return Err(ctx.err(
                    h.span(),
                    "client_ip.header",
                    format!("`{}` is not a header name", h.get_ref()),
                    "write \"X-Forwarded-For\" or a header such as \"CF-Connecting-IP\"",
                ))
            }
        };
    }
    Ok(policy)
}

/// `[proxy_protocol] from`: the relays whose connections start with a PROXY
/// header. Without the table (or with an empty list) no connection may.
pub(super) fn proxy_protocol_from(
    ctx: &Ctx,
    raw: Option<RawProxyProtocol>,
) -> Result<Vec<Cidr>, ConfigError> {
    match raw.and_then(|p| p.from) {
        None => Ok(Vec::new()),
        Some(list) => cidrs(ctx, &list, "proxy_protocol.from"),
    }
}

pub(super) fn access_rules(ctx: &Ctx, raw: Vec<RawAccess>) -> Result<Vec<access::Rule>, ConfigError> {
    raw.iter()
        .map(|a| {
            let p = a.path.get_ref();
            let canonical = crate::http::path::normalize(p).map(|n| n == *p).unwrap_or(false);
            if !canonical || p.contains(['?', '#', ';']) {
                return Err(ctx.err(
                    a.path.span(),
                    "access.path",
                    format!("`{p}` is not a plain absolute path prefix"),
                    "write a prefix such as path = \"/admin\"",
                ));
            }
            Ok(access::Rule { prefix: p.to_ascii_lowercase(), allow: cidrs(ctx, &a.allow, "access.allow")? })
        })
        .collect()
}

/// `[login_guard]` durations. A window under a minute or a ban under one
/// would let a guesser go on almost unhindered; the maxima keep every
/// deadline far from overflowing (and catch a typo'd unit).
const GUARD_WINDOW_BOUNDS: DurationBounds = bounds(60_000, DAY, "");
const GUARD_BAN_BOUNDS: DurationBounds = bounds(60_000, 365 * DAY, "");

/// `[login_guard]`, its state file beside the ACME or local CA state (`state_dir`) unless
/// `state_file` names one.
pub(super) fn login_guard(
    ctx: &Ctx,
    base: &Path,
    raw: Option<RawLoginGuard>,
    state_dir: Option<&Path>,
) -> Result<LoginGuard, ConfigError> {
    let mut guard =
        LoginGuard { state_file: state_dir.map(|d| d.join(LOGIN_GUARD_STATE)), ..LoginGuard::default() };
    let defaults = LoginGuard::default();
    let Some(g) = raw else { return Ok(guard) };
    guard.enabled = g.enabled.unwrap_or(true);
    if let Some(v) = g.max_failures {
        let n = *v.get_ref();
        if !(1..=1000).contains(&n) {
            return Err(ctx.err(
                v.span(),
                "login_guard.max_failures",
                format!("{n} is not from 1 to 1000"),
                "write a whole number from 1 to 1000, e.g. max_failures = 10 (the default)",
            ));
        }
        // 1..=1000: fits a u32.
        guard.max_failures = n as u32;
    }
    if let Some(v) = &g.window {
        guard.window = bounded_duration(ctx, v, "login_guard.window", &GUARD_WINDOW_BOUNDS, defaults.window)?;
    }
    if let Some(v) = &g.ban {
        guard.ban = bounded_duration(ctx, v, "login_guard.ban", &GUARD_BAN_BOUNDS, defaults.ban)?;
    }
    if let Some(v) = &g.max_ban {
        guard.max_ban = bounded_duration(ctx, v, "login_guard.max_ban", &GUARD_BAN_BOUNDS, defaults.max_ban)?;
        if guard.max_ban < guard.ban {
            return Err(ctx.err(
                v.span(),
                "login_guard.max_ban",
                format!(
                    "`{}` is shorter than the first ban (`ban` = \"{}\")",
                    v.get_ref().trim(),
                    show_duration(guard.ban)
                ),
                "write a cap at least as long as `ban`, e.g. max_ban = \"7d\" (the default)",
            ));
        }
    } else if guard.max_ban < guard.ban {
        // A first ban longer than the default cap is its own cap.
        guard.max_ban = guard.ban;
    }
    if let Some(list) = &g.allow {
        guard.allow = cidrs(ctx, list, "login_guard.allow")?;
    }
    if let Some(v) = &g.state_file {
        if v.get_ref().trim().is_empty() {
            return Err(ctx.err(
                v.span(),
                "login_guard.state_file",
                "an empty path".into(),
                "write a file path in a directory vaultgate may write, e.g. state_file = \"/var/lib/vaultgate/login_guard.json\"",
            ));
        }
        guard.state_file = Some(base.join(v.get_ref()));
    }
    Ok(guard)
}
