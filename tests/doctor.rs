//! `vaultgate check --probe` against running setups, healthy and broken: it
//! must say which hop failed and what to do.

mod support;

use std::time::Duration;

use support::*;

async fn probe(config: &std::path::Path, ca: &TestCa) -> (bool, String) {
    let out = tokio::process::Command::new(RunningBinary::PATH)
        .args(["check", "--probe", "--config"])
        .arg(config)
        .env("SSL_CERT_FILE", &ca.ca_path)
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A config for the probe: the running proxy's port in `listen`.
fn probe_config(ca: &TestCa, port: u16, upstream: std::net::SocketAddr, extra: &str) -> std::path::PathBuf {
    let path = ca.dir.path().join("probe.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\nupstream = \"http://{upstream}\"\n{extra}\n[tls]\ncert = \"fullchain.pem\"\nkey = \"privkey.pem\"\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn a_healthy_setup_passes_every_hop() {
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
    let ca = TestCa::new();
    let proxy = RunningBinary::start(&binary_config(&ca, "127.0.0.1:0", upstream.addr), "");
    let (ok, text) = probe(&probe_config(&ca, proxy.port(), upstream.addr, ""), &ca).await;
    assert!(ok, "{text}");
    assert!(text.contains("✓ TLS: localhost answers, certificate trusted, valid"), "{text}");
    assert!(text.contains("chain of 2"), "{text}");
    assert!(text.contains("✓ Vaultwarden: GET /alive answered 200 through vaultgate"), "{text}");
    assert!(
        text.contains("✓ hub: /notifications/hub upgraded (101) and answered the SignalR handshake"),
        "{text}"
    );
}

#[tokio::test]
async fn proxy_not_running_is_the_first_hop() {
    let ca = TestCa::new();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (ok, text) = probe(&probe_config(&ca, free, "127.0.0.1:9".parse().unwrap(), ""), &ca).await;
    assert!(!ok);
    assert!(text.contains(&format!("✗ TLS: nothing answers on 127.0.0.1:{free}")), "{text}");
    assert!(text.contains("fix: start vaultgate"), "{text}");
}

#[tokio::test]
async fn vaultwarden_down_is_named_with_the_port_hint() {
    let ca = TestCa::new();
    let dead: std::net::SocketAddr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    )
    .parse()
    .unwrap();
    let proxy = RunningBinary::start(&binary_config(&ca, "127.0.0.1:0", dead), "");
    let (ok, text) = probe(&probe_config(&ca, proxy.port(), dead, ""), &ca).await;
    assert!(!ok);
    assert!(text.contains("✓ TLS"), "{text}");
    assert!(
        text.contains(
            "✗ Vaultwarden: vaultgate answers, Vaultwarden does not (502 Bad Gateway from vaultgate)"
        ),
        "{text}"
    );
    assert!(text.contains("the Docker image listens on port 80"), "{text}");
}

#[tokio::test]
async fn a_hub_path_that_does_not_upgrade_is_reported() {
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
    let ca = TestCa::new();
    let config = binary_config(&ca, "127.0.0.1:0", upstream.addr);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("hub_paths = [\"/not-the-hub\"]\n{text}")).unwrap();
    let proxy = RunningBinary::start(&config, "");
    let (ok, text) =
        probe(&probe_config(&ca, proxy.port(), upstream.addr, "hub_paths = [\"/not-the-hub\"]"), &ca).await;
    assert!(!ok);
    assert!(text.contains("✗ hub: /not-the-hub answered 200 OK instead of upgrading"), "{text}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_explained() {
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
    let ca = TestCa::new();
    let proxy = RunningBinary::start(&binary_config(&ca, "127.0.0.1:0", upstream.addr), "");
    let stranger = TestCa::new(); // trust another CA only
    let config = probe_config(&ca, proxy.port(), upstream.addr, "");
    let (ok, text) = probe(&config, &stranger).await;
    assert!(!ok);
    assert!(text.contains("✗ TLS: localhost answers, but its certificate is not trusted"), "{text}");
    assert!(text.contains("✓ Vaultwarden"), "the other hops still run: {text}");
}
