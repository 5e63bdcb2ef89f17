//! Connects to a hub through vaultgate the way the Bitwarden clients do
//! (SignalR over WebSocket, MessagePack) and prints each notification:
//!
//!     cargo run --example hub_client [-- https://localhost:8443 [--insecure]]
//!
//! The certificate is checked against the system's roots, or the bundle in
//! SSL_CERT_FILE (`SSL_CERT_FILE=local-ca/root.pem` for vaultgate's local
//! CA). `--insecure` accepts any certificate: only for trying things out.

#[path = "support/standin.rs"]
mod standin;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::Message;
use vaultgate::testing::AnyCertificate;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let insecure = args.iter().any(|a| a == "--insecure");
    let base = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "https://localhost:8443".into());
    if let Err(e) = run(&base, insecure).await {
        eprintln!("hub_client: {e}");
        std::process::exit(1);
    }
}

async fn run(base: &str, insecure: bool) -> Result<(), Box<dyn std::error::Error>> {
    let uri: http::Uri = base.parse()?;
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(443);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_roots()? {
            roots.add(cert)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host.clone())?, tcp)
        .await?;
    // A real client sends its JWT here; the stand-in accepts any token.
    let url = format!("wss://{host}:{port}/notifications/hub?access_token=example");
    let (mut ws, resp) = tokio_tungstenite::client_async(url.as_str(), tls).await?;
    println!("connected: {} {}", resp.status().as_u16(), url.replace("example", "…"));
    ws.send(Message::text("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")).await?;
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            _ = ping.tick() => ws.send(Message::binary(vec![0x02, 0x91, 0x06])).await?,
            msg = ws.next() => match msg.ok_or("the hub closed")?? {
                Message::Binary(b) if b.as_ref() == b"{}\x1e" => println!("SignalR handshake answered"),
                Message::Binary(b) => match standin::describe(&b) {
                    Some((target, kind)) => println!("notification: {target} type {kind}"),
                    None => println!("frame: {}", standin::hex(&b)),
                },
                Message::Ping(_) => println!("ping from the server"),
                Message::Close(c) => return Err(format!("closed: {c:?}").into()),
                _ => {}
            },
        }
    }
}

/// The system's CA certificates (Debian's bundle), or the bundle in
/// SSL_CERT_FILE as OpenSSL-based tools read it.
fn rustls_native_roots() -> Result<Vec<CertificateDer<'static>>, Box<dyn std::error::Error>> {
    use rustls::pki_types::pem::PemObject;
    let bundle =
        std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
    Ok(CertificateDer::pem_file_iter(&bundle)
        .map_err(|e| format!("{bundle}: {e} (SSL_CERT_FILE=local-ca/root.pem for vaultgate's local CA)"))?
        .filter_map(Result::ok)
        .collect())
}
