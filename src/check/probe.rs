//! `vaultgate check --probe`: tests a running setup end to end the way
//! Vaultwarden's wiki tells people to test by hand, and says which hop failed
//! and the likely fix. Each hop: TLS to the public address, `GET /alive`
//! through the proxy, a WebSocket upgrade on the hub with the SignalR
//! handshake.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::{Config, LocalCaConfig, TlsSource};
use crate::proxy::{body, upstream};

/// One hop's result, printed as `✓ what` or `✗ what` and `fix: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub hop: &'static str,
    pub what: String,
    pub fix: Option<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", if self.ok { "✓" } else { "✗" }, self.hop, self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n    fix: {fix}")?;
        }
        Ok(())
    }
}

fn ok(hop: &'static str, what: String) -> Finding {
    Finding { ok: true, hop, what, fix: None }
}

fn bad(hop: &'static str, what: String, fix: &str) -> Finding {
    Finding { ok: false, hop, what, fix: Some(fix.to_string()) }
}

/// Where the probe connects: host name (for SNI and Host) and socket address.
pub struct Target {
    pub host: String,
    pub connect: String,
}

impl Target {
    /// The public name from `[tls] server_names`, else localhost, on the
    /// listen port (an unspecified listen address is reached on loopback).
    pub fn from_config(config: &Config) -> Target {
        let local_ca = match &config.tls.source {
            TlsSource::LocalCa(ca) => ca.names.first().cloned(),
            _ => None,
        };
        let host =
            config.tls.server_names.first().cloned().or(local_ca).unwrap_or_else(|| "localhost".into());
        let ip = if config.listen.ip().is_unspecified() {
            "127.0.0.1".into()
        } else {
            config.listen.ip().to_string()
        };
        let ip = if ip.contains(':') { format!("[{ip}]") } else { ip };
        Target { host, connect: format!("{ip}:{}", config.listen.port()) }
    }
}

/// Runs every hop it can; a hop that cannot be reached ends the probe.
pub async fn probe(config: &Config, target: &Target) -> Vec<Finding> {
    let mut findings = Vec::new();
    let local_ca = match &config.tls.source {
        TlsSource::LocalCa(ca) => Some(ca),
        _ => None,
    };
    let (tls, finding) = tls_hop(target, local_ca).await;
    findings.push(finding);
    let Some(mut fresh) = tls else { return findings };
    findings.push(alive_hop(fresh, target, &config.upstream.url).await);
    let hub = config.hub_paths.first().cloned().unwrap_or_else(|| "/notifications/hub".into());
    match connect(target, false).await {
        Ok((stream, _)) => fresh = stream,
        Err(e) => {
            findings.push(bad("hub", format!("cannot connect again: {e}"), "see the TLS line above"));
            return findings;
        }
    }
    findings.push(hub_hop(fresh, target, &hub).await);
    findings
}

async fn connect(
    target: &Target,
    verify: bool,
) -> Result<(TlsStream<TcpStream>, Vec<CertificateDer<'static>>), String> {
    let tcp = upstream::tcp(&target.connect, Duration::from_secs(5)).await.map_err(|e| {
        if upstream::timed_out(&e) {
            "no answer within 5 s".to_string()
        } else {
            e.to_string()
        }
    })?;
    let provider = crate::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if verify {
        let roots = crate::tls::client_roots(None).map_err(|e| e.to_string())?;
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| "the TLS handshake did not finish within 10 s".to_string())?
    .map_err(|e| e.to_string())?;
    let chain = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
    Ok((tls, chain))
}

async fn tls_hop(
    target: &Target,
    local_ca: Option<&LocalCaConfig>,
) -> (Option<TlsStream<TcpStream>>, Finding) {
    match connect(target, true).await {
        Ok((tls, chain)) => {
            let days = chain.first().and_then(|c| crate::tls::x509::not_after(c)).map(days_left);
            let expiry = days.map_or(String::new(), |d| format!(", valid {d} more days"));
            let finding = if days.is_some_and(|d| d < 14) {
                bad(
                    "TLS",
                    format!("{} answers, but the certificate{expiry}", target.host),
                    "renew it (certbot renew)",
                )
            } else {
                ok(
                    "TLS",
                    format!("{} answers, certificate trusted{expiry}, chain of {}", target.host, chain.len()),
                )
            };
            (Some(tls), finding)
        }
        Err(verify_error) => match connect(target, false).await {
            Err(e) if e.contains("refused") || e.contains("no answer") => (
                None,
                bad(
                    "TLS",
                    format!("nothing answers on {} ({e})", target.connect),
                    "start vaultgate (systemctl start vaultgate), or check `listen` in proxy.toml",
                ),
            ),
            Err(e) => {
                (None, bad("TLS", format!("the handshake fails: {e}"), "see vaultgate's log for the reason"))
            }
            Ok((tls, chain)) => {
                if let Some(ca) = local_ca {
                    return (Some(tls), local_ca_hop(target, ca, &chain, &verify_error));
                }
                let self_signed = chain.len() == 1
                    && chain.first().and_then(|c| crate::tls::x509::is_self_issued(c)) == Some(true);
                let fix = if self_signed {
                    "the certificate is self-signed, which no client can verify: remove cert and key from [tls] to use vaultgate's local CA (devices install its root: vaultgate ca export), or get one from a CA with [tls] acme"
                } else if verify_error.contains("UnknownIssuer") && chain.len() < 2 {
                    "serve the full chain: point `cert` at fullchain.pem, not cert.pem"
                } else if verify_error.contains("NotValidForName") {
                    "the certificate is for another name; check `cert` and the name clients use"
                } else {
                    "a self-signed or private-CA certificate works for testing; Bitwarden clients need a trusted one"
                };
                let finding = bad(
                    "TLS",
                    format!("{} answers, but its certificate is not trusted ({verify_error})", target.host),
                    fix,
                );
                (Some(tls), finding)
            }
        },
    }
}

/// The TLS hop when this machine does not trust the certificate and the
/// config uses the local CA: that is expected until the root is installed,
/// so what matters is whether the certificate is the local CA's.
fn local_ca_hop(
    target: &Target,
    ca: &LocalCaConfig,
    chain: &[CertificateDer<'static>],
    verify_error: &str,
) -> Finding {
    let dir = ca.state_dir.display();
    let root = match crate::tls::local_ca::Root::open(&ca.state_dir) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return bad(
                "TLS",
                format!("{} answers, but its certificate is not trusted ({verify_error}), and there is no local CA in {dir}", target.host),
                "is vaultgate running with this proxy.toml? It makes the local CA at start",
            )
        }
        Err(e) => return bad("TLS", format!("{} answers, but the local CA cannot be read: {e}", target.host), "see the error above"),
    };
    let names = [target.host.clone()];
    match root.verifies(&crate::tls::provider(), chain, &names, SystemTime::now()) {
        Ok(()) => {
            let days = chain.first().and_then(|c| crate::tls::x509::not_after(c)).map(days_left);
            let expiry = days.map_or(String::new(), |d| format!(", valid {d} more days"));
            ok(
                "TLS",
                format!(
                    "{} answers with a certificate from vaultgate's local CA{expiry} (root SHA-256 {}); \
                     this machine does not trust the root, devices trust it once they install it: vaultgate ca export",
                    target.host,
                    root.fingerprint()
                ),
            )
        }
        Err(why) => bad(
            "TLS",
            format!(
                "{} answers, but its certificate is not trusted ({verify_error}), nor from the local CA in {dir} ({why})",
                target.host
            ),
            "another server may be answering there; a certificate from this local CA is served only by vaultgate started with this proxy.toml",
        ),
    }
}

async fn alive_hop(tls: TlsStream<TcpStream>, target: &Target, upstream: &str) -> Finding {
    let result = async {
        let mut sender = upstream::handshake(tls, false).await.map_err(|e| e.to_string())?;
        let req = Request::get("/alive")
            .header(header::HOST, &target.host)
            .body(body::empty())
            .expect("a valid request");
        sender.send_request(req).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), result).await {
        Ok(Ok(resp)) if resp.status() == StatusCode::OK => ok("Vaultwarden", "GET /alive answered 200 through vaultgate".into()),
        Ok(Ok(resp)) if resp.status() == StatusCode::BAD_GATEWAY || resp.status() == StatusCode::GATEWAY_TIMEOUT => bad(
            "Vaultwarden",
            format!("vaultgate answers, Vaultwarden does not ({} from vaultgate)", resp.status()),
            &format!("start Vaultwarden, or fix `upstream` ({upstream}); the Docker image listens on port 80, a plain install on 8000"),
        ),
        Ok(Ok(resp)) => bad(
            "Vaultwarden",
            format!("GET /alive answered {}", resp.status()),
            "check that `upstream` points at Vaultwarden and not at another service",
        ),
        Ok(Err(e)) => bad("Vaultwarden", format!("the request failed: {e}"), "see vaultgate's log"),
        Err(_) => bad("Vaultwarden", "no answer within 10 s".into(), "see vaultgate's log"),
    }
}

async fn hub_hop(tls: TlsStream<TcpStream>, target: &Target, hub: &str) -> Finding {
    let key = crate::websocket::new_key();
    let result = async {
        let mut sender = upstream::handshake(tls, true).await.map_err(|e| e.to_string())?;
        let req = Request::get(format!("{hub}?access_token=vaultgate-doctor"))
            .header(header::HOST, &target.host)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, &key)
            .body(body::empty())
            .expect("a valid request");
        let mut resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok::<_, String>(Err(resp.status()));
        }
        let mut io = TokioIo::new(hyper::upgrade::on(&mut resp).await.map_err(|e| e.to_string())?);
        // The SignalR handshake, as one masked text frame.
        let payload = b"{\"protocol\":\"messagepack\",\"version\":1}\x1e";
        let mask = [0x5a, 0x17, 0xc3, 0x2e];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        io.write_all(&frame).await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await.map_err(|e| e.to_string())?;
        let mut answer = vec![0u8; usize::from(head[1] & 0x7f).min(125)];
        io.read_exact(&mut answer).await.map_err(|e| e.to_string())?;
        Ok(Ok(answer))
    };
    match tokio::time::timeout(Duration::from_secs(10), result).await {
        Ok(Ok(Ok(answer))) if answer == b"{}\x1e" => ok("hub", format!("{hub} upgraded (101) and answered the SignalR handshake")),
        Ok(Ok(Ok(_))) => ok("hub", format!("{hub} upgraded (101); the first frame was not a SignalR handshake answer")),
        Ok(Ok(Err(StatusCode::UNAUTHORIZED))) => ok(
            "hub",
            format!("{hub} reaches Vaultwarden (401: the probe's token is rejected, as it should be; live sync will work)"),
        ),
        Ok(Ok(Err(StatusCode::BAD_REQUEST))) => bad(
            "hub",
            format!("{hub} answered 400: Vaultwarden did not get the upgrade headers"),
            "something between vaultgate and Vaultwarden drops Connection/Upgrade; connect vaultgate to Vaultwarden directly",
        ),
        Ok(Ok(Err(StatusCode::NOT_FOUND))) => bad(
            "hub",
            format!("{hub} answered 404"),
            "set hub_paths to where Vaultwarden serves it (with a sub-path DOMAIN: /vault/notifications/hub); Vaultwarden 1.31+ needed",
        ),
        Ok(Ok(Err(status))) => bad(
            "hub",
            format!("{hub} answered {status} instead of upgrading"),
            "check that `upstream` is Vaultwarden and hub_paths is right",
        ),
        Ok(Err(e)) => bad("hub", format!("the upgrade failed: {e}"), "see vaultgate's log"),
        Err(_) => bad("hub", "no answer within 10 s".into(), "see vaultgate's log"),
    }
}

fn days_left(not_after: SystemTime) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let end = not_after.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    (end - now).div_euclid(86400)
}

/// Accepts any server certificate (signatures are still checked). For
/// probing a setup whose certificate may be self-signed, and for the example
/// hub client on localhost; never for anything that sends secrets.
#[derive(Debug)]
pub struct AnyCertificate(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
