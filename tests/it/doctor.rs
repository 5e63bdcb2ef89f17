//! `vaultgate check --probe` against running setups, healthy and broken: it
//! must say which hop failed and what to do.

use crate::support::*;

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
    binary_toml(upstream)
        .listen(format!("127.0.0.1:{port}"))
        .extra(extra)
        .write_as(ca.dir.path().join("probe.toml"))
}

#[tokio::test]
async fn a_healthy_setup_passes_every_hop() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let proxy = RunningBinary::start(&binary_toml(upstream.addr).write(ca.dir.path()), "");
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
    let free = free_port();
    let (ok, text) = probe(&probe_config(&ca, free, "127.0.0.1:9".parse().unwrap(), ""), &ca).await;
    assert!(!ok);
    assert!(text.contains(&format!("✗ TLS: nothing answers on 127.0.0.1:{free}")), "{text}");
    assert!(text.contains("fix: start vaultgate"), "{text}");
}

#[tokio::test]
async fn vaultwarden_down_is_named_with_the_port_hint() {
    let ca = TestCa::new();
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = RunningBinary::start(&binary_toml(dead).write(ca.dir.path()), "");
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
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let config = binary_toml(upstream.addr).extra("hub_paths = [\"/not-the-hub\"]").write(ca.dir.path());
    let proxy = RunningBinary::start(&config, "");
    let (ok, text) =
        probe(&probe_config(&ca, proxy.port(), upstream.addr, "hub_paths = [\"/not-the-hub\"]"), &ca).await;
    assert!(!ok);
    assert!(text.contains("✗ hub: /not-the-hub answered 200 OK instead of upgrading"), "{text}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_explained() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let proxy = RunningBinary::start(&binary_toml(upstream.addr).write(ca.dir.path()), "");
    let stranger = TestCa::new(); // trust another CA only
    let config = probe_config(&ca, proxy.port(), upstream.addr, "");
    let (ok, text) = probe(&config, &stranger).await;
    assert!(!ok);
    assert!(text.contains("✗ TLS: localhost answers, but its certificate is not trusted"), "{text}");
    assert!(text.contains("✓ Vaultwarden"), "the other hops still run: {text}");
}
