//! Parsers for the value formats of proxy.toml: durations, sizes, the
//! upstream URL.

use std::time::Duration;

use http::uri::{Authority, Scheme};

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
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        "" => return Err(format!("`{s}` has no unit")),
        u => return Err(format!("`{u}` is not a unit of time (ms, s, m, h, d)")),
    };
    if d.is_zero() {
        return Err("a timeout of zero would cut every connection".into());
    }
    Ok(d)
}

/// Parses the upstream URL: plain `http://host:port`, no path, no credentials.
pub fn parse_upstream(s: &str) -> Result<super::Upstream, String> {
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
    Ok(super::Upstream { authority, url: s.trim_end_matches('/').to_string() })
}

/// Parses `"525MB"` (decimal), `"525MiB"` (binary), `"64KiB"`, `"1GB"`, `"100B"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` does not start with a whole number"))?;
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
    }

    #[test]
    fn upstream_port_defaults_to_80() {
        assert_eq!(parse_upstream("http://vaultwarden").unwrap().authority.as_str(), "vaultwarden:80");
        assert!(parse_upstream("http://u:p@host:1").is_err());
        assert!(parse_upstream("127.0.0.1:8000").is_err());
    }
}
