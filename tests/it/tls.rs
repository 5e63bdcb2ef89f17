//! TLS as users meet it: the key formats certbot and acme.sh write, protocol
//! versions, ALPN, the handshake bound, and the local CA by default.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use tokio::io::AsyncReadExt;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(tool(Tool::Openssl)).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn curl(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(tool(Tool::Curl)).args(["-sS"]).args(args).output().await.unwrap()
}

async fn serve_with(dir: &Path, upstream: &Upstream) -> vaultgate::Server {
    ProxyToml::new().upstream(upstream.addr).certificate_files("cert.pem", "key.pem").start(dir).await.0
}

#[tokio::test]
async fn pkcs8_pkcs1_and_sec1_keys_all_serve() {
    let upstream = Upstream::standin().start().await;
    let keygens: [(&str, &[&str], &str); 4] = [
        ("rsa-pkcs1", &["genrsa", "-traditional", "-out", "key.pem", "2048"], "BEGIN RSA PRIVATE KEY"),
        (
            "ec-sec1",
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem"],
            "BEGIN EC PRIVATE KEY",
        ),
        (
            "ec-pkcs8",
            &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "key.pem"],
            "BEGIN PRIVATE KEY",
        ),
        ("ed25519-pkcs8", &["genpkey", "-algorithm", "ed25519", "-out", "key.pem"], "BEGIN PRIVATE KEY"),
    ];
    for (name, keygen, marker) in keygens {
        let dir = tempfile::tempdir().unwrap();
        openssl(dir.path(), keygen);
        let key = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
        assert!(key.contains(marker), "{name}: openssl wrote {key}");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "key.pem",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
                "-days",
                "2",
                "-out",
                "cert.pem",
            ],
        );
        let server = serve_with(dir.path(), &upstream).await;
        let url = format!("https://localhost:{}/alive", server.local_addr().port());
        let cacert = dir.path().join("cert.pem");
        let out = curl(&["--cacert", cacert.to_str().unwrap(), &url]).await;
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"\"alive\"", "{name}");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_with_h2_and_http1_alpn() {
    let h = Harness::start("").await;
    let ca = h.ca.ca_path.to_str().unwrap();
    let url = h.url("/alive");
    for (args, ok) in [
        (vec!["--tlsv1.3"], true),
        (vec!["--tlsv1.2", "--tls-max", "1.2"], true),
        (vec!["--tlsv1", "--tls-max", "1.1"], false),
    ] {
        let mut all = vec!["--cacert", ca, "-o", "/dev/null", "-w", "%{http_version}"];
        all.extend(args.iter().copied());
        all.push(&url);
        let out = curl(&all).await;
        assert_eq!(out.status.success(), ok, "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        if ok {
            assert_eq!(out.stdout, b"2", "{args:?}: curl negotiates h2 by ALPN");
        }
    }
    let out = curl(&["--cacert", ca, "--http1.1", "-o", "/dev/null", "-w", "%{http_version}", &url]).await;
    assert_eq!(out.stdout, b"1.1");

    // AEAD suites only: CBC is refused, GCM and ChaCha20 are served.
    for (suite, ok) in [
        ("ECDHE-ECDSA-AES128-SHA", false),
        ("ECDHE-ECDSA-AES256-SHA384", false),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", true),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", true),
    ] {
        let out =
            curl(&["--cacert", ca, "--tls-max", "1.2", "--ciphers", suite, "-o", "/dev/null", &url]).await;
        assert_eq!(out.status.success(), ok, "{suite}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let h = Harness::start("[timeouts]\ntls_handshake = \"300ms\"").await;
    let mut silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("the proxy closes a connection that never says hello")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // And a real client is still served.
    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/alive")).await.unwrap().status(), 200);
}

#[test]
fn the_default_local_ca_is_logged_with_the_fingerprint_of_the_root_that_verifies_what_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let config = ProxyToml::new().write(dir.path());
    let proxy = RunningBinary::start(&config, "");
    let logged = proxy
        .startup_log
        .iter()
        .find(|l| l.contains("certificate from vaultgate's local CA for localhost, 127.0.0.1, ::1"))
        .and_then(|l| l.split("SHA-256 fingerprint ").nth(1))
        .and_then(|rest| rest.split(')').next())
        .expect("a log line gives the root's fingerprint")
        .to_string();
    assert_eq!(logged.len(), 32 * 3 - 1, "{logged}");
    let export =
        Command::new(RunningBinary::PATH).args(["ca", "export", "--config"]).arg(&config).output().unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    std::fs::write(dir.path().join("root.pem"), &export.stdout).unwrap();
    let openssl = tool(Tool::Openssl).display().to_string();
    let fingerprint = Command::new(&openssl)
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(dir.path().join("root.pem"))
        .output()
        .unwrap();
    let exported = String::from_utf8_lossy(&fingerprint.stdout);
    assert!(exported.trim().ends_with(&format!("={logged}")), "exported {exported}, logged {logged}");
    // OpenSSL, trusting that root alone, verifies the served chain for localhost.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{openssl}' s_client -connect 127.0.0.1:{} -servername localhost -verify_hostname localhost -CAfile '{}' </dev/null 2>&1",
            proxy.port(),
            dir.path().join("root.pem").display()
        ))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Verify return code: 0 (ok)"), "{shown}");
}
