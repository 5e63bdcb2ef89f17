//! The built `vaultgate` binary, run the way a user runs it.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

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
    let path = write(dir.path(), "proxy.toml", "[tls]\ncert = \"nowhere.pem\"\nkey = \"nowhere-key.pem\"\n");
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
    let key = ca.key_path.display();

    let cfg = write(dir, "a.toml", &format!("[tls]\ncert = \"{}\"\nkey = \"{key}\"\n", garbage.display()));
    let (ok, text) = check(&cfg);
    assert!(!ok && text.contains(&format!("{}: not valid PEM", garbage.display())), "{text}");

    let cfg = write(dir, "b.toml", &format!("[tls]\ncert = \"{}\"\nkey = \"{key}\"\n", empty.display()));
    let (ok, text) = check(&cfg);
    assert!(!ok && text.contains("no certificate found"), "{text}");

    // The certificate given as the key.
    let cfg =
        write(dir, "c.toml", &format!("[tls]\ncert = \"{0}\"\nkey = \"{0}\"\n", ca.cert_path.display()));
    let (ok, text) = check(&cfg);
    assert!(!ok && text.contains("no private key found"), "{text}");

    // A key from another certificate.
    let other = TestCa::new();
    let cfg = write(
        dir,
        "d.toml",
        &format!("[tls]\ncert = \"{}\"\nkey = \"{}\"\n", ca.cert_path.display(), other.key_path.display()),
    );
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
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
    let ca = TestCa::new();
    let proxy = RunningBinary::start(&binary_config(&ca, "127.0.0.1:0", upstream.addr), "");
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
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
    let ca = TestCa::new();
    // A descriptor limit low enough that a few dozen connections exhaust it.
    let proxy = RunningBinary::start(&binary_config(&ca, "127.0.0.1:0", upstream.addr), "ulimit -n 48 &&");
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
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
    let ca = TestCa::new();
    let config = binary_config(&ca, "127.0.0.1:0", upstream.addr);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[limits]\nmax_connections_per_ip = 5\n")).unwrap();
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
    ] {
        let tls = if table == "tls" { "" } else { "[tls]\n" };
        let text = format!(
            "listen = \"127.0.0.1:0\"\n{tls}cert = \"fullchain.pem\"\nkey = \"privkey.pem\"\n[{table}]\n{key} = \"18446744073709551615s\"\n"
        );
        let text = if table == "tls" {
            text.replacen("[tls]\n", "", 1).replacen("cert", "[tls]\ncert", 1)
        } else {
            text
        };
        let path = write(dir, "overflow.toml", &text);
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
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
    let ca = TestCa::new();
    let config = binary_config(&ca, "127.0.0.1:0", upstream.addr);
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
