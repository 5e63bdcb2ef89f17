//! The real Vaultwarden (1.37.2) behind vaultgate, driven by the real
//! Bitwarden clients: account life with the clients' own crypto, the bw CLI,
//! live sync and login with device over both hubs with the `@microsoft/signalr`
//! client, 50 MiB attachments over HTTP/1.1 and HTTP/2, the client IP
//! Vaultwarden sees, an idle hub, and headless Chromium's HTTP/2 hub (RFC 8441).
//! Always through vaultgate with the test CA, never to Vaultwarden directly.
//!
//! Each test has its own Vaultwarden (temporary data folder, SQLite) and its
//! own vaultgate. Without a Vaultwarden binary every test fails, with one line
//! saying how to get one: `VAULTWARDEN_BIN=/path/to/vaultwarden cargo test`.

use std::process::Stdio;
use std::time::Duration;

use crate::support::logs::LogCapture;
use crate::support::tools::ONE_BROWSER;
use crate::support::vaultwarden::Stack;
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn node(script: &str, s: &Stack, env: &[(&str, &str)]) -> tokio::process::Child {
    node_script(script, &s.url(), &s.ca.ca_path, env, Stdio::piped())
}

/// Runs tests/js/vaultwarden.mjs in `mode` to the end; returns its stdout,
/// asserting it printed OK (with Vaultwarden's log when it did not).
async fn drive(s: &Stack, mode: &str, seconds: u64, env: &[(&str, &str)]) -> String {
    let timeout = seconds.to_string();
    let mut all = vec![("VG_MODE", mode), ("VG_TIMEOUT", timeout.as_str())];
    all.extend_from_slice(env);
    let child = node("vaultwarden.mjs", s, &all);
    let out = tokio::time::timeout(Duration::from_secs(seconds + 30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{mode}: the client did not finish"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "OK"),
        "{mode} failed:\n{stdout}\n{}\n--- Vaultwarden's log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_life_with_client_crypto_and_live_sync_between_two_devices() {
    let s = Stack::start("").await;
    let out = drive(&s, "life", 60, &[]).await;
    for step in [
        "hubs connected",
        "synced, empty vault",
        "device B's hub got the create",
        "device A's hub got the update",
        "sync decrypts the new name",
        "device B's hub got the delete",
    ] {
        assert!(out.contains(step), "{step}:\n{out}");
    }
    let log = s.log();
    assert!(log.contains("logged in successfully. IP: 127.0.0.1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bw_cli_logs_in_with_an_api_key_unlocks_creates_syncs_lists_and_moves_attachments() {
    let s = Stack::start("").await;
    let out = drive(&s, "bw", 120, &[]).await;
    for step in [
        "bw 2026.6.0",
        "bw logged in with the API key",
        "bw unlocked",
        "the other client's hub got bw's create",
        "bw synced and listed the item",
        "bw uploaded the attachment",
        "bw downloaded the attachment intact",
    ] {
        assert!(out.contains(step), "{step}:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_device_over_the_anonymous_hub() {
    let s = Stack::start("").await;
    let out = drive(&s, "device", 60, &[]).await;
    for step in [
        "anonymous hub connected",
        "device A's hub got the request",
        "device B's anonymous hub got the answer",
        "device B logged in with the access code",
    ] {
        assert!(out.contains(step), "{step}:\n{out}");
    }
}

/// nginx's default `proxy_read_timeout` (60 s) is what breaks hubs in the
/// field: a hub with nothing to say for longer must still deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_idle_for_longer_than_60_s_still_delivers_the_next_notification() {
    let s = Stack::start("").await;
    let out = drive(&s, "idle", 120, &[("VG_IDLE", "65")]).await;
    assert!(out.contains("notification after idling"), "{out}");
}

enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    /// Sends `path` with the bearer token; returns status and body.
    async fn send(
        &mut self,
        s: &Stack,
        method: &str,
        path: &str,
        token: &str,
        ctype: &str,
        body: Bytes,
    ) -> (u16, Bytes) {
        let (target, version) = match self {
            Client::H1(_) => (path.to_string(), http::Version::HTTP_11),
            Client::H2(_) => (format!("{}{path}", s.url()), http::Version::HTTP_2),
        };
        let mut req = Request::builder().method(method).uri(target).version(version);
        if matches!(self, Client::H1(_)) {
            req = req.header("host", format!("localhost:{}", s.addr.port()));
        }
        if !token.is_empty() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if !ctype.is_empty() {
            req = req.header("content-type", ctype);
        }
        let req = req.header("device-type", "9").body(Full::new(body)).unwrap();
        let resp = match self {
            // After a response, hyper's HTTP/1 connection is ready again only
            // once it has read the end of that response.
            Client::H1(c) => {
                c.ready().await.unwrap_or_else(|e| panic!("{method} {path}: the connection closed: {e}"));
                c.send_request(req).await.unwrap()
            }
            Client::H2(c) => c.send_request(req).await.unwrap(),
        };
        let status = resp.status().as_u16();
        (status, body_bytes(resp).await)
    }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

/// Creates an attachment on `cipher` (v2 API: metadata, then the multipart
/// upload, as the clients do) and downloads it again, over `client`.
async fn attachment_round_trip(
    s: &Stack,
    mut client: Client,
    account: &serde_json::Value,
    which: usize,
    data: &Bytes,
) {
    let token = account["token"].as_str().unwrap();
    let cipher = account["cipherId"].as_str().unwrap();
    let meta = &account["attachments"][which];
    let announce = serde_json::json!({
        "key": meta["key"], "fileName": meta["fileName"], "fileSize": data.len(), "adminRequest": false,
    });
    let (status, body) = client
        .send(
            s,
            "POST",
            &format!("/api/ciphers/{cipher}/attachment/v2"),
            token,
            "application/json",
            announce.to_string().into(),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let upload = json(&body);
    let id = upload["attachmentId"].as_str().unwrap().to_string();
    let url = upload["url"].as_str().unwrap();

    let boundary = "vaultgate-test-boundary-7d3b";
    let mut multipart = Vec::with_capacity(data.len() + 300);
    multipart.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            meta["fileName"].as_str().unwrap()
        )
        .as_bytes(),
    );
    multipart.extend_from_slice(data);
    multipart.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let (status, body) = client.send(s, "POST", &format!("/api{url}"), token, &ctype, multipart.into()).await;
    assert_eq!(status, 200, "upload: {}", String::from_utf8_lossy(&body));

    let stored = std::fs::read(s.data.path().join("attachments").join(cipher).join(&id)).unwrap();
    assert_eq!(stored.len(), data.len());
    assert_eq!(
        sha256_hex(&stored),
        sha256_hex(data),
        "the file in Vaultwarden's data folder is what was sent"
    );

    let (status, body) = client
        .send(s, "GET", &format!("/api/ciphers/{cipher}/attachment/{id}"), token, "", Bytes::new())
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let link = json(&body)["url"].as_str().unwrap().to_string();
    let path = link.strip_prefix(&s.url()).unwrap_or_else(|| panic!("download link on DOMAIN: {link}"));
    let (status, body) = client.send(s, "GET", path, "", "", Bytes::new()).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256_hex(&body), sha256_hex(data), "downloaded intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_of_50_mib_over_http1_and_http2_are_stored_and_downloaded_intact() {
    let s = Stack::start("").await;
    let out = drive(&s, "account", 60, &[]).await;
    let line = out.lines().find_map(|l| l.strip_prefix("ACCOUNT ")).unwrap();
    let account: serde_json::Value = serde_json::from_str(line).unwrap();
    let mut data = vec![0u8; 50 * 1024 * 1024];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut data).unwrap();
    let data = Bytes::from(data);
    attachment_round_trip(&s, Client::H1(s.h1().await), &account, 0, &data).await;
    attachment_round_trip(&s, Client::H2(s.h2().await), &account, 1, &data).await;
}

/// A failed login from 127.0.0.2 over `http` (curl's `--http1.1` or
/// `--http2`) with `headers`; returns the IP in Vaultwarden's log line for it.
async fn logged_ip(s: &Stack, http: &str, headers: &[&str]) -> String {
    let user = format!("ip-{}@example.com", std::process::id() as u64 * 1000 + rand_u16() as u64);
    let port = s.addr.port();
    let mut cmd = tokio::process::Command::new(tool(Tool::Curl));
    cmd.args(["-sS", "--max-time", "10", http, "--interface", "127.0.0.2", "--cacert"])
        .arg(&s.ca.ca_path)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let form = format!(
        "grant_type=password&username={}&password=eA%3D%3D&scope=api%20offline_access&client_id=web&deviceType=9&deviceIdentifier=8e6d1b7c-0b8b-4d0e-8a0b-2c6c2b1e9f11&deviceName=curl",
        user.replace('@', "%40")
    );
    let out = cmd.args(["-d", &form, &format!("{}/identity/connect/token", s.url())]).output().await.unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Username or password is incorrect"));
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("Username: {user}.")))
        .unwrap_or_else(|| panic!("no log line for {user}:\n{log}"));
    line.split("IP: ").nth(1).unwrap().split(". ").next().unwrap().to_string()
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    u16::from_be_bytes(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultwarden_logs_the_real_client_ip_and_a_forged_one_changes_nothing() {
    let s = Stack::start("").await;
    assert_eq!(logged_ip(&s, "--http1.1", &[]).await, "127.0.0.2");
    let forged = ["X-Real-IP: 203.0.113.9", "X-Forwarded-For: 203.0.113.9"];
    assert_eq!(logged_ip(&s, "--http1.1", &forged).await, "127.0.0.2", "forged over HTTP/1.1");
    assert_eq!(logged_ip(&s, "--http2", &forged).await, "127.0.0.2", "forged over HTTP/2");
    let connection = ["Connection: X-Real-IP", "X-Real-IP: 203.0.113.9"];
    assert_eq!(logged_ip(&s, "--http1.1", &connection).await, "127.0.0.2", "X-Real-IP named in Connection");
}

/// The access-log line for a request whose logged path starts with `path`.
fn access_line(log: &LogCapture, path: &str) -> Option<String> {
    log.text()
        .lines()
        .find(|l| l.contains("vaultgate::access") && l.contains(&format!(" path={path}")))
        .map(str::to_string)
}

fn peer_of(line: &str) -> String {
    line.split("conn{peer=").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
}

/// vaultgate's log lines of this test alone: the access log says which
/// client connection (`conn{peer=…}`) carried each request. One worker, so
/// that all of vaultgate runs on the capturing runtime.
#[test]
fn chromium_opens_the_hub_over_http2_on_the_pages_connection() {
    let log = LogCapture::new();
    log.run(chromium_hub_on_the_pages_connection(&log))
}

async fn chromium_hub_on_the_pages_connection(log: &LogCapture) {
    let _one = ONE_BROWSER.lock().await;
    let s = Stack::start("[limits]\nworkers = 1").await;
    let page = format!("/alive?page={}", rand_u16());
    let spki = s.ca.leaf_spki_sha256.clone();
    let chromium = tool(Tool::Chromium).display().to_string();
    let mut child = node(
        "browser_vaultwarden.mjs",
        &s,
        &[("VG_SPKI", &spki), ("VG_CHROMIUM", &chromium), ("VG_PAGE", &page)],
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let ready = script_ready(&mut lines, &mut out).await;
    assert!(ready, "the page did not get its notification:\n{out}\n{}", s.log());
    assert!(out.contains("protocol h2"), "the page came over HTTP/2:\n{out}");
    // Read while the hub is open: its access line is written at the upgrade.
    let page_line = access_line(log, &page).expect("the page was logged");
    let hub_line = within("the hub on the page's HTTP/2 connection (RFC 8441)", async {
        loop {
            let found = {
                let log = log.text();
                log.lines()
                    .find(|l| {
                        l.contains("vaultgate::access")
                            && l.contains(" path=/notifications/hub")
                            && l.contains(&format!("conn{{peer={} ", peer_of(&page_line)))
                    })
                    .map(str::to_string)
            };
            if let Some(l) = found {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(hub_line.contains("version=HTTP/2.0"), "the hub was an HTTP/2 extended CONNECT: {hub_line}");
    assert!(hub_line.contains("status=200"), "RFC 8441 answers 200: {hub_line}");
    stdin.write_all(b"done\n").await.unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        out.push_str(&line);
        out.push('\n');
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{out}");
}

/// `vaultgate check --probe` through the running vaultgate to the real
/// Vaultwarden: the stand-in upgrades the probe's made-up token, the real
/// server answers 401, and the probe must still call that healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probe_passes_against_the_real_vaultwarden() {
    let s = Stack::start("").await;
    let config = binary_toml(([127, 0, 0, 1], s.vw_port).into())
        .listen(s.addr)
        .write_as(s.ca.dir.path().join("probe.toml"));
    let out = tokio::process::Command::new(RunningBinary::PATH)
        .args(["check", "--probe", "--config"])
        .arg(&config)
        .env("SSL_CERT_FILE", &s.ca.ca_path)
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("✓ Vaultwarden: GET /alive answered 200 through vaultgate"), "{text}");
    assert!(text.contains("/notifications/hub reaches Vaultwarden (401"), "{text}");
}
