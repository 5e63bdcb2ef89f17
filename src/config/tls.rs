//! The `[tls]` table: certificate files, ACME, or the local CA (the default).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::error::{ConfigError, Ctx};
use toml::Spanned;

use super::raw::{RawAcme, RawClientAuth, RawDns, RawLocalCa, RawTls};
use super::sections::{bounded_duration, cidrs, DurationBounds, WATCH_INTERVAL_BOUNDS};
use super::types::{
    AcmeConfig, Challenge, ClientAuth, DnsConfig, DnsProvider, DnsServer, LocalCaConfig, TlsConfig,
    TlsSource, TsigAlgorithm, LETSENCRYPT, LETSENCRYPT_STAGING, LOCAL_CA_LIFETIME,
};

/// `acme.dns.propagation_timeout`: the CA is told to look only after this
/// at most; Let's Encrypt's own patience with an order is hours.
const PROPAGATION_BOUNDS: DurationBounds =
    DurationBounds { min: Duration::from_secs(1), max: Duration::from_secs(3600), why_min: "" };

pub(super) fn tls_config(
    ctx: &Ctx,
    base: &Path,
    raw: Option<RawTls>,
    has_redirect: bool,
    listen: SocketAddr,
) -> Result<TlsConfig, ConfigError> {
    const WATCH: Duration = Duration::from_secs(10);
    let Some(t) = raw else {
        return Ok(TlsConfig {
            source: TlsSource::LocalCa(local_ca_config(ctx, base, None, listen, &[])?),
            server_names: Vec::new(),
            hsts: false,
            watch_interval: WATCH,
            client_auth: None,
        });
    };
    let watch_interval = match &t.watch_interval {
        None => WATCH,
        Some(v) => bounded_duration(ctx, v, "tls.watch_interval", &WATCH_INTERVAL_BOUNDS, WATCH)?,
    };
    if let Some(acme) = t.acme.as_ref().filter(|_| t.cert.is_some() || t.key.is_some()) {
        return Err(ctx.err(
            acme.span(),
            "tls.acme",
            "both `acme` and `cert`/`key` are set; a certificate comes from one of them".into(),
            "remove cert and key to let vaultgate obtain the certificate, or remove acme to use your files",
        ));
    }
    if let Some(local) =
        t.local_ca.as_ref().filter(|_| t.cert.is_some() || t.key.is_some() || t.acme.is_some())
    {
        return Err(ctx.err(
            local.span(),
            "tls.local_ca",
            "`local_ca` is set together with `cert`/`key` or `acme`; a certificate comes from one of them"
                .into(),
            "remove local_ca to use your files or ACME, or remove cert, key and acme to use the local CA",
        ));
    }
    let mut server_names = Vec::new();
    if let Some(names) = t.server_names {
        for name in names.get_ref() {
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !name.is_empty()
                && name.parse::<std::net::IpAddr>().is_err()
                && rustls_pki_types::DnsName::try_from(name.as_str()).is_ok();
            if !valid {
                return Err(ctx.err(
                    names.span(),
                    "tls.server_names",
                    format!("`{name}` is not a DNS name"),
                    "list the names clients use, e.g. server_names = [\"vault.example.com\"]",
                ));
            }
            server_names.push(name);
        }
    }
    let source = match (t.cert, t.key) {
        (None, None) => match t.acme {
            Some(acme) => TlsSource::Acme(acme_config(ctx, base, acme.into_inner(), has_redirect)?),
            None => TlsSource::LocalCa(local_ca_config(
                ctx,
                base,
                t.local_ca.map(|l| l.into_inner()),
                listen,
                &server_names,
            )?),
        },
        (Some(cert), Some(key)) => {
            TlsSource::Files { cert: base.join(cert.get_ref()), key: base.join(key.get_ref()) }
        }
        (Some(cert), None) => {
            return Err(ctx.err(
                cert.span(),
                "tls.key",
                "`cert` is set but `key` is missing".into(),
                "add key = \"/path/to/privkey.pem\" to [tls], or remove cert to use the local CA",
            ))
        }
        (None, Some(key)) => {
            return Err(ctx.err(
                key.span(),
                "tls.cert",
                "`key` is set but `cert` is missing".into(),
                "add cert = \"/path/to/fullchain.pem\" to [tls], or remove key to use the local CA",
            ))
        }
    };
    let client_auth = match t.client_auth {
        None => None,
        Some(raw) => Some(client_auth(ctx, base, raw.into_inner())?),
    };
    Ok(TlsConfig { source, server_names, hsts: t.hsts.unwrap_or(false), watch_interval, client_auth })
}

/// `tls.local_ca.lifetime`: at least 30 s (short ones are for watching a
/// renewal happen), at most the 365 days of the default (a year, the most any duration in proxy.toml may be) (see
/// [`LOCAL_CA_LIFETIME`]).
const LOCAL_CA_LIFETIME_BOUNDS: DurationBounds =
    DurationBounds { min: Duration::from_secs(30), max: LOCAL_CA_LIFETIME, why_min: "" };

/// More names than any home network has; a leaf listing thousands would
/// make every handshake heavy.
const LOCAL_CA_MAX_NAMES: usize = 100;

/// `[tls] local_ca`, or the default without any certificate configured.
/// Without `names`: localhost, its addresses, this machine's host name,
/// the `listen` address when it is a specific one, and `server_names`.
fn local_ca_config(
    ctx: &Ctx,
    base: &Path,
    raw: Option<RawLocalCa>,
    listen: SocketAddr,
    server_names: &[String],
) -> Result<LocalCaConfig, ConfigError> {
    let raw = raw.unwrap_or(RawLocalCa { names: None, state_dir: None, lifetime: None });
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !names.contains(&name) {
            names.push(name);
        }
    };
    match &raw.names {
        Some(list) => {
            for written in list.get_ref() {
                let name = local_ca_name(written).ok_or_else(|| {
                    ctx.err(
                        list.span(),
                        "tls.local_ca.names",
                        format!("`{written}` is neither a DNS name nor an IP address (wildcards need DNS-01)"),
                        "list the names and addresses clients use, e.g. names = [\"vault.home.arpa\", \"192.168.1.10\"]",
                    )
                })?;
                add(name);
            }
            if names.is_empty() {
                return Err(ctx.err(
                    list.span(),
                    "tls.local_ca.names",
                    "the list is empty: the certificate would be for nothing".into(),
                    "list the names clients use, e.g. names = [\"vault.home.arpa\"], or remove names for the defaults (localhost and this host's name)",
                ));
            }
            if names.len() > LOCAL_CA_MAX_NAMES {
                return Err(ctx.err(
                    list.span(),
                    "tls.local_ca.names",
                    format!("{} names, more than the maximum of {LOCAL_CA_MAX_NAMES}", names.len()),
                    "list only the names and addresses clients use",
                ));
            }
            if let Some(missing) = server_names.iter().find(|n| !names.contains(n)) {
                return Err(ctx.err(
                    list.span(),
                    "tls.local_ca.names",
                    format!("`server_names` has `{missing}`, which the certificate would not be valid for"),
                    &format!("add \"{missing}\" to local_ca.names, or remove it from server_names"),
                ));
            }
        }
        None => {
            for name in ["localhost", "127.0.0.1", "::1"] {
                add(name.to_string());
            }
            if let Some(host) = host_name() {
                // mDNS (Avahi, Bonjour) answers for NAME.local on the LAN.
                if !host.contains('.') {
                    add(format!("{host}.local"));
                }
                add(host);
            }
            let ip = listen.ip();
            if !ip.is_unspecified() && !ip.is_loopback() {
                add(ip.to_string());
            }
            for name in server_names {
                add(name.clone());
            }
        }
    }
    let state_dir = match &raw.state_dir {
        None => base.join("local-ca"),
        Some(v) if v.get_ref().trim().is_empty() => {
            return Err(ctx.err(
                v.span(),
                "tls.local_ca.state_dir",
                "an empty path".into(),
                "write a directory only vaultgate uses, e.g. state_dir = \"/var/lib/vaultgate/local-ca\"",
            ))
        }
        Some(v) => base.join(v.get_ref()),
    };
    let lifetime = match &raw.lifetime {
        None => LOCAL_CA_LIFETIME,
        Some(v) => {
            bounded_duration(ctx, v, "tls.local_ca.lifetime", &LOCAL_CA_LIFETIME_BOUNDS, LOCAL_CA_LIFETIME)?
        }
    };
    Ok(LocalCaConfig { names, state_dir, lifetime })
}

/// A name as the leaf carries it: an IP address in its canonical form, or a
/// lower-case DNS name without the final dot; `None` for anything else
/// (wildcards included: only a DNS-01 ACME certificate may have one).
fn local_ca_name(written: &str) -> Option<String> {
    let name = written.trim().trim_end_matches('.').to_ascii_lowercase();
    let unbracketed = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = unbracketed.parse::<std::net::IpAddr>() {
        return Some(ip.to_string());
    }
    let valid =
        !name.is_empty() && !name.contains('*') && rustls_pki_types::DnsName::try_from(name.as_str()).is_ok();
    valid.then_some(name)
}

/// This machine's host name, when it is a DNS name a certificate can carry
/// (what phones on the LAN often reach it by, as `NAME` or `NAME.local`).
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    local_ca_name(name).filter(|n| n != "localhost" && n.parse::<std::net::IpAddr>().is_err())
}

/// `[tls.client_auth]`. The files themselves are read by `tls::load`
/// (at start, on reload and by `vaultgate check`).
fn client_auth(ctx: &Ctx, base: &Path, raw: RawClientAuth) -> Result<ClientAuth, ConfigError> {
    let file = |v: &toml::Spanned<String>, key: &str, example: &str| {
        if v.get_ref().trim().is_empty() {
            return Err(ctx.err(v.span(), key, "an empty path".into(), example));
        }
        Ok(base.join(v.get_ref()))
    };
    let ca = file(
        &raw.ca,
        "tls.client_auth.ca",
        "write the PEM file of your device CA, e.g. ca = \"/etc/vaultgate/devices-ca.pem\"",
    )?;
    let crl = match &raw.crl {
        None => None,
        Some(v) => Some(file(
            v,
            "tls.client_auth.crl",
            "write the CRL file, e.g. crl = \"/etc/vaultgate/devices.crl\", or remove crl",
        )?),
    };
    let mut exempt_paths = Vec::new();
    if let Some(list) = &raw.exempt_paths {
        for p in list.get_ref() {
            // Compared with the normalised path, so only a normalised
            // prefix can ever match; `;`, `?` and `#` would never.
            let canonical = crate::http::path::normalize(p).map(|n| n == *p).unwrap_or(false);
            if !canonical || p.contains(['?', '#', ';']) || p.trim_end_matches('/').is_empty() {
                return Err(ctx.err(
                    list.span(),
                    "tls.client_auth.exempt_paths",
                    format!("`{p}` is not a plain absolute path prefix (other than /)"),
                    "list prefixes such as exempt_paths = [\"/icons/\"]; to need no certificate anywhere, write required = false",
                ));
            }
            exempt_paths.push(p.clone());
        }
    }
    let exempt_networks = match &raw.exempt_networks {
        None => Vec::new(),
        Some(list) => cidrs(ctx, list, "tls.client_auth.exempt_networks")?,
    };
    let subject_header = match &raw.subject_header {
        None => None,
        Some(v) => {
            let name = http::HeaderName::from_bytes(v.get_ref().trim().as_bytes()).ok();
            // Names the proxy sets or removes itself, or that carry the
            // request's meaning, would be clobbered or clobber.
            let reserved = |n: &http::HeaderName| {
                let n = n.as_str();
                n.contains('_')
                    || n.starts_with("x-forwarded-")
                    || [
                        "host",
                        "x-real-ip",
                        "forwarded",
                        "connection",
                        "upgrade",
                        "cookie",
                        "authorization",
                        "content-length",
                        "transfer-encoding",
                        "te",
                        "trailer",
                        "keep-alive",
                        "proxy-connection",
                        "proxy-authorization",
                    ]
                    .contains(&n)
            };
            match name {
                Some(n) if !reserved(&n) => Some(n),
                _ => {
                    return Err(ctx.err(
                        v.span(),
                        "tls.client_auth.subject_header",
                        format!("`{}` is not a header name vaultgate can own", v.get_ref()),
                        "write a header of its own, e.g. subject_header = \"X-Client-Cert-Subject\", or remove it",
                    ))
                }
            }
        }
    };
    Ok(ClientAuth {
        ca,
        crl,
        required: raw.required.unwrap_or(true),
        exempt_paths,
        exempt_networks,
        subject_header,
    })
}

fn acme_config(ctx: &Ctx, base: &Path, raw: RawAcme, has_redirect: bool) -> Result<AcmeConfig, ConfigError> {
    let domain = raw.domain.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
    // `*.example.com`: a wildcard as its first label only (RFC 8555 §7.1.3).
    let (wildcard, name) = match domain.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, domain.as_str()),
    };
    if !is_dns_name(name) {
        return Err(ctx.err(
            raw.domain.span(),
            "tls.acme.domain",
            format!("`{domain}` is not a public DNS name a certificate can be issued for"),
            "write the name clients use, e.g. domain = \"vault.example.com\" (no IP address; a wildcard such as \"*.example.com\" only with acme.dns)",
        ));
    }
    if wildcard && raw.dns.is_none() {
        return Err(ctx.err(
            raw.domain.span(),
            "tls.acme.domain",
            format!("`{domain}` is a wildcard name, and a CA checks those only through DNS-01"),
            "add acme.dns = { server = \"ns.example.com:53\", key_name = …, key_secret_file = … } or acme.dns = { hook = \"/usr/local/bin/dns-hook\" } (README: DNS-01), or write one exact name, e.g. domain = \"vault.example.com\"",
        ));
    }
    let email = match raw.email {
        None => None,
        Some(v) => {
            let e = v.get_ref().trim().trim_start_matches("mailto:");
            let (user, host) = e.split_once('@').unwrap_or_default();
            if user.is_empty() || !host.contains('.') || e.contains([' ', ',', '<', '>']) {
                return Err(ctx.err(
                    v.span(),
                    "tls.acme.email",
                    format!("`{e}` is not an e-mail address"),
                    "write an address such as email = \"admin@example.com\", or remove email",
                ));
            }
            Some(e.to_string())
        }
    };
    let directory = match raw.directory {
        None => LETSENCRYPT.to_string(),
        Some(v) => match v.get_ref().trim() {
            "letsencrypt" => LETSENCRYPT.to_string(),
            "letsencrypt-staging" => LETSENCRYPT_STAGING.to_string(),
            url if url.starts_with("https://")
                && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some()) =>
            {
                url.to_string()
            }
            other => {
                return Err(ctx.err(
                    v.span(),
                    "tls.acme.directory",
                    format!("`{other}` is not an https:// ACME directory URL"),
                    "write \"letsencrypt\", \"letsencrypt-staging\" or the CA's https:// directory URL",
                ))
            }
        },
    };
    let dns = match raw.dns {
        None => None,
        Some(d) => Some(Box::new(dns_config(ctx, base, d, name)?)),
    };
    let challenges = match (raw.challenge, &dns) {
        (None, Some(_)) => vec![Challenge::Dns01],
        (Some(v), Some(_)) if v.get_ref() == "dns-01" => vec![Challenge::Dns01],
        (Some(v), Some(_)) => {
            return Err(ctx.err(
                v.span(),
                "tls.acme.challenge",
                format!("acme.dns selects dns-01, and `{}` cannot be answered with it", v.get_ref()),
                "remove challenge (acme.dns answers dns-01), or remove acme.dns to answer tls-alpn-01 or http-01",
            ))
        }
        (None, None) if has_redirect => vec![Challenge::TlsAlpn01, Challenge::Http01],
        (None, None) => vec![Challenge::TlsAlpn01],
        (Some(v), None) => match v.get_ref().as_str() {
            "tls-alpn-01" => vec![Challenge::TlsAlpn01],
            "http-01" if has_redirect => vec![Challenge::Http01],
            "http-01" => {
                return Err(ctx.err(
                    v.span(),
                    "tls.acme.challenge",
                    "http-01 is answered on the plain-HTTP listener, and there is none".into(),
                    "add [redirect] with listen = \"0.0.0.0:80\", or write challenge = \"tls-alpn-01\"",
                ))
            }
            "dns-01" => {
                return Err(ctx.err(
                    v.span(),
                    "tls.acme.challenge",
                    "dns-01 needs to know how to put the TXT record in your zone".into(),
                    "add acme.dns = { server = \"ns.example.com:53\", key_name = …, key_secret_file = … } or acme.dns = { hook = \"/usr/local/bin/dns-hook\" } (README: DNS-01)",
                ))
            }
            other => {
                return Err(ctx.err(
                    v.span(),
                    "tls.acme.challenge",
                    format!("`{other}` is not a challenge vaultgate answers"),
                    "write \"tls-alpn-01\" (port 443) or \"http-01\" (port 80, needs [redirect]), or remove it to try both; for dns-01 add acme.dns",
                ))
            }
        },
    };
    Ok(AcmeConfig {
        domain,
        email,
        directory,
        ca: raw.ca.map(|c| base.join(c.get_ref())),
        state_dir: base.join(raw.state_dir.as_ref().map_or("acme", |s| s.get_ref().as_str())),
        challenges,
        dns,
    })
}

/// A name a certificate can be issued for: not an address, at least two
/// labels, no wildcard.
fn is_dns_name(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_err()
        && !name.contains('*')
        && name.contains('.')
        && rustls_pki_types::DnsName::try_from(name).is_ok()
}

/// `acme.dns`. `name` is the certificate's name without a wildcard label:
/// the record goes to `_acme-challenge.<name>` (RFC 8555 §8.4). The secret
/// file and the hook are read when used (and by `vaultgate check`).
fn dns_config(ctx: &Ctx, base: &Path, raw: Spanned<RawDns>, name: &str) -> Result<DnsConfig, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let path = |v: &Spanned<String>, key: &str, example: &str| {
        if v.get_ref().trim().is_empty() {
            return Err(ctx.err(v.span(), key, "an empty path".into(), example));
        }
        Ok(base.join(v.get_ref()))
    };
    let rfc2136_keys = [
        (&raw.key_name, "key_name"),
        (&raw.key_algorithm, "key_algorithm"),
        (&raw.key_secret_file, "key_secret_file"),
    ];
    let provider = match (&raw.server, &raw.hook) {
        (Some(_), Some(hook)) => {
            return Err(ctx.err(
                hook.span(),
                "tls.acme.dns.hook",
                "both `server` and `hook` are set; the record is put in place by one of them".into(),
                "remove hook to send RFC 2136 updates to the server, or remove server (and the key_* keys) to call the hook",
            ))
        }
        (None, None) => {
            return Err(ctx.err(
                span,
                "tls.acme.dns",
                "acme.dns says neither where to send the update (`server`) nor what to call (`hook`)".into(),
                "write server = \"ns.example.com:53\" with key_name and key_secret_file (RFC 2136), or hook = \"/usr/local/bin/dns-hook\"",
            ))
        }
        (None, Some(hook)) => {
            if let Some((v, key)) = rfc2136_keys.iter().find_map(|(v, k)| v.as_ref().map(|v| (v, k))) {
                return Err(ctx.err(
                    v.span(),
                    &format!("tls.acme.dns.{key}"),
                    format!("`{key}` belongs to RFC 2136 updates (`server`), and the hook gets no key"),
                    "remove it (the hook signs its own updates), or replace hook with server = \"ns.example.com:53\"",
                ));
            }
            DnsProvider::Hook {
                program: path(hook, "tls.acme.dns.hook", "write the program, e.g. hook = \"/usr/local/bin/dns-hook\"")?,
            }
        }
        (Some(server), None) => {
            let server = dns_server(ctx, server, "tls.acme.dns.server")?;
            let key_name = match &raw.key_name {
                None => {
                    return Err(ctx.err(
                        span,
                        "tls.acme.dns.key_name",
                        "RFC 2136 updates are signed with a TSIG key, and `key_name` is missing".into(),
                        "add key_name = \"vaultgate\" (the key's name as the DNS server knows it) and key_secret_file",
                    ))
                }
                Some(v) => {
                    let n = v.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
                    if n.is_empty() || rustls_pki_types::DnsName::try_from(n.as_str()).is_err() {
                        return Err(ctx.err(
                            v.span(),
                            "tls.acme.dns.key_name",
                            format!("`{}` is not a TSIG key name", v.get_ref()),
                            "write the key's name as the DNS server knows it, e.g. key_name = \"vaultgate\"",
                        ));
                    }
                    n
                }
            };
            let key_algorithm = match &raw.key_algorithm {
                None => TsigAlgorithm::HmacSha256,
                Some(v) => {
                    let wanted = v.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
                    match TsigAlgorithm::ALL.into_iter().find(|a| a.name() == wanted) {
                        Some(a) => a,
                        None => {
                            return Err(ctx.err(
                                v.span(),
                                "tls.acme.dns.key_algorithm",
                                format!("`{}` is not a TSIG algorithm vaultgate signs with", v.get_ref()),
                                "write \"hmac-sha256\" (the default), \"hmac-sha384\" or \"hmac-sha512\", as the key was made with",
                            ))
                        }
                    }
                }
            };
            let key_secret_file = match &raw.key_secret_file {
                None => {
                    return Err(ctx.err(
                        span,
                        "tls.acme.dns.key_secret_file",
                        "RFC 2136 updates are signed with a TSIG key, and `key_secret_file` is missing".into(),
                        "add key_secret_file = \"/etc/vaultgate/tsig.secret\": a file (mode 0600) holding the key's base64 secret",
                    ))
                }
                Some(v) => path(
                    v,
                    "tls.acme.dns.key_secret_file",
                    "write the file holding the key's base64 secret, e.g. key_secret_file = \"/etc/vaultgate/tsig.secret\"",
                )?,
            };
            DnsProvider::Rfc2136 { server, key_name, key_algorithm, key_secret_file }
        }
    };
    let zone = match &raw.zone {
        None => None,
        Some(v) => {
            let z = v.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !z.is_empty()
                && z.parse::<std::net::IpAddr>().is_err()
                && rustls_pki_types::DnsName::try_from(z.as_str()).is_ok();
            if !valid {
                return Err(ctx.err(
                    v.span(),
                    "tls.acme.dns.zone",
                    format!("`{}` is not a DNS zone name", v.get_ref()),
                    "write the zone the name is in, e.g. zone = \"example.com\", or remove zone to find it from the SOA",
                ));
            }
            if name != z && !name.ends_with(&format!(".{z}")) {
                return Err(ctx.err(
                    v.span(),
                    "tls.acme.dns.zone",
                    format!("`_acme-challenge.{name}` is not in the zone `{z}`"),
                    "write the zone the domain is in (e.g. \"example.com\" for vault.example.com), or remove zone to find it from the SOA",
                ));
            }
            Some(z)
        }
    };
    let mut check_servers = Vec::new();
    if let Some(list) = &raw.check_servers {
        for s in list.get_ref() {
            let v = Spanned::new(list.span(), s.clone());
            check_servers.push(dns_server(ctx, &v, "tls.acme.dns.check_servers")?);
        }
    }
    const WAIT: Duration = Duration::from_secs(120);
    let propagation_timeout = match &raw.propagation_timeout {
        None => WAIT,
        Some(v) => bounded_duration(ctx, v, "tls.acme.dns.propagation_timeout", &PROPAGATION_BOUNDS, WAIT)?,
    };
    Ok(DnsConfig { provider, zone, check_servers, propagation_timeout })
}

/// `ns.example.com`, `ns.example.com:5353`, `192.0.2.1`, `[2001:db8::1]:53`.
fn dns_server(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<DnsServer, ConfigError> {
    let text = v.get_ref().trim();
    let parsed = if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        Some((addr.ip().to_string(), addr.port()))
    } else if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        Some((ip.to_string(), 53))
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p != 0)),
            None => (text, Some(53)),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match port {
            Some(port) if !host.is_empty() && rustls_pki_types::DnsName::try_from(host.as_str()).is_ok() => {
                Some((host, port))
            }
            _ => None,
        }
    };
    match parsed {
        Some((host, port)) => Ok(DnsServer { host, port }),
        None => Err(ctx.err(
            v.span(),
            key,
            format!("`{text}` is not a DNS server address"),
            "write a name or address with an optional port, e.g. \"ns.example.com:53\" or \"192.0.2.53\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(client_auth: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("/etc/vaultgate/proxy.toml"), &format!("[tls.client_auth]\n{client_auth}\n"))
    }

    fn acme(fields: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("/etc/vaultgate/proxy.toml"), &format!("[tls.acme]\n{fields}\n"))
    }

    fn dns_of(c: Config) -> (crate::config::AcmeConfig, crate::config::DnsConfig) {
        let crate::config::TlsSource::Acme(a) = c.tls.source else { panic!("not acme") };
        let dns = *a.dns.clone().expect("acme.dns");
        (a, dns)
    }

    #[test]
    fn dns_01_as_written_in_the_readme() {
        use crate::config::{Challenge, DnsProvider, DnsServer, TsigAlgorithm};
        let (a, dns) = dns_of(
            acme(
                "domain = \"vault.example.com\"\n\
                 dns = { server = \"ns1.example.com:53\", key_name = \"vaultgate.\", key_secret_file = \"tsig.secret\" }",
            )
            .unwrap(),
        );
        assert_eq!(a.challenges, [Challenge::Dns01], "the only challenge, [redirect] or not");
        assert_eq!(
            dns.provider,
            DnsProvider::Rfc2136 {
                server: DnsServer { host: "ns1.example.com".into(), port: 53 },
                key_name: "vaultgate".into(),
                key_algorithm: TsigAlgorithm::HmacSha256,
                key_secret_file: "/etc/vaultgate/tsig.secret".into(),
            }
        );
        assert_eq!((dns.zone, dns.check_servers.len()), (None, 0));
        assert_eq!(dns.propagation_timeout, std::time::Duration::from_secs(120));

        let (a, dns) = dns_of(
            acme(
                "domain = \"*.Example.com\"\n\
                 dns = { hook = \"/usr/local/bin/dns-hook\", zone = \"example.com.\", check_servers = [\"192.0.2.53\", \"[2001:db8::53]:5353\", \"ns2.example.net\"], propagation_timeout = \"5m\" }\n\
                 [redirect]\nlisten = \"0.0.0.0:80\"",
            )
            .unwrap(),
        );
        assert_eq!(a.domain, "*.example.com");
        assert_eq!(a.challenges, [Challenge::Dns01]);
        assert_eq!(dns.provider, DnsProvider::Hook { program: "/usr/local/bin/dns-hook".into() });
        assert_eq!(dns.zone.as_deref(), Some("example.com"));
        let shown: Vec<String> = dns.check_servers.iter().map(|s| s.to_string()).collect();
        assert_eq!(shown, ["192.0.2.53:53", "[2001:db8::53]:5353", "ns2.example.net:53"]);
        assert_eq!(dns.propagation_timeout, std::time::Duration::from_secs(300));

        let (_, dns) = dns_of(
            acme("domain = \"v.example.com\"\ndns = { server = \"192.0.2.1\", key_name = \"k\", key_algorithm = \"HMAC-SHA512\", key_secret_file = \"s\" }")
                .unwrap(),
        );
        let DnsProvider::Rfc2136 { key_algorithm, server, .. } = dns.provider else { panic!() };
        assert_eq!((key_algorithm, server.port), (TsigAlgorithm::HmacSha512, 53));
    }

    #[test]
    fn dns_01_mistakes_name_the_key_and_the_fix() {
        let rfc = "server = \"ns.example.com\", key_name = \"k\", key_secret_file = \"s\"";
        for (domain, dns, key, fix) in [
            // Wildcards only with DNS-01; a wildcard only as the first label.
            ("*.example.com", "", "tls.acme.domain", "acme.dns"),
            ("vault.*.example.com", rfc, "tls.acme.domain", "*.example.com"),
            ("*.com", rfc, "tls.acme.domain", "vault.example.com"),
            ("v.example.com", "", "tls.acme.dns", "server = "),
            ("v.example.com", "server = \"ns.example.com\", hook = \"h\"", "tls.acme.dns.hook", "remove"),
            ("v.example.com", "server = \"ns.example.com\", key_secret_file = \"s\"", "tls.acme.dns.key_name", "key_name = "),
            ("v.example.com", "server = \"ns.example.com\", key_name = \"k\"", "tls.acme.dns.key_secret_file", "0600"),
            ("v.example.com", "hook = \"h\", key_name = \"k\"", "tls.acme.dns.key_name", "hook"),
            ("v.example.com", "server = \"ns.example.com:99999\", key_name = \"k\", key_secret_file = \"s\"", "tls.acme.dns.server", "ns.example.com:53"),
            ("v.example.com", "server = \"ns.example.com\", key_name = \"k\", key_secret_file = \"s\", key_algorithm = \"hmac-md5\"", "tls.acme.dns.key_algorithm", "hmac-sha256"),
            ("v.example.com", "hook = \"h\", zone = \"example.org\"", "tls.acme.dns.zone", "example.com"),
            ("v.example.com", "hook = \"h\", zone = \"ample.com\"", "tls.acme.dns.zone", "example.com"),
            ("v.example.com", "hook = \"h\", check_servers = [\"not a server\"]", "tls.acme.dns.check_servers", "ns.example.com:53"),
            ("v.example.com", "hook = \"h\", propagation_timeout = \"100ms\"", "tls.acme.dns.propagation_timeout", "2m"),
            ("v.example.com", "hook = \"h\", propagation_timeout = \"2d\"", "tls.acme.dns.propagation_timeout", "2m"),
            ("v.example.com", "hook = \"\"", "tls.acme.dns.hook", "dns-hook"),
            ("v.example.com", "hook = \"h\", check_server = []", "tls.acme.dns.check_server", "check_servers"),
        ] {
            let dns = if dns.is_empty() && key != "tls.acme.dns" { String::new() } else { format!("\ndns = {{ {dns} }}") };
            let e = acme(&format!("domain = \"{domain}\"{dns}")).unwrap_err();
            let shown = e.to_string();
            assert_eq!(e.key, key, "{domain} {dns}: {shown}");
            assert!(shown.contains(fix), "{domain} {dns}: {shown}");
        }
        // With acme.dns, challenge can only say dns-01; dns-01 without acme.dns says what is missing.
        let e = acme(&format!("domain = \"v.example.com\"\nchallenge = \"http-01\"\ndns = {{ {rfc} }}"))
            .unwrap_err();
        assert_eq!(e.key, "tls.acme.challenge", "{e}");
        assert!(
            acme(&format!("domain = \"v.example.com\"\nchallenge = \"dns-01\"\ndns = {{ {rfc} }}")).is_ok()
        );
        let e = acme("domain = \"v.example.com\"\nchallenge = \"dns-01\"").unwrap_err();
        assert!(e.key == "tls.acme.challenge" && e.fix.contains("acme.dns = {"), "{e}");
    }

    #[test]
    fn client_auth_as_written_in_the_readme() {
        let c = parse(
            "ca = \"devices-ca.pem\"\nrequired = true\nexempt_paths = [\"/icons/\"]\n\
             exempt_networks = [\"192.168.0.0/16\"]\ncrl = \"/etc/vaultgate/devices.crl\"\n\
             subject_header = \"X-Client-Cert-Subject\"",
        )
        .unwrap();
        let auth = c.tls.client_auth.unwrap();
        assert_eq!(auth.ca, Path::new("/etc/vaultgate/devices-ca.pem"), "relative to the file");
        assert_eq!(auth.crl.as_deref(), Some(Path::new("/etc/vaultgate/devices.crl")));
        assert!(auth.required);
        assert_eq!(auth.exempt_paths, ["/icons/"]);
        assert_eq!(auth.exempt_networks, ["192.168.0.0/16".parse().unwrap()]);
        assert_eq!(auth.subject_header.unwrap(), "x-client-cert-subject");
        // Required unless said otherwise; no header unless named.
        let auth = parse("ca = \"ca.pem\"").unwrap().tls.client_auth.unwrap();
        assert!(auth.required && auth.subject_header.is_none() && auth.crl.is_none());
        assert!(Config::parse(Path::new("p.toml"), "").unwrap().tls.client_auth.is_none());
    }

    fn local_ca(text: &str) -> Result<crate::config::LocalCaConfig, crate::config::ConfigError> {
        let c = Config::parse(
            Path::new("/etc/vaultgate/proxy.toml"),
            &format!("listen = \"192.168.1.10:443\"\n{text}\n"),
        )?;
        match c.tls.source {
            crate::config::TlsSource::LocalCa(ca) => Ok(ca),
            other => panic!("not the local CA: {other:?}"),
        }
    }

    #[test]
    fn local_ca_as_written_in_the_readme_and_its_defaults() {
        let ca = local_ca(
            "[tls]\nlocal_ca = { names = [\"Vault.Home.Arpa.\", \"192.168.1.10\", \"[::1]\", \"vault.home.arpa\"], state_dir = \"/var/lib/vaultgate/local-ca\" }",
        )
        .unwrap();
        assert_eq!(ca.names, ["vault.home.arpa", "192.168.1.10", "::1"], "lower-case, canonical, once each");
        assert_eq!(ca.state_dir, Path::new("/var/lib/vaultgate/local-ca"));
        assert_eq!(ca.lifetime, crate::config::LOCAL_CA_LIFETIME);
        assert_eq!(ca.lifetime.as_secs(), 365 * 86400);

        // Without names: localhost, its addresses, the host name, the
        // specific listen address, and server_names.
        let ca =
            local_ca("[tls]\nserver_names = [\"vault.lan\"]\nlocal_ca = { lifetime = \"30d\" }").unwrap();
        assert_eq!(ca.names[..3], ["localhost", "127.0.0.1", "::1"]);
        assert!(ca.names.contains(&"192.168.1.10".to_string()), "{:?}", ca.names);
        assert_eq!(ca.names.last().map(String::as_str), Some("vault.lan"));
        if let Some(host) = super::host_name() {
            assert!(ca.names.contains(&host), "{:?}", ca.names);
        }
        assert_eq!(ca.lifetime.as_secs(), 30 * 86400);
        assert_eq!(ca.state_dir, Path::new("/etc/vaultgate/local-ca"), "next to the config file");
        // No [tls] at all, or [tls] without a certificate: the local CA.
        assert!(local_ca("").is_ok());
        assert!(local_ca("[tls]\nhsts = true").is_ok());
    }

    #[test]
    fn local_ca_mistakes_name_the_key_and_the_fix() {
        for (text, key, fix) in [
            ("local_ca = { names = [\"*.home.arpa\"] }", "tls.local_ca.names", "vault.home.arpa"),
            ("local_ca = { names = [\"vault home\"] }", "tls.local_ca.names", "vault.home.arpa"),
            ("local_ca = { names = [\"\"] }", "tls.local_ca.names", "vault.home.arpa"),
            ("local_ca = { names = [] }", "tls.local_ca.names", "remove names for the defaults"),
            (
                "server_names = [\"vault.lan\"]\nlocal_ca = { names = [\"vault.home.arpa\"] }",
                "tls.local_ca.names",
                "add \"vault.lan\" to local_ca.names",
            ),
            ("local_ca = { state_dir = \" \" }", "tls.local_ca.state_dir", "/var/lib/vaultgate/local-ca"),
            ("local_ca = { lifetime = \"10s\" }", "tls.local_ca.lifetime", "from 30s to 365d"),
            ("local_ca = { lifetime = \"366d\" }", "tls.local_ca.lifetime", "from 30s to 365d"),
            ("local_ca = { lifetime = \"forever\" }", "tls.local_ca.lifetime", ""),
            ("local_ca = { nmes = [\"a.b\"] }", "tls.local_ca.nmes", "did you mean `names`?"),
            ("cert = \"c.pem\"\nkey = \"k.pem\"\nlocal_ca = {}", "tls.local_ca", "remove local_ca"),
            ("acme = { domain = \"v.example.com\" }\nlocal_ca = {}", "tls.local_ca", "remove local_ca"),
        ] {
            let e = local_ca(&format!("[tls]\n{text}")).unwrap_err();
            let shown = e.to_string();
            assert_eq!(e.key, key, "{text}: {shown}");
            assert!(shown.starts_with("/etc/vaultgate/proxy.toml:"), "{text}: {shown}");
            assert!(e.line.is_some(), "{text}: {shown}");
            assert!(shown.contains(fix), "{text}: {shown}");
        }
        // The maximum itself is allowed; an IP address keeps its canonical form.
        assert!(
            local_ca("[tls]\nlocal_ca = { lifetime = \"365d\", names = [\"0:0:0:0:0:0:0:1\"] }")
                .unwrap()
                .names
                == ["::1"]
        );
    }

    #[test]
    fn client_auth_mistakes_name_the_key_and_the_fix() {
        for (text, key, fix) in [
            ("required = true", "", "`ca` is missing"),
            ("ca = \"\"", "tls.client_auth.ca", "devices-ca.pem"),
            ("ca = \"a\"\nexempt_paths = [\"icons\"]", "tls.client_auth.exempt_paths", "/icons/"),
            ("ca = \"a\"\nexempt_paths = [\"/\"]", "tls.client_auth.exempt_paths", "required = false"),
            ("ca = \"a\"\nexempt_paths = [\"/x/../api\"]", "tls.client_auth.exempt_paths", "/icons/"),
            ("ca = \"a\"\nexempt_networks = [\"lan\"]", "tls.client_auth.exempt_networks", "192.168.0.0/16"),
            ("ca = \"a\"\nsubject_header = \"X-Real-IP\"", "tls.client_auth.subject_header", "X-Client-Cert"),
            (
                "ca = \"a\"\nsubject_header = \"bad header\"",
                "tls.client_auth.subject_header",
                "X-Client-Cert",
            ),
            ("ca = \"a\"\nexempt_path = [\"/icons/\"]", "tls.client_auth.exempt_path", "exempt_paths"),
        ] {
            let e = parse(text).unwrap_err();
            let shown = e.to_string();
            assert!(e.key == key || key.is_empty(), "{text}: {shown}");
            assert!(shown.contains(fix), "{text}: {shown}");
        }
    }
}
