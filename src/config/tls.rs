//! The `[tls]` table: certificate files, ACME, or the self-signed fallback.

use std::path::Path;
use std::time::Duration;

use super::error::{ConfigError, Ctx};
use super::raw::{RawAcme, RawTls};
use super::sections::{bounded_duration, WATCH_INTERVAL_BOUNDS};
use super::types::{AcmeConfig, Challenge, TlsConfig, TlsSource, LETSENCRYPT, LETSENCRYPT_STAGING};

pub(super) fn tls_config(
    ctx: &Ctx,
    base: &Path,
    raw: Option<RawTls>,
    has_redirect: bool,
) -> Result<TlsConfig, ConfigError> {
    const WATCH: Duration = Duration::from_secs(10);
    let Some(t) = raw else {
        return Ok(TlsConfig {
            source: TlsSource::SelfSigned,
            server_names: Vec::new(),
            hsts: false,
            watch_interval: WATCH,
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
    let source = match (t.cert, t.key) {
        (None, None) => match t.acme {
            Some(acme) => TlsSource::Acme(acme_config(ctx, base, acme.into_inner(), has_redirect)?),
            None => TlsSource::SelfSigned,
        },
        (Some(cert), Some(key)) => {
            TlsSource::Files { cert: base.join(cert.get_ref()), key: base.join(key.get_ref()) }
        }
        (Some(cert), None) => return Err(ctx.err(
            cert.span(),
            "tls.key",
            "`cert` is set but `key` is missing".into(),
            "add key = \"/path/to/privkey.pem\" to [tls], or remove cert to use a self-signed certificate",
        )),
        (None, Some(key)) => return Err(ctx.err(
            key.span(),
            "tls.cert",
            "`key` is set but `cert` is missing".into(),
            "add cert = \"/path/to/fullchain.pem\" to [tls], or remove key to use a self-signed certificate",
        )),
    };
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
    Ok(TlsConfig { source, server_names, hsts: t.hsts.unwrap_or(false), watch_interval })
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
