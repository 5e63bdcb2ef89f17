//! Reloading while running: new connections get the new configuration and
//! certificate; established connections and hub WebSockets stay up; a broken
//! new configuration or certificate is refused and the old one stays.

use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// A proxy.toml next to `ca`'s files, pointing at `upstream`.
fn config_for(ca: &TestCa, upstream: std::net::SocketAddr, extra: &str) -> vaultgate::Config {
    ProxyToml::new().upstream(upstream).extra(extra).certificate(ca).load(ca.dir.path())
}

async fn handshake_fails(ca: &TestCa, addr: std::net::SocketAddr) -> bool {
    ca.client(addr).try_tls(&[b"http/1.1"]).await.is_err()
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_while_hubs_stay_open() {
    let h = Harness::start("").await;
    let mut ws = h.ws("/notifications/hub?access_token=t").await;
    ws.send(Message::text("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")).await.unwrap();
    let mut old_h2 = h.h2().await;

    let renewed = TestCa::new();
    h.proxy().reload(config_for(&renewed, h.upstream.addr, "")).expect("reload accepted");

    // New connections get the new certificate.
    assert!(handshake_fails(&h.ca, h.addr).await, "the old certificate is no longer served");
    let mut c = renewed.client(h.addr).h1().await;
    assert_eq!(c.send_request(get("/alive")).await.unwrap().status(), 200);

    // The hub opened before the reload still carries notifications.
    let push = standin::notification(1, "ReceiveMessage");
    h.upstream.push(push.clone());
    within("a notification on the pre-reload hub", async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Binary(b) if b.as_ref() == &push[..] => break,
                _ => continue,
            }
        }
    })
    .await;
    // And so does an HTTP/2 connection opened before it.
    assert_eq!(old_h2.send_request(get(&h.url("/alive"))).await.unwrap().status(), 200);
}

#[tokio::test]
async fn broken_certificate_is_refused_and_the_running_one_stays() {
    let h = Harness::start("").await;
    let broken = TestCa::new();
    std::fs::write(
        &broken.cert_path,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let refused = h.proxy().reload(config_for(&broken, h.upstream.addr, ""));
    let e = refused.expect_err("a broken certificate is refused");
    assert!(e.to_string().contains("not valid PEM"), "{e}");
    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/alive")).await.unwrap().status(), 200, "still serving the old one");
}

async fn status_until(ca: &TestCa, url: &str, want: &[u8]) -> bool {
    for _ in 0..100 {
        let (_, body) = curl_get(ca, url).await;
        if body.starts_with(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn sighup_reloads_the_config_and_refuses_a_broken_one() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let toml = binary_toml(upstream.addr);
    let config = toml.write(ca.dir.path());
    let proxy = RunningBinary::start(&config, "");
    let url = format!("https://localhost:{}/alive", proxy.port());
    assert!(status_until(&ca, &url, b"\"alive\"").await);
    let hup =
        |pid: u32| std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();

    // Close /alive to everyone but 10/8, and reload.
    let closed = toml.extra("[[access]]\npath = \"/alive\"\nallow = [\"10.0.0.0/8\"]").text();
    std::fs::write(&config, &closed).unwrap();
    assert!(hup(proxy.pid()).success());
    assert!(status_until(&ca, &url, b"403").await, "the new access list is in force");

    // A broken file is refused; the access list stays.
    std::fs::write(&config, format!("lisen = \"127.0.0.1:1\"\n{closed}")).unwrap();
    assert!(hup(proxy.pid()).success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(status_until(&ca, &url, b"403").await);
    let (exit, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(exit.success());
    assert!(log.contains("reload (SIGHUP) done"), "{log}");
    assert!(log.contains("reload (SIGHUP) refused, the running configuration stays in force"), "{log}");
    assert!(log.contains("did you mean `listen`?"), "the refusal says why:\n{log}");
}

#[tokio::test]
async fn renewed_certificate_files_are_picked_up_without_a_signal() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let config = binary_toml(upstream.addr).tls("watch_interval = \"200ms\"").write(ca.dir.path());
    let proxy = RunningBinary::start(&config, "");
    let url = format!("https://localhost:{}/alive", proxy.port());
    assert!(status_until(&ca, &url, b"\"alive\"").await);

    // certbot renews: new files in place, nobody is told.
    let renewed = TestCa::new();
    std::fs::copy(&renewed.cert_path, &ca.cert_path).unwrap();
    std::fs::copy(&renewed.key_path, &ca.key_path).unwrap();
    assert!(status_until(&renewed, &url, b"\"alive\"").await, "the renewed certificate is served");
    let (_, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(log.contains("reload (the certificate files changed) done"), "{log}");
}

#[tokio::test]
async fn a_reloaded_access_list_applies_to_the_next_request_on_open_connections() {
    let h = Harness::start("").await;
    let mut h1 = h.h1().await;
    let mut h2 = h.h2().await;
    assert_eq!(h1.send_request(get("/admin")).await.unwrap().status(), 200);
    assert_eq!(h2.send_request(get(&h.url("/admin"))).await.unwrap().status(), 200);
    let before = h.upstream.requests();
    let locked = "[[access]]\npath = \"/admin\"\nallow = [\"10.0.0.0/8\"]";
    h.proxy().reload(config_for(&h.ca, h.upstream.addr, locked)).expect("reload accepted");
    // The same connections, opened before the reload: refused now.
    assert_eq!(h1.send_request(get("/admin")).await.unwrap().status(), 403);
    assert_eq!(h2.send_request(get(&h.url("/admin"))).await.unwrap().status(), 403);
    assert_eq!(h.upstream.requests(), before);
    assert_eq!(h1.send_request(get("/alive")).await.unwrap().status(), 200, "the rest is served");
}
