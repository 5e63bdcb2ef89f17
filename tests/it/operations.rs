//! Operations: the plain-HTTP redirect, and riding through a Vaultwarden
//! restart.

use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;

#[tokio::test]
async fn plain_http_is_redirected_to_the_same_host_and_path_on_https() {
    let h = Harness::start("[redirect]\nlisten = \"127.0.0.1:0\"").await;
    let port = h.proxy().redirect_addr().unwrap().port();
    let out = tokio::process::Command::new(tool(Tool::Curl))
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .arg(format!("http://localhost:{port}/api/x/../sync?excludeDomains=true"))
        .output()
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert_eq!(answer, format!("301 https://localhost:{}/api/sync?excludeDomains=true", h.addr.port()));
    // Following it lands on Vaultwarden through vaultgate.
    let out = tokio::process::Command::new(tool(Tool::Curl))
        .args(["-sS", "-L", "--cacert"])
        .arg(&h.ca.ca_path)
        .arg(format!("http://localhost:{port}/alive"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"\"alive\"");
    assert_eq!(h.upstream.requests(), 1, "nothing else went upstream");
}

#[tokio::test]
async fn vaultwarden_restart_gives_quick_502s_closes_hubs_and_recovers_at_once() {
    let mut h = Harness::start("").await;
    let upstream_addr = h.upstream.addr;
    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/alive")).await.unwrap().status(), 200, "a pooled connection now exists");
    let mut ws = h.ws("/notifications/hub?access_token=t").await;

    // Vaultwarden goes down.
    let replaced = std::mem::replace(&mut h.upstream, Upstream::standin().start().await);
    replaced.kill();
    within("the hub to be closed", async { while let Some(Ok(_)) = ws.next().await {} }).await;
    let resp = within("a 502 while Vaultwarden is down", c.send_request(get("/alive"))).await.unwrap();
    assert_eq!(resp.status(), 502);

    // It comes back on the same port: the very next request succeeds.
    h.upstream = Upstream::standin().on(upstream_addr).start().await;
    let resp = c.send_request(get("/alive")).await.unwrap();
    assert_eq!(resp.status(), 200, "no stale pooled connection served as an error");
}

async fn http_get(url: &str) -> (u16, String) {
    let out = tokio::process::Command::new(tool(Tool::Curl))
        .args(["-sS", "-w", "\n%{http_code}", url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

#[tokio::test]
async fn metrics_and_health_tell_what_self_hosters_ask() {
    let mut h = Harness::start("[metrics]\nlisten = \"127.0.0.1:0\"").await;
    let metrics = format!("http://{}/metrics", h.proxy().metrics_addr().unwrap());
    let healthz = metrics.replace("/metrics", "/healthz");

    let (code, body) = http_get(&healthz).await;
    assert_eq!((code, body.as_str()), (200, "ok: Vaultwarden answers\n"));

    let mut c = h.h2().await;
    assert_eq!(c.send_request(get(&h.url("/alive"))).await.unwrap().status(), 200);
    let _ws = h.ws("/notifications/hub?access_token=t").await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (code, text) = http_get(&metrics).await;
    assert_eq!(code, 200);
    for line in [
        "vaultgate_requests_total{method=\"GET\",status=\"2xx\"} 1",
        "vaultgate_requests_total{method=\"GET\",status=\"1xx\"} 1",
        "vaultgate_open_hubs{protocol=\"http1\"} 1",
        "vaultgate_open_connections{protocol=\"http2\"} 1",
        "vaultgate_open_connections{protocol=\"http1\"} 0",
        "vaultgate_request_duration_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }

    // Vaultwarden goes away: health turns red and the 502s are counted.
    let dead = std::mem::replace(&mut h.upstream, Upstream::standin().start().await);
    let dead_addr = dead.addr;
    dead.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, body) = http_get(&healthz).await;
    assert_eq!(code, 503);
    assert_eq!(body, "Vaultwarden is not answering\n");
    assert!(!body.contains(&dead_addr.port().to_string()), "the address is for the log: {body}");
    assert_eq!(c.send_request(get(&h.url("/alive"))).await.unwrap().status(), 502);
    let (_, text) = http_get(&metrics).await;
    assert!(text.lines().any(|l| l == "vaultgate_upstream_errors_total{kind=\"unreachable\"} 1"), "{text}");
    // The hub goes with Vaultwarden (within the 2 s the client gets to finish).
    let mut hub_gone = false;
    for _ in 0..50 {
        let (_, text) = http_get(&metrics).await;
        if text.lines().any(|l| l == "vaultgate_open_hubs{protocol=\"http1\"} 0") {
            hub_gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hub_gone, "the hub was closed after Vaultwarden went away");
}

/// A certificate three days from its end: `/healthz` stays green (clients
/// are served) with a warning line saying when, and the metrics count down.
#[tokio::test]
async fn health_warns_of_a_certificate_about_to_expire() {
    let upstream = Upstream::standin().start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let end = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    params.not_after = end;
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (proxy, _) = ProxyToml::new()
        .upstream(upstream.addr)
        .extra("[metrics]\nlisten = \"127.0.0.1:0\"")
        .certificate_files(&cert_path, &key_path)
        .start(dir.path())
        .await;
    let metrics = format!("http://{}/metrics", proxy.metrics_addr().unwrap());
    let (code, body) = http_get(&metrics.replace("/metrics", "/healthz")).await;
    assert_eq!(code, 200, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert_eq!(lines[0], "ok: Vaultwarden answers");
    assert!(lines[1].starts_with("warning: the certificate expires in 2d 23h (at "), "{body}");
    let (_, text) = http_get(&metrics).await;
    let left: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vaultgate_certificate_expiry_seconds "))
        .expect("the expiry gauge")
        .parse()
        .unwrap();
    assert!((3 * 86400 - 600..=3 * 86400).contains(&left), "{left}");
    let not_after = format!("vaultgate_certificate_not_after_timestamp_seconds {}", end.unix_timestamp());
    assert!(text.lines().any(|l| l == not_after), "{not_after} in:\n{text}");
    assert!(text.lines().any(|l| l == "vaultgate_acme_failing 0"), "{text}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn access_log_file_in_json_or_text_reopens_after_rotation() {
    for format in ["json", "text"] {
        let upstream = Upstream::standin().start().await;
        let ca = TestCa::new();
        let config = binary_toml(upstream.addr)
            .extra(&format!("[log]\naccess = \"access.log\"\naccess_format = \"{format}\""))
            .write(ca.dir.path());
        let proxy = RunningBinary::start(&config, "");
        let base = format!("https://localhost:{}", proxy.port());
        let log = ca.dir.path().join("access.log");
        assert_eq!(
            curl_get(&ca, &format!("{base}/alive?token=hunter2")).await,
            (true, b"\"alive\"".to_vec())
        );

        let wait_for_line = |path: std::path::PathBuf| async move {
            for _ in 0..50 {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if !text.is_empty() {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("nothing written to {}", path.display());
        };
        let first = wait_for_line(log.clone()).await;
        assert!(!first.contains("hunter2"), "{first}");
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
            assert_eq!(v["client"], "127.0.0.1");
            assert_eq!(v["path"], "/alive?token=REDACTED");
            assert_eq!(v["status"], 200);
            assert!(v["upstream_ms"].is_u64(), "time to Vaultwarden's answer: {v}");
            assert_eq!(v["user_agent"].as_str().unwrap().split('/').next(), Some("curl"));
            let time = v["time"].as_str().unwrap();
            assert!(
                time.len() == 24 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
                "RFC 3339 UTC: {time}"
            );
        } else {
            // What a fail2ban filter would match: `^<HOST> - - \[`.
            let line = first.lines().next().unwrap();
            assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
            assert!(line.contains("\"GET /alive?token=REDACTED HTTP/2.0\" 200 7 \"-\" \"curl/"), "{line}");
            assert!(line.contains(" upstream_ms="), "{line}");
        }

        // logrotate moves the file away, then reloads vaultgate.
        std::fs::rename(&log, ca.dir.path().join("access.log.1")).unwrap();
        let pid = proxy.pid().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(curl_get(&ca, &format!("{base}/alive")).await.0);
        let fresh = wait_for_line(log.clone()).await;
        assert!(fresh.contains("/alive"), "the new file gets the new lines: {fresh}");
        drop(proxy);
    }
}

#[tokio::test]
async fn a_start_that_fails_leaves_nothing_listening() {
    let ca = TestCa::new();
    // A free port for the proxy, and a metrics port another program holds.
    let free = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = ProxyToml::new()
        .listen(free)
        .upstream_url("http://127.0.0.1:9")
        .extra(&format!("[limits]\nworkers = 2\n[metrics]\nlisten = \"{}\"", held.local_addr().unwrap()))
        .certificate(&ca)
        .load(ca.dir.path());
    let e = vaultgate::Server::start(config).await.err().unwrap();
    assert!(e.to_string().contains("[metrics] listen"), "{e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(free).await.is_err(),
        "no worker accepts on the main port after a failed start"
    );
}
