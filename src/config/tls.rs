//! The `[tls]` table: certificate files, ACME, or the local CA (the default).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::error::{ConfigError, Ctx};
use super::raw::{RawAcme, RawClientAuth, RawLocalCa, RawTls};
use super::sections::{bounded_duration, cidrs, DurationBounds, WATCH_INTERVAL_BOUNDS};
use super::types::{
    AcmeConfig, Challenge, ClientAuth, LocalCaConfig, TlsConfig, TlsSource, LETSENCRYPT, LETSENCRYPT_STAGING,
    LOCAL_CA_LIFETIME,
};

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
    let is_name = domain.parse::<std::net::IpAddr>().is_err()
        && !domain.contains('*')
        && domain.contains('.')
        && rustls_pki_types::DnsName::try_from(domain.as_str()).is_ok();
    if !is_name {
        return Err(ctx.err(
            raw.domain.span(),
            "tls.acme.domain",
            format!("`{domain}` is not a public DNS name a certificate can be issued for"),
            "write the name clients use, e.g. domain = \"vault.example.com\" (no wildcard, no IP address)",
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
    let challenges = match raw.challenge {
        None if has_redirect => vec![Challenge::TlsAlpn01, Challenge::Http01],
        None => vec![Challenge::TlsAlpn01],
        Some(v) => match v.get_ref().as_str() {
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
            other => {
                return Err(ctx.err(
                    v.span(),
                    "tls.acme.challenge",
                    format!("`{other}` is not a challenge vaultgate answers"),
                    "write \"tls-alpn-01\" (port 443) or \"http-01\" (port 80, needs [redirect]), or remove it to try both",
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
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(client_auth: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("/etc/vaultgate/proxy.toml"), &format!("[tls.client_auth]\n{client_auth}\n"))
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
