//! Parsers for the value formats of proxy.toml: durations, sizes, the
//! upstream URL.

use super::types::Upstream;
use std::time::Duration;

use http::uri::{Authority, Scheme};

/// No duration in proxy.toml may be longer than this (each key has its own,
/// smaller maximum too): `Instant::now()` plus any duration that parses
/// stays far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

/// Parses `"500ms"`, `"30s"`, `"10m"`, `"1h"`, `"1d"`: a whole number and a
/// unit, above zero and at most `MAX_DURATION` (a year).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let too_long = || format!("`{s}` is longer than the maximum of {}", show_duration(MAX_DURATION));
    let n: u64 = match num.parse() {
        Ok(n) => n,
        Err(_) if !num.is_empty() => return Err(too_long()),
        Err(_) => return Err(format!("`{s}` does not start with a whole number")),
    };
    let scale: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("`{s}` has no unit")),
        u => return Err(format!("`{u}` is not a unit of time (ms, s, m, h, d)")),
    };
    let ms = n.checked_mul(scale).ok_or_else(too_long)?;
    let d = Duration::from_millis(ms);
    if d.is_zero() {
        return Err("a timeout of zero would cut every connection".into());
    }
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// A duration as proxy.toml spells it, in the largest unit that is exact:
/// `"1d"`, `"10m"`, `"500ms"`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, scale) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(scale) && ms >= scale {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

/// A size as proxy.toml spells it: `"64KiB"`, `"525MB"`, `"100B"`.
pub fn show_size(n: u64) -> String {
    for (unit, scale) in [
        ("GiB", 1u64 << 30),
        ("GB", 1_000_000_000),
        ("MiB", 1 << 20),
        ("MB", 1_000_000),
        ("KiB", 1 << 10),
        ("KB", 1000),
    ] {
        if n.is_multiple_of(scale) && n >= scale {
            return format!("{}{unit}", n / scale);
        }
    }
    format!("{n}B")
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

/// Parses `"525MB"` (decimal), `"525MiB"` (binary), `"64KiB"`, `"1GB"`, `"100B"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = match num.parse() {
        Ok(n) => n,
        Err(_) if !num.is_empty() => return Err(format!("`{s}` is too large")),
        Err(_) => return Err(format!("`{s}` does not start with a whole number")),
    };
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "" => return Err(format!("`{s}` has no unit")),
        u => return Err(format!("`{u}` is not a unit of size (B, KB, MB, GB, KiB, MiB, GiB)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("365d"), Ok(Duration::from_secs(365 * 86400)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn durations_are_bounded_and_never_overflow() {
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        for too_long in [
            "366d",
            "18446744073709551615s",
            "18446744073709551615ms",
            "213503982334601d",
            "99999999999999999999999d",
        ] {
            let e = parse_duration(too_long).unwrap_err();
            assert!(e.contains("longer than the maximum of 365d"), "{too_long}: {e}");
        }
    }

    #[test]
    fn shown_as_written() {
        assert_eq!(show_duration(Duration::from_secs(86400)), "1d");
        assert_eq!(show_duration(Duration::from_secs(600)), "10m");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show_size(64 * 1024), "64KiB");
        assert_eq!(show_size(525_000_000), "525MB");
        assert_eq!(show_size(100), "100B");
        assert_eq!(show_size(0), "0B");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("525MB"), Ok(525_000_000));
        assert_eq!(parse_size("525MiB"), Ok(525 * 1024 * 1024));
        assert_eq!(parse_size("64 KiB"), Ok(65536));
        assert_eq!(parse_size("1gb"), Ok(1_000_000_000));
        assert_eq!(parse_size("0B"), Ok(0));
        assert!(parse_size("525").is_err());
        assert!(parse_size("MB").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
        assert_eq!(
            parse_size("99999999999999999999999B"),
            Err("`99999999999999999999999B` is too large".into())
        );
    }

    #[test]
    fn upstream_port_defaults_to_80() {
        assert_eq!(parse_upstream("http://vaultwarden").unwrap().authority.as_str(), "vaultwarden:80");
        assert!(parse_upstream("http://u:p@host:1").is_err());
        assert!(parse_upstream("127.0.0.1:8000").is_err());
    }
}
