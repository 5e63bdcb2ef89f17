//! The local CA (`[tls] local_ca`, the default without cert/key/acme): the
//! root survives restarts, clients that trust the exported root (rustls,
//! curl) verify the leaf for every name and address, the leaf is what iOS
//! accepts, a running proxy renews it, and a broken root is named, never
//! replaced.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::support::*;

/// What clients use in these tests: a name (curl reaches it with
/// `--resolve`) and both loopback addresses.
const NAMES: [&str; 3] = ["vault.home.arpa", "127.0.0.1", "::1"];

fn local_ca_toml(upstream: std::net::SocketAddr, extra: &str) -> ProxyToml {
    let names = NAMES.map(|n| format!("\"{n}\"")).join(", ");
    ProxyToml::new().upstream(upstream).tls(&format!("local_ca = {{ names = [{names}]{extra} }}"))
}

/// `vaultgate ca export --config CONFIG --der DIR/root.crt`: the PEM on
/// stdout, the DER file, and the steps on stderr.
fn export(config: &Path) -> (String, Vec<u8>, String) {
    let der = config.parent().unwrap().join("root.crt");
    let out = Command::new(RunningBinary::PATH)
        .args(["ca", "export", "--config"])
        .arg(config)
        .arg("--der")
        .arg(&der)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "ca export: {stdout}{stderr}");
    (stdout, std::fs::read(der).unwrap(), stderr)
}

/// The certificate the proxy at `port` shows a client that asks for `name`
/// and trusts only `root` (the handshake verifies it).
async fn served_leaf(root: &CertificateDer<'static>, port: u16, name: &str) -> CertificateDer<'static> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let tls = Connector::trusting(root.clone(), addr, name).tls(&[b"http/1.1"]).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// curl trusting only the PEM file `cacert`, asking for `name` (a DNS name
/// resolved to 127.0.0.1, or an address reached through 127.0.0.1).
async fn curl_alive(cacert: &Path, port: u16, name: &str) -> std::process::Output {
    let (url, route) = match name.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => {
            (format!("https://[{ip}]:{port}/alive"), format!("[{ip}]:{port}:127.0.0.1:{port}"))
        }
        Ok(ip) => (format!("https://{ip}:{port}/alive"), format!("{ip}:{port}:127.0.0.1:{port}")),
        Err(_) => (format!("https://{name}:{port}/alive"), format!("{name}:{port}:127.0.0.1")),
    };
    let option = if name.parse::<std::net::IpAddr>().is_ok() { "--connect-to" } else { "--resolve" };
    tokio::process::Command::new(tool(Tool::Curl))
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(cacert)
        .args([option, &route])
        .arg(url)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn clients_trusting_the_exported_root_verify_the_leaf_for_every_name_across_a_restart() {
    let upstream = Upstream::standin().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = local_ca_toml(upstream.addr, "").write(dir.path());
    let proxy = RunningBinary::start(&config, "");
    let notice =
        proxy.startup_log.iter().find(|l| l.contains("local CA for vault.home.arpa, 127.0.0.1, ::1"));
    let notice = notice.unwrap_or_else(|| panic!("no local CA line:\n{}", proxy.startup_log.join("\n")));

    let (pem, der, steps) = export(&config);
    let root = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(root.as_ref(), &der[..], "the .crt is the same root, as DER");
    let fingerprint = sha256_hex(&der).to_uppercase();
    let colons: Vec<String> =
        fingerprint.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into()).collect();
    let colons = colons.join(":");
    assert!(notice.contains(&colons), "the start names the root's fingerprint: {notice}");
    assert!(steps.contains(&colons), "{steps}");
    for needle in [
        "Android",
        "Install a certificate",
        "iOS",
        "Certificate Trust Settings",
        "full trust",
        "update-ca-certificates",
    ] {
        assert!(steps.contains(needle), "the steps mention {needle}: {steps}");
    }
    let cacert = dir.path().join("exported.pem");
    std::fs::write(&cacert, &pem).unwrap();

    let first = served_leaf(&root, proxy.port(), NAMES[0]).await;
    for name in NAMES {
        assert_eq!(served_leaf(&root, proxy.port(), name).await, first, "rustls, {name}");
        let out = curl_alive(&cacert, proxy.port(), name).await;
        assert!(out.status.success(), "curl, {name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"\"alive\"", "curl, {name}");
    }
    // A name the leaf is not for is refused by the same clients.
    let out = curl_alive(&cacert, proxy.port(), "other.home.arpa").await;
    assert!(!out.status.success(), "curl accepted a name the leaf is not for");

    let (status, _) = proxy.stop();
    assert!(status.success());
    let proxy = RunningBinary::start(&config, "");
    let (pem_again, _, _) = export(&config);
    assert_eq!(pem_again, pem, "the same root after a restart");
    assert_eq!(served_leaf(&root, proxy.port(), NAMES[0]).await, first, "and the same leaf");
    let out = curl_alive(&cacert, proxy.port(), NAMES[0]).await;
    assert!(out.status.success(), "curl after the restart: {}", String::from_utf8_lossy(&out.stderr));

    let state = dir.path().join("local-ca");
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    for file in ["root.pem", "root-key.pem", "leaf.pem", "leaf-key.pem"] {
        let mode = std::fs::metadata(state.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

#[tokio::test]
async fn the_leaf_is_what_ios_demands_of_a_trusted_server_certificate() {
    let upstream = Upstream::standin().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = local_ca_toml(upstream.addr, "").write(dir.path());
    let proxy = RunningBinary::start(&config, "");
    let (pem, _, _) = export(&config);
    let root = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let leaf = served_leaf(&root, proxy.port(), NAMES[0]).await;
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();

    let eku = cert.extended_key_usage().unwrap().expect("an extended key usage").value;
    assert!(eku.server_auth, "serverAuth");
    assert!(!eku.any && !eku.client_auth && !eku.code_signing, "serverAuth only: {eku:?}");
    let san = cert.subject_alternative_name().unwrap().expect("a subject alternative name").value;
    let mut listed: Vec<String> = san
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
            }
            GeneralName::IPAddress(b) => {
                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
            }
            other => panic!("unexpected SAN entry {other:?}"),
        })
        .collect();
    listed.sort();
    let mut expected = NAMES.map(String::from).to_vec();
    expected.sort();
    assert_eq!(listed, expected, "every name and address, as DNS and IP entries");
    let basic = cert.basic_constraints().unwrap().map(|b| b.value.ca);
    assert_ne!(basic, Some(true), "not a CA");
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(lifetime <= 825 * 86400, "iOS: at most 825 days, {lifetime} s");
    assert!(lifetime <= 398 * 86400, "and under the 398 days of public CAs, {lifetime} s");
    assert!(lifetime >= 365 * 86400, "the default is 365 days, {lifetime} s");
    // The root: a CA whose key signs certificates.
    let (_, root_cert) = X509Certificate::from_der(&root).unwrap();
    assert_eq!(root_cert.basic_constraints().unwrap().map(|b| b.value.ca), Some(true));
    assert!(root_cert.key_usage().unwrap().unwrap().value.key_cert_sign());
    assert_eq!(cert.issuer(), root_cert.subject());
    drop(proxy);
}

#[tokio::test]
async fn a_running_proxy_renews_the_leaf_from_the_same_root_and_keeps_open_connections() {
    let upstream = Upstream::standin().start().await;
    let dir = tempfile::tempdir().unwrap();
    // 30 s, the shortest lifetime: renewed when 10 s remain, 20 s on.
    let config = local_ca_toml(upstream.addr, ", lifetime = \"30s\"").write(dir.path());
    let proxy = RunningBinary::start(&config, "");
    let (pem, _, _) = export(&config);
    let root = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.port()));
    let client = Connector::trusting(root.clone(), addr, NAMES[0]);
    let first = served_leaf(&root, proxy.port(), NAMES[0]).await;
    let mut open = client.h1().await;
    assert_eq!(open.send_request(get("/alive")).await.unwrap().status(), 200);

    proxy.wait_for_log(&["local CA: new certificate for vault.home.arpa", "installed"], 60).await;
    let second = served_leaf(&root, proxy.port(), NAMES[0]).await;
    assert_ne!(second, first, "new connections get the renewed leaf, verified against the same root");
    let stored = std::fs::read(dir.path().join("local-ca/leaf.pem")).unwrap();
    assert_eq!(CertificateDer::from_pem_slice(&stored).unwrap(), second, "and it is stored");
    assert_eq!(open.send_request(get("/alive")).await.unwrap().status(), 200, "the open connection lives on");
    let (_, cert) = X509Certificate::from_der(&second).unwrap();
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(lifetime, 30 + 3600, "30 s, and started an hour back for clocks that lag");
}

#[tokio::test]
async fn a_corrupted_or_unreadable_root_is_named_and_never_replaced() {
    let upstream = Upstream::standin().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = local_ca_toml(upstream.addr, "").write(dir.path());
    drop(RunningBinary::start(&config, ""));
    let root_file = dir.path().join("local-ca/root.pem");
    let key_file = dir.path().join("local-ca/root-key.pem");
    let good_key = std::fs::read(&key_file).unwrap();
    let root_pem = std::fs::read(&root_file).unwrap();

    // A start that wrongly succeeded would serve forever: `timeout` ends it.
    let run = |args: &[&str]| {
        let out = Command::new("timeout")
            .arg("20")
            .arg(RunningBinary::PATH)
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let corrupted = b"-----BEGIN PRIVATE KEY-----\ncut short by a full disk\n";
    std::fs::remove_file(&key_file).unwrap();
    std::fs::create_dir(&key_file).unwrap(); // unreadable, even to root
    for (what, expect, fix) in [
        (
            "unreadable",
            "cannot read the file",
            "fix: run vaultgate as the user that owns the state directory",
        ),
        ("corrupted", "not a private key", "fix: restore it from a backup"),
    ] {
        if what == "corrupted" {
            std::fs::remove_dir(&key_file).unwrap();
            std::fs::write(&key_file, corrupted).unwrap();
        }
        for args in [&["check"][..], &[][..], &["ca", "export"][..]] {
            let (ok, text) = run(args);
            assert!(!ok, "{what}, {args:?}: {text}");
            assert!(
                text.contains(&key_file.display().to_string()),
                "{what}, {args:?} names the file: {text}"
            );
            assert!(text.contains(expect) && text.contains(fix), "{what}, {args:?}: {text}");
        }
    }
    assert_eq!(std::fs::read(&key_file).unwrap(), corrupted, "the key is left as it was");
    std::fs::write(&root_file, "not a certificate").unwrap();
    let (ok, text) = run(&[]);
    assert!(!ok && text.contains("root.pem: not a PEM certificate"), "{text}");
    assert_eq!(std::fs::read(&root_file).unwrap(), b"not a certificate", "no new root in its place");
    // With its files back, the same root serves again.
    std::fs::write(&root_file, root_pem).unwrap();
    std::fs::write(&key_file, good_key).unwrap();
    let (ok, text) = run(&["check"]);
    assert!(ok && text.contains("local CA: root in"), "{text}");
}

#[tokio::test]
async fn the_probe_on_the_repos_own_proxy_toml_says_what_is_true() {
    let upstream = Upstream::standin().start().await;
    let dir = tempfile::tempdir().unwrap();
    // The repository's own file, on a free port and in front of the stand-in.
    let own = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml")).unwrap();
    assert!(
        own.contains("listen = \"127.0.0.1:8443\"") && own.contains("upstream = \"http://127.0.0.1:8000\"")
    );
    let port = free_port();
    let text = own
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
        .replace("http://127.0.0.1:8000", &format!("http://{}", upstream.addr));
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    let proxy = RunningBinary::start(&config, "");

    // Async: the stand-in upstream answers on this test's runtime meanwhile.
    let probe = async |trust: Option<&Path>| {
        let mut command = tokio::process::Command::new(RunningBinary::PATH);
        command.args(["check", "--probe", "--config"]).arg(&config);
        // Nothing trusted (an empty bundle), or the exported root.
        command.env("SSL_CERT_FILE", trust.map_or_else(|| dir.path().join("none.pem"), Path::to_path_buf));
        let out = command.output().await.unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = probe(None).await;
    assert!(ok, "{text}");
    assert!(text.contains("✓ TLS: localhost answers with a certificate from vaultgate's local CA"), "{text}");
    assert!(text.contains("vaultgate ca export"), "{text}");
    assert!(!text.contains("full chain"), "not the advice for a chain missing its intermediate: {text}");
    assert!(text.contains("✓ Vaultwarden"), "{text}");

    let (pem, _, _) = export(&config);
    let trusted = dir.path().join("root.pem");
    std::fs::write(&trusted, pem).unwrap();
    let (ok, text) = probe(Some(&trusted)).await;
    assert!(ok && text.contains("✓ TLS: localhost answers, certificate trusted"), "{text}");
    drop(proxy);
}

#[tokio::test]
async fn the_probe_calls_a_self_signed_certificate_self_signed() {
    let upstream = Upstream::standin().start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let config =
        ProxyToml::new().upstream(upstream.addr).certificate_files("cert.pem", "key.pem").write(dir.path());
    let proxy = RunningBinary::start(&config, "");
    let probe_config = ProxyToml::new()
        .listen(format!("127.0.0.1:{}", proxy.port()))
        .upstream(upstream.addr)
        .certificate_files("cert.pem", "key.pem")
        .write_as(dir.path().join("probe.toml"));
    // Async: the stand-in answers the probe's later hops on this runtime.
    let out = tokio::process::Command::new(RunningBinary::PATH)
        .args(["check", "--probe", "--config"])
        .arg(&probe_config)
        .env("SSL_CERT_FILE", dir.path().join("none.pem"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("fix: the certificate is self-signed"), "{text}");
    assert!(text.contains("local CA"), "{text}");
    assert!(!text.contains("full chain"), "{text}");
    // And there is no local CA to export.
    let out =
        Command::new(RunningBinary::PATH).args(["ca", "export", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("not from the local CA"), "{text}");
    assert!(text.contains("fix: remove cert, key and acme from [tls]"), "{text}");
}

#[tokio::test]
async fn check_writes_nothing_and_a_reload_with_new_names_issues_from_the_same_root() {
    let upstream = Upstream::standin().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = local_ca_toml(upstream.addr, "").write(dir.path());
    // `check` may run as another user than the server: it makes no root.
    let out = Command::new(RunningBinary::PATH).args(["check", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("local CA: no root yet in"), "{text}");
    assert!(!dir.path().join("local-ca").exists(), "check made the state directory");
    let out =
        Command::new(RunningBinary::PATH).args(["ca", "export", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("start vaultgate once"), "{text}");
    assert!(!dir.path().join("local-ca").exists(), "ca export made the state directory");

    let proxy = RunningBinary::start(&config, "");
    let (pem, _, _) = export(&config);
    let root = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.port()));
    assert!(Connector::trusting(root.clone(), addr, "vault.lan").try_tls(&[b"http/1.1"]).await.is_err());
    let renamed = ProxyToml::new()
        .listen(format!("127.0.0.1:{}", proxy.port()))
        .upstream(upstream.addr)
        .tls("local_ca = { names = [\"vault.lan\", \"vault.home.arpa\"] }");
    renamed.write(dir.path());
    assert!(Command::new("kill").args(["-HUP", &proxy.pid().to_string()]).status().unwrap().success());
    proxy.wait_for_log(&["reload", "done"], 20).await;
    let leaf = served_leaf(&root, proxy.port(), "vault.lan").await;
    assert_eq!(served_leaf(&root, proxy.port(), "vault.home.arpa").await, leaf, "one leaf for both names");
    assert_eq!(export(&config).0, pem, "from the same root");
}
