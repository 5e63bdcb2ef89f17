//! The built `vaultgate` binary, run the way a user runs it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const BIN: &str = RunningBinary::PATH;

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(BIN).args(["check", "--config"]).arg(config).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_repos_own_proxy_toml_is_valid() {
    let (ok, text) = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml"));
    assert!(ok, "{text}");
    assert!(text.contains("listen 127.0.0.1:8443, upstream http://127.0.0.1:8000"), "{text}");
}

#[test]
fn unknown_key_names_file_line_key_and_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        write(dir.path(), "proxy.toml", "listen = \"127.0.0.1:8443\"\nupstrem = \"http://127.0.0.1:8000\"\n");
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(
        text.contains(&format!("{}:2: `upstrem`: unknown key", path.display())),
        "file, line and key: {text}"
    );
    assert!(text.contains("did you mean `upstream`?"), "{text}");
}

#[test]
fn missing_certificate_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = ProxyToml::empty().certificate_files("nowhere.pem", "nowhere-key.pem").write(dir.path());
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(
        text.contains(&format!("{}: cannot read the file", dir.path().join("nowhere.pem").display())),
        "{text}"
    );
}

#[test]
fn bad_pem_is_named_with_what_was_wrong() {
    let ca = TestCa::new();
    let dir = ca.dir.path();
    let garbage = write(dir, "garbage.pem", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
    let empty = write(dir, "empty.pem", "just some text\n");
    let key = &ca.key_path;

    let cfg = ProxyToml::empty().certificate_files(&garbage, key).write_as(dir.join("a.toml"));
    let (ok, text) = check(&cfg);
    assert!(!ok && text.contains(&format!("{}: not valid PEM", garbage.display())), "{text}");

    let cfg = ProxyToml::empty().certificate_files(&empty, key).write_as(dir.join("b.toml"));
    let (ok, text) = check(&cfg);
    assert!(!ok && text.contains("no certificate found"), "{text}");

    // The certificate given as the key.
    let cfg = ProxyToml::empty().certificate_files(&ca.cert_path, &ca.cert_path).write_as(dir.join("c.toml"));
    let (ok, text) = check(&cfg);
    assert!(!ok && text.contains("no private key found"), "{text}");

    // A key from another certificate.
    let other = TestCa::new();
    let cfg =
        ProxyToml::empty().certificate_files(&ca.cert_path, &other.key_path).write_as(dir.join("d.toml"));
    let (ok, text) = check(&cfg);
    assert!(!ok && text.contains("does not belong to the certificate"), "{text}");
}

#[test]
fn help_and_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("vaultgate "));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("vaultgate check"));
    let out = Command::new(BIN).arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn binary_serves_on_its_config_and_stops_on_sigterm() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let proxy = RunningBinary::start(&binary_toml(upstream.addr).write(ca.dir.path()), "");
    let url = format!("https://localhost:{}/alive?token=hunter2", proxy.port());
    assert_eq!(curl_get(&ca, &url).await, (true, b"\"alive\"".to_vec()));

    let (exit, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit}");
    assert!(log.contains("path=/alive?token=REDACTED"), "access line, token redacted:\n{log}");
    assert!(!log.contains("hunter2"), "a token reached the log:\n{log}");
    assert!(log.contains("status=200"), "{log}");
}

#[tokio::test]
async fn accept_loop_survives_running_out_of_descriptors() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    // A descriptor limit low enough that a few dozen connections exhaust it.
    let proxy = RunningBinary::start(&binary_toml(upstream.addr).write(ca.dir.path()), "ulimit -n 48 &&");
    let port = proxy.port();
    let mut hogs = Vec::new();
    for _ in 0..80 {
        hogs.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(hogs);

    // Once the load is gone, a real client is served again.
    let mut served = false;
    for _ in 0..50 {
        if curl_get(&ca, &format!("https://localhost:{port}/alive")).await.1 == b"\"alive\"" {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(log.contains("accept failed"), "descriptors really ran out:\n{log}");
    assert!(served, "served again after descriptor exhaustion:\n{log}");
}

#[tokio::test]
async fn hitting_a_connection_limit_is_logged() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let config =
        binary_toml(upstream.addr).extra("[limits]\nmax_connections_per_ip = 5").write(ca.dir.path());
    let proxy = RunningBinary::start(&config, "");
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tokio::net::TcpStream::connect(("127.0.0.1", proxy.port())).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(silent);
    let (_, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(
        log.contains("connection limit reached: max_connections_per_ip (5) for 127.0.0.1"),
        "a clear line names the limit and the address:\n{log}"
    );
    // 15 refusals within well under two seconds: at most one line per second.
    assert!(log.matches("connection limit reached").count() <= 2, "not one line per refusal:\n{log}");
}

#[test]
fn check_refuses_a_duration_that_would_overflow_later() {
    // Before the bound, this passed `check` and then every HTTP/2
    // connection panicked (Instant + Duration overflow).
    let ca = TestCa::new();
    let dir = ca.dir.path();
    for (table, key, max) in [
        ("timeouts", "keep_alive", "1d"),
        ("timeouts", "hub_idle", "7d"),
        ("timeouts", "request_body_idle", "1h"),
        ("timeouts", "request_header", "1h"),
        ("tls", "watch_interval", "1d"),
        ("login_guard", "window", "1d"),
        ("login_guard", "ban", "365d"),
    ] {
        let setting = format!("{key} = \"18446744073709551615s\"");
        let toml = ProxyToml::new().certificate_files(TestCa::CERT, TestCa::KEY);
        let toml =
            if table == "tls" { toml.tls(&setting) } else { toml.extra(&format!("[{table}]\n{setting}")) };
        let text = toml.text();
        let path = toml.write_as(dir.join("overflow.toml"));
        let out = Command::new(BIN).args(["check", "--config"]).arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key}: refused with exit 1, not a panic:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let line = text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        assert!(
            stderr.contains(&format!(
                "{}:{line}: `{table}.{key}`: `18446744073709551615s` is longer than the maximum of {max}",
                path.display()
            )),
            "file, line, key and maximum:\n{stderr}"
        );
        assert!(stderr.contains("fix: write a duration from"), "{stderr}");
    }
}

#[tokio::test]
async fn a_key_file_others_can_read_is_warned_about_at_start_and_in_check() {
    use std::os::unix::fs::PermissionsExt;
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let config = binary_toml(upstream.addr).write(ca.dir.path());
    let key = ca.key_path.display().to_string();
    let warning =
        format!("the private key {key} is readable by group and others (mode 644); run chmod 600 {key}");

    std::fs::set_permissions(&ca.key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let proxy = RunningBinary::start(&config, "");
    let startup = proxy.startup_log.join("\n");
    assert!(startup.contains("WARN") && startup.contains(&warning), "{startup}");
    drop(proxy);
    let (ok, text) = check(&config);
    assert!(ok, "a warning, not an error: {text}");
    assert!(text.contains(&format!("warning: {warning}")), "{text}");

    std::fs::set_permissions(&ca.key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let proxy = RunningBinary::start(&config, "");
    assert!(!proxy.startup_log.join("\n").contains("chmod"), "{:?}", proxy.startup_log);
    drop(proxy);
    let (ok, text) = check(&config);
    assert!(ok && !text.contains("chmod"), "{text}");
}
