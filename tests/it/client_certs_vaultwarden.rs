//! Client certificates (issue #17) in front of the real Vaultwarden, with the
//! real clients: the `bw` CLI (which cannot present a certificate) refused
//! when one is required and served from an exempt network; headless Chromium
//! taking its certificate from an NSS database (HOME per test, so
//! `~/.pki/nssdb` is the test's own) and opening the page and the hub, and
//! refused with the page that says why when it has none.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::logs::LogCapture;
use crate::support::tools::ONE_BROWSER;
use crate::support::vaultwarden::Stack;
use crate::support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// `[tls.client_auth]` with `more` lines, as Stack::start's extra text.
fn client_auth(devices: &DeviceCa, more: &str) -> String {
    format!("[limits]\nworkers = 1\n\n[tls.client_auth]\nca = \"{}\"\n{more}\n", devices.root_path.display())
}

/// Runs `bw` (the npm package of tests/js) with `args`; (success, output).
async fn bw(s: &Stack, appdata: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let js = js_dir();
    let mut cmd = tokio::process::Command::new(js.join("node_modules/.bin/bw"));
    cmd.args(args)
        .env("BITWARDENCLI_APPDATA_DIR", appdata)
        .env("NODE_EXTRA_CA_CERTS", &s.ca.ca_path)
        .env("BW_NOINTERACTION", "true")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out =
        tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("bw finished").unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bw_login_is_refused_when_a_certificate_is_required() {
    let devices = DeviceCa::new();
    let s = Stack::start(&client_auth(&devices, "required = true")).await;
    let appdata = tempfile::tempdir().unwrap();
    let (ok, out) = bw(&s, appdata.path(), &["config", "server", &s.url()], &[]).await;
    assert!(ok, "{out}");
    let (ok, out) = bw(
        &s,
        appdata.path(),
        &["login", "--apikey"],
        &[("BW_CLIENTID", "user.00000000-0000-0000-0000-000000000000"), ("BW_CLIENTSECRET", "x")],
    )
    .await;
    assert!(!ok, "bw logged in without a certificate:\n{out}");
    assert!(out.contains("403"), "bw was told 403: {out}");
    let metrics = s.proxy().metrics().render();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vaultgate_client_cert_required_total "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(refused >= 1, "vaultgate refused bw's requests for lack of a certificate:\n{out}\n{metrics}");
    let log = s.log();
    assert!(!log.contains("/identity/connect/token"), "nothing of the login reached Vaultwarden:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bw_from_an_exempt_network_logs_in_and_works() {
    // The whole bw flow of vaultwarden.rs (API-key login, unlock, create,
    // sync, attachments) with the certificate required, from 127.0.0.1 exempt.
    let devices = DeviceCa::new();
    let s = Stack::start(&client_auth(&devices, "exempt_networks = [\"127.0.0.1\"]")).await;
    let child = node_script(
        "vaultwarden.mjs",
        &s.url(),
        &s.ca.ca_path,
        &[("VG_MODE", "bw"), ("VG_TIMEOUT", "120")],
        Stdio::piped(),
    );
    let out =
        tokio::time::timeout(Duration::from_secs(150), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "OK"),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    for step in [
        "bw logged in with the API key",
        "bw synced and listed the item",
        "bw downloaded the attachment intact",
    ] {
        assert!(stdout.contains(step), "{step}:\n{stdout}");
    }
    let metrics = s.proxy().metrics().render();
    assert!(metrics.lines().any(|l| l == "vaultgate_client_cert_required_total 0"), "{metrics}");
}

/// A HOME whose NSS database (`~/.pki/nssdb`, where Chromium on Linux keeps
/// client certificates) holds `device`, imported from PKCS#12 as a user would.
fn nss_home(device: Option<&Device>) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt-get install libnss3-tools)"));
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(std::process::Command::new("certutil").args(["-N", "--empty-password", "-d", &db_arg]));
    if let Some(device) = device {
        let p12 = home.path().join("device.p12");
        run(std::process::Command::new(tool(Tool::Openssl))
            .args(["pkcs12", "-export", "-passout", "pass:test", "-name", "device", "-in"])
            .arg(&device.chain_path)
            .arg("-inkey")
            .arg(&device.key_path)
            .arg("-out")
            .arg(&p12));
        run(std::process::Command::new("pk12util").args(["-d", &db_arg, "-W", "test", "-i"]).arg(&p12));
    }
    home
}

fn access_lines(log: &LogCapture, path: &str) -> Vec<String> {
    log.text()
        .lines()
        .filter(|l| l.contains("vaultgate::access") && l.contains(&format!(" path={path}")))
        .map(str::to_string)
        .collect()
}

/// Required everywhere but where the Node client (which has no certificate)
/// creates the account and the cipher: the page and the hub need one.
fn for_chromium(devices: &DeviceCa) -> String {
    client_auth(devices, "exempt_paths = [\"/api/\", \"/identity/\"]")
}

#[test]
fn chromium_with_a_certificate_in_its_nss_database_opens_the_page_and_the_hub() {
    let log = LogCapture::new();
    log.run(async {
        let _one = ONE_BROWSER.lock().await;
        let devices = DeviceCa::new();
        let s = Stack::start(&for_chromium(&devices)).await;
        let home = nss_home(Some(&devices.phone));
        let page = "/alive?page=with-certificate";
        let spki = s.ca.leaf_spki_sha256.clone();
        let chromium = tool(Tool::Chromium).display().to_string();
        let home_path = home.path().display().to_string();
        let mut child = node_script(
            "browser_vaultwarden.mjs",
            &s.url(),
            &s.ca.ca_path,
            &[
                ("VG_SPKI", &spki),
                ("VG_CHROMIUM", &chromium),
                ("VG_PAGE", page),
                ("HOME", &home_path),
                ("VG_AUTO_SELECT_CERT", "1"),
            ],
            Stdio::piped(),
        );
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut out = String::new();
        let ready = script_ready(&mut lines, &mut out).await;
        assert!(ready, "the page did not get its notification:\n{out}\n{}", log.text());
        let subject = format!("cert_subject=\"{}\"", devices.phone.subject);
        let page_line = access_lines(&log, page)
            .pop()
            .unwrap_or_else(|| panic!("the page was not logged:\n{}", log.text()));
        assert!(page_line.contains("status=200") && page_line.contains(&subject), "{page_line}");
        let hub = within("the hub's access line", async {
            loop {
                if let Some(l) = access_lines(&log, "/notifications/hub").pop() {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(hub.contains(&subject), "the hub came with the certificate: {hub}");
        stdin.write_all(b"done\n").await.unwrap();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push_str(&line);
            out.push('\n');
        }
        assert!(child.wait().await.unwrap().success(), "{out}");
        let metrics = s.proxy().metrics().render();
        assert!(metrics.lines().any(|l| l == "vaultgate_client_cert_required_total 0"), "{metrics}");
    })
}

#[test]
fn chromium_without_a_certificate_gets_the_page_that_says_so() {
    let log = LogCapture::new();
    log.run(async {
        let _one = ONE_BROWSER.lock().await;
        let devices = DeviceCa::new();
        let s = Stack::start(&for_chromium(&devices)).await;
        let home = nss_home(None);
        let spki = s.ca.leaf_spki_sha256.clone();
        let chromium = tool(Tool::Chromium).display().to_string();
        let home_path = home.path().display().to_string();
        let child = node_script(
            "browser_vaultwarden.mjs",
            &s.url(),
            &s.ca.ca_path,
            &[
                ("VG_SPKI", &spki),
                ("VG_CHROMIUM", &chromium),
                ("VG_PAGE", "/alive?page=without"),
                ("HOME", &home_path),
                ("VG_AUTO_SELECT_CERT", "1"),
                ("VG_EXPECT_PAGE", "403"),
            ],
            Stdio::piped(),
        );
        let out =
            tokio::time::timeout(Duration::from_secs(90), child.wait_with_output()).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("this vault requires a device certificate"), "{stdout}");
    })
}
