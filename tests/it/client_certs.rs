//! Client certificates (`[tls.client_auth]`, issue #17): only devices with
//! a certificate of the configured CA reach the vault; exempt paths and
//! networks do without; revoked and expired certificates are refused at the
//! handshake; a new CRL applies to new connections. Certificates are made at
//! test time (support/devices.rs).

use std::path::Path;

use crate::support::logs::LogCapture;
use crate::support::*;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::ext::Protocol;

const PAGE: &str = "this vault requires a device certificate";

/// The proxy in front of the stand-in, requiring a certificate of `ca_file`,
/// with `more` in the client_auth table and `extra` as ProxyToml::extra.
async fn harness(devices: &DeviceCa, ca_file: &Path, more: &str, extra: &str) -> Harness {
    Harness::configured(
        ProxyToml::new().extra("[limits]\nworkers = 1").extra(extra).tls(&devices.client_auth(ca_file, more)),
    )
    .await
}

/// The status of `GET path` over HTTP/1.1, or why there was none.
async fn status_h1(c: &Connector, path: &str) -> Result<u16, String> {
    let mut h1 = c.try_h1().await.map_err(|e| e.to_string())?;
    let resp = h1.send_request(get(path)).await.map_err(|e| format!("{e:?}"))?;
    Ok(resp.status().as_u16())
}

/// The status of `GET url` over HTTP/2, or why there was none.
async fn status_h2(c: &Connector, url: &str) -> Result<u16, String> {
    let tls = c.try_tls(&[b"h2"]).await.map_err(|e| e.to_string())?;
    let (mut h2, _conn) = client::h2_over::<http_body_util::Full<bytes::Bytes>, _>(tls).await;
    let resp = h2.send_request(get(url)).await.map_err(|e| format!("{e:?}"))?;
    Ok(resp.status().as_u16())
}

fn extended_connect(url: &str) -> Request<Empty<bytes::Bytes>> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(url)
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut().insert(Protocol::from_static("websocket"));
    req
}

#[tokio::test]
async fn without_a_certificate_requests_get_the_page_and_never_reach_vaultwarden() {
    let devices = DeviceCa::new();
    let h = harness(&devices, &devices.root_path, "", "").await;
    let mut h1 = h.h1().await;
    let resp = h1.send_request(get("/api/sync")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
    assert!(body.contains(PAGE), "{body}");
    let resp = h.h2().await.send_request(get(&h.url("/alive"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "HTTP/2 alike");
    assert!(String::from_utf8_lossy(&body_bytes(resp).await).contains(PAGE));
    assert_eq!(h.upstream.requests(), 0, "nothing reached the upstream");
    let metrics = h.proxy().metrics().render();
    assert!(metrics.lines().any(|l| l == "vaultgate_client_cert_required_total 2"), "{metrics}");
}

#[tokio::test]
async fn a_device_certificate_is_served_over_http1_and_http2() {
    let devices = DeviceCa::new();
    let h = harness(&devices, &devices.root_path, "", "").await;
    let phone = h.client().with_client_cert(devices.phone.identity(true));
    assert_eq!(status_h1(&phone, "/alive").await, Ok(200));
    assert_eq!(status_h2(&phone, &h.url("/alive")).await, Ok(200));
    let metrics = h.proxy().metrics().render();
    let line = format!(
        "vaultgate_client_cert_connections_total{{subject=\"{}\",serial=\"{}\"}} 2",
        devices.phone.subject, devices.phone.serial
    );
    assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
}

#[tokio::test]
async fn a_leaf_alone_verifies_against_an_intermediate_anchor_not_against_the_root() {
    // iOS presents the leaf only: with the intermediate as the anchor, that is enough.
    let devices = DeviceCa::new();
    let h = harness(&devices, &devices.intermediate_path, "", "").await;
    let leaf_only = h.client().with_client_cert(devices.phone.identity(false));
    assert_eq!(status_h1(&leaf_only, "/alive").await, Ok(200));
    assert_eq!(status_h2(&leaf_only, &h.url("/alive")).await, Ok(200));
    // Root and intermediate in one file (root first): each is an anchor.
    let h = harness(&devices, &devices.both_path(), "", "").await;
    let leaf_only = h.client().with_client_cert(devices.phone.identity(false));
    assert_eq!(status_h1(&leaf_only, "/alive").await, Ok(200), "the second certificate is an anchor too");
    // With the root as the only anchor, the leaf alone has no path to it.
    let h = harness(&devices, &devices.root_path, "", "").await;
    let leaf_only = h.client().with_client_cert(devices.phone.identity(false));
    assert!(status_h1(&leaf_only, "/alive").await.is_err());
    let full = h.client().with_client_cert(devices.phone.identity(true));
    assert_eq!(status_h1(&full, "/alive").await, Ok(200), "the full chain does");
}

#[test]
fn revoked_expired_and_strangers_are_refused_at_the_handshake_with_a_log_line() {
    let logs = LogCapture::new();
    logs.run(async {
        let devices = DeviceCa::new();
        let crl = format!("crl = \"{}\"", devices.crl_path.display());
        let h = harness(&devices, &devices.both_path(), &crl, "").await;
        for (device, why) in [
            (&devices.revoked, "it is revoked"),
            (&devices.expired, "it has expired"),
            (&devices.stranger, "it is not issued by a [tls.client_auth] ca"),
        ] {
            let c = h.client().with_client_cert(device.identity(true));
            let refused = status_h1(&c, "/alive").await;
            assert!(refused.is_err(), "{}: {refused:?}", device.subject);
            assert!(status_h2(&c, &h.url("/alive")).await.is_err(), "{}", device.subject);
            // Only a revoked certificate's signatures were checked: the others
            // merely claim their subject.
            let what =
                if why == "it is revoked" { "client certificate" } else { "unverified certificate claiming" };
            let line = format!("{what} {} refused: {why}", device.subject);
            until(&line, || logs.text().contains(&line)).await;
        }
        // The CRL names only the revoked one.
        let phone = h.client().with_client_cert(devices.phone.identity(true));
        assert_eq!(status_h1(&phone, "/alive").await, Ok(200));
        assert_eq!(h.upstream.requests(), 1);
        let metrics = h.proxy().metrics().render();
        for reason in ["revoked", "expired", "unknown_issuer"] {
            let line = format!("vaultgate_client_cert_rejected_total{{reason=\"{reason}\"}} 2");
            assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
        }
    });
}

#[tokio::test]
async fn exempt_paths_are_served_without_a_certificate_and_only_on_the_normalised_path() {
    let devices = DeviceCa::new();
    let h = harness(&devices, &devices.root_path, "exempt_paths = [\"/icons/\", \"/alive\"]", "").await;
    let anonymous = h.client();
    for path in ["/icons/vault.example/icon.png", "/icons", "/alive", "/x/../icons/a.png"] {
        assert_eq!(status_h1(&anonymous, path).await, Ok(200), "{path}");
    }
    assert_eq!(status_h2(&anonymous, &h.url("/icons/a.png")).await, Ok(200));
    let served = h.upstream.requests();
    for path in ["/icons/../api/sync", "/icons/%2e%2e/api", "/ICONS/x", "/iconsx", "/icons;x/a", "/api/sync"]
    {
        assert_eq!(status_h1(&anonymous, path).await, Ok(403), "{path}");
    }
    assert_eq!(status_h2(&anonymous, &h.url("/icons/../api/sync")).await, Ok(403));
    assert_eq!(h.upstream.requests(), served, "none of those reached the upstream");
}

#[tokio::test]
async fn an_exempt_network_is_served_without_a_certificate() {
    let devices = DeviceCa::new();
    let h = harness(&devices, &devices.root_path, "exempt_networks = [\"127.0.0.2/32\"]", "").await;
    let lan = h.client().from("127.0.0.2");
    assert_eq!(status_h1(&lan, "/api/sync").await, Ok(200));
    assert_eq!(status_h2(&lan, &h.url("/api/sync")).await, Ok(200));
    assert_eq!(status_h1(&h.client(), "/api/sync").await, Ok(403), "127.0.0.1 is not exempt");
    // A client's X-Forwarded-For counts for nothing (no trusted proxies).
    let mut h1 = h.h1().await;
    let req = Request::get("/api/sync")
        .header("host", "localhost")
        .header("x-forwarded-for", "127.0.0.2")
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(h1.send_request(req).await.unwrap().status(), 403);
}

#[tokio::test]
async fn a_hub_opens_with_a_certificate_and_is_refused_without_over_both_protocols() {
    let devices = DeviceCa::new();
    let h = harness(&devices, &devices.root_path, "", "").await;
    let phone = h.client().with_client_cert(devices.phone.identity(true));
    let _ws = phone.ws("/notifications/hub?access_token=t").await;
    match h.client().try_ws("/notifications/hub?access_token=t").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("not refused: {:?}", other.map(|(_, r)| r.status())),
    }
    let mut h2 = phone.h2_for::<Empty<bytes::Bytes>>().await;
    let resp = h2.send_request(extended_connect(&h.url("/notifications/hub?access_token=t"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "RFC 8441 with a certificate");
    let mut h2 = h.client().h2_for::<Empty<bytes::Bytes>>().await;
    let resp = h2.send_request(extended_connect(&h.url("/notifications/hub?access_token=t"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "RFC 8441 without");
    assert_eq!(h.upstream.requests(), 2, "only the two with a certificate reached it");
}

#[tokio::test]
async fn not_required_verifies_a_certificate_when_given_and_never_demands_one() {
    let devices = DeviceCa::new();
    let crl = format!("crl = \"{}\", required = false", devices.crl_path.display());
    let h = harness(&devices, &devices.both_path(), &crl, "").await;
    assert_eq!(status_h1(&h.client(), "/api/sync").await, Ok(200));
    let phone = h.client().with_client_cert(devices.phone.identity(true));
    assert_eq!(status_h1(&phone, "/api/sync").await, Ok(200));
    let revoked = h.client().with_client_cert(devices.revoked.identity(true));
    assert!(status_h1(&revoked, "/api/sync").await.is_err(), "a bad one is still refused");
}

#[tokio::test]
async fn the_subject_header_carries_the_verified_subject_and_nothing_a_client_wrote() {
    let devices = DeviceCa::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let h = harness(
        &devices,
        &devices.root_path,
        "subject_header = \"X-Client-Cert-Subject\", exempt_paths = [\"/icons/\"]",
        &format!("[log]\naccess = \"{}\"\naccess_format = \"json\"", log.display()),
    )
    .await;
    let forged = |path: &str| {
        Request::get(path)
            .header("host", "localhost")
            .header("x-client-cert-subject", "CN=admin")
            .header("x-client-cert-subject", "CN=root")
            .body(http_body_util::Full::default())
            .unwrap()
    };
    let phone = h.client().with_client_cert(devices.phone.identity(true));
    let echo = echoed(phone.h1().await.send_request(forged("/api/sync")).await.unwrap()).await;
    assert_eq!(echoed_header(&echo, "x-client-cert-subject"), [devices.phone.subject.as_str()]);
    let echo = echoed(h.h1().await.send_request(forged("/icons/x")).await.unwrap()).await;
    assert!(echoed_header(&echo, "x-client-cert-subject").is_empty(), "removed: {echo}");
    // The access log names the certificate.
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("/api/sync")).expect("logged");
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["cert_subject"], devices.phone.subject.as_str(), "{line}");
    assert_eq!(json["cert_serial"], devices.phone.serial.as_str(), "{line}");
    let anonymous = text.lines().find(|l| l.contains("/icons/x")).unwrap();
    assert!(!anonymous.contains("cert_subject"), "{anonymous}");
}

#[tokio::test]
async fn curl_with_and_without_a_certificate_over_both_protocols() {
    let devices = DeviceCa::new();
    let h = harness(&devices, &devices.root_path, "", "").await;
    let curl = |cert: Option<&Device>, version: &'static str| {
        let mut cmd = tokio::process::Command::new(tool(Tool::Curl));
        cmd.args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            version,
        ])
        .arg("--cacert")
        .arg(&h.ca.ca_path);
        if let Some(d) = cert {
            cmd.arg("--cert").arg(&d.chain_path).arg("--key").arg(&d.key_path);
        }
        cmd.arg(h.url("/alive"));
        async move {
            let out = cmd.output().await.unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    for (version, shown) in [("--http1.1", "1.1"), ("--http2", "2")] {
        assert_eq!(curl(Some(&devices.phone), version).await, (true, format!("200 {shown}")), "{version}");
        assert_eq!(curl(None, version).await, (true, format!("403 {shown}")), "{version}");
        let (ok, _) = curl(Some(&devices.revoked), version).await;
        assert!(ok, "no CRL configured here: the revoked one is a valid certificate");
        let (ok, out) = curl(Some(&devices.stranger), version).await;
        assert!(!ok, "another CA's certificate fails the handshake: {out}");
    }
}

#[tokio::test]
async fn a_new_crl_on_disk_refuses_the_device_on_new_and_open_connections_and_keeps_the_others() {
    let devices = DeviceCa::new();
    let upstream = Upstream::standin().start().await;
    let crl = devices.dir.path().join("current.crl");
    std::fs::copy(&devices.empty_crl_path, &crl).unwrap();
    let config = binary_toml(upstream.addr)
        .tls("watch_interval = \"200ms\"")
        .tls(&devices.client_auth(&devices.both_path(), &format!("crl = \"{}\"", crl.display())))
        .write(TestCa::new().dir.keep().as_path());
    let proxy = RunningBinary::start(&config, "");
    let dir = config.parent().unwrap().to_path_buf();
    let server_ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let root = rustls::pki_types::pem::PemObject::from_pem_slice(&server_ca).unwrap();
    let c = Connector::trusting(root, format!("127.0.0.1:{}", proxy.port()).parse().unwrap(), "localhost");
    let tablet = c.clone().with_client_cert(devices.tablet.identity(true));
    let mut open = tablet.h1().await;
    assert_eq!(open.send_request(get("/alive")).await.unwrap().status(), 200);
    let phone = c.clone().with_client_cert(devices.phone.identity(true));
    let mut phone_open = phone.h1().await;
    assert_eq!(phone_open.send_request(get("/alive")).await.unwrap().status(), 200);

    let tablet_serial = u64::from_str_radix(&devices.tablet.serial, 16).unwrap();
    std::fs::write(&crl, devices.crl(&[tablet_serial])).unwrap();
    proxy.wait_for_log(&["reload (the certificate files changed) done"], 20).await;
    assert!(status_h1(&tablet, "/alive").await.is_err(), "a new connection with the tablet is refused");
    proxy.wait_for_log(&["client certificate CN=tablet,O=vaultgate tests refused: it is revoked"], 10).await;
    let next = open.send_request(get("/alive")).await.map(|r| r.status().as_u16());
    assert!(matches!(next, Ok(403) | Err(_)), "the tablet's open connection is refused too: {next:?}");
    proxy
        .wait_for_log(&["closing the connection and its hubs: its client certificate no longer verifies"], 10)
        .await;
    assert_eq!(phone_open.send_request(get("/alive")).await.unwrap().status(), 200, "the phone's stays");
    assert_eq!(status_h1(&phone, "/alive").await, Ok(200));

    // A CRL that does not parse is refused; the last good one stays in force.
    std::fs::write(&crl, "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").unwrap();
    proxy.wait_for_log(&["reload (the certificate files changed) refused"], 20).await;
    assert!(status_h1(&tablet, "/alive").await.is_err());
    assert_eq!(status_h1(&phone, "/alive").await, Ok(200));
    let _ = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_says_what_is_wrong_with_the_files() {
    let devices = DeviceCa::new();
    let ca = TestCa::new();
    let dir = devices.dir.path();
    let write = |name: &str, text: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let check = |ca_file: &Path, more: &str| {
        let config = ProxyToml::new()
            .upstream("127.0.0.1:8000".parse().unwrap())
            .certificate(&ca)
            .tls(&devices.client_auth(ca_file, more))
            .write(dir);
        let out = std::process::Command::new(RunningBinary::PATH)
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let missing = dir.join("missing.pem");
    let not_pem = write("not-pem.pem", b"hello\n");
    let broken_pem = write("broken.pem", b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n");
    let key_only = std::fs::read(&devices.phone.key_path).unwrap();
    let key_only = write("key-only.pem", &key_only);
    let bad_crl = write("bad.crl", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n");
    // The review's F1: the root revoking what its intermediate issued, with
    // the intermediate as the anchor, would revoke nothing.
    let revoked = u64::from_str_radix(&devices.revoked.serial, 16).unwrap();
    let root_crl = write("root.crl", devices.crl_by(CrlSigner::Root, &[revoked]).as_bytes());
    let other_key_crl = write("other-key.crl", devices.crl_by(CrlSigner::SameNameOtherKey, &[]).as_bytes());
    let twice = format!("{}{}", devices.crl(&[]), devices.crl(&[revoked]));
    let twice = write("twice.crl", twice.as_bytes());
    let no_crl_sign = devices.intermediate_without_crl_sign();
    let no_crl = write("no.crl", b"nothing\n");
    let crl = |p: &Path| format!("crl = \"{}\"", p.display());
    let with_key = write(
        "ca-and-key.pem",
        format!(
            "{}{}",
            std::fs::read_to_string(&devices.root_path).unwrap(),
            std::fs::read_to_string(&devices.phone.key_path).unwrap()
        )
        .as_bytes(),
    );
    let ca_key = "the file holds a private key; ca wants your device CA's certificate alone (devices-ca.pem), never its key";
    for (ca_file, more, says) in [
        (missing.as_path(), String::new(), format!("{}: [tls.client_auth] ca: cannot read the file", missing.display())),
        (
            &not_pem,
            String::new(),
            format!("{}: [tls.client_auth] ca: no certificate found; ca wants your device CA's certificate", not_pem.display()),
        ),
        (&broken_pem, String::new(), format!("{}: [tls.client_auth] ca: not valid PEM", broken_pem.display())),
        (&key_only, String::new(), format!("{}: [tls.client_auth] ca: {ca_key}", key_only.display())),
        (&with_key, String::new(), format!("{}: [tls.client_auth] ca: {ca_key}", with_key.display())),
        (
            &devices.root_path,
            crl(&bad_crl),
            format!("{}: [tls.client_auth] crl: the certificate revocation list does not parse", bad_crl.display()),
        ),
        (
            &devices.root_path,
            crl(&no_crl),
            format!("{}: [tls.client_auth] crl: no certificate revocation list found;", no_crl.display()),
        ),
        (
            &devices.root_path,
            crl(&devices.root_path),
            "no certificate revocation list found (the file holds a certificate: the CA's goes in ca)".into(),
        ),
        (
            &devices.root_path,
            crl(&key_only),
            "no certificate revocation list found (the file holds a private key: never give vaultgate a CA's key)"
                .into(),
        ),
        (&devices.root_path, crl(&missing), format!("{}: [tls.client_auth] crl: cannot read the file", missing.display())),
        (
            &devices.intermediate_path,
            crl(&root_crl),
            format!(
                "{}: [tls.client_auth] crl: this CRL is issued by CN=vaultgate test devices root, which is no certificate in ca, so it would revoke nothing; give crl the CRL of the CA that issues your devices",
                root_crl.display()
            ),
        ),
        (
            &devices.root_path,
            crl(&devices.crl_path),
            "is issued by CN=vaultgate test devices intermediate, which is no certificate in ca".into(),
        ),
        (
            &devices.intermediate_path,
            crl(&other_key_crl),
            format!(
                "{}: [tls.client_auth] crl: this CRL names CN=vaultgate test devices intermediate as its issuer but is not signed by the key of that certificate in ca",
                other_key_crl.display()
            ),
        ),
        (
            &devices.intermediate_path,
            crl(&twice),
            format!(
                "{}: [tls.client_auth] crl: more than one CRL from CN=vaultgate test devices intermediate, and only the first would count; keep only the newest",
                twice.display()
            ),
        ),
        (
            &no_crl_sign,
            crl(&devices.crl_path),
            format!(
                "{}: [tls.client_auth] crl: CN=vaultgate test devices intermediate in ca may not sign CRLs (its key usage lacks cRLSign)",
                devices.crl_path.display()
            ),
        ),
    ] {
        let (ok, text) = check(ca_file, &more);
        assert!(!ok && text.contains(&says), "want {says:?}:\n{text}");
        assert!(!text.contains("fullchain"), "the server certificate's advice: {text}");
    }
    let (ok, text) = check(&devices.both_path(), &crl(&devices.crl_path));
    assert!(ok, "{text}");
    assert!(!text.contains("warning: /"), "{text}");
    assert!(
        text.contains("client certificates: required (2 trust anchors: CN=vaultgate test devices root; CN=vaultgate test devices intermediate); 1 CRL from"),
        "{text}"
    );
    assert!(text.contains("(issued by CN=vaultgate test devices intermediate)"), "{text}");
}

#[test]
fn check_warns_of_anchors_and_exempt_networks_that_let_more_in_than_meant() {
    let devices = DeviceCa::new();
    let ca = TestCa::new();
    let dir = devices.dir.path();
    let check = |ca_file: &Path, more: &str| {
        let config = ProxyToml::new()
            .upstream("127.0.0.1:8000".parse().unwrap())
            .certificate(&ca)
            .tls(&devices.client_auth(ca_file, more))
            .write(dir);
        let out = std::process::Command::new(RunningBinary::PATH)
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "warnings only: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let ca_cert = |cn: &str, expired: bool| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if expired {
            p.not_before = rcgen::date_time_ymd(2018, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        p.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()
    };
    // A device's own certificate as the anchor (the nginx self-signed habit).
    let text = check(&devices.phone.leaf_path, "");
    assert!(text.contains("warning: ") && text.contains("ca: CN=phone,O=vaultgate tests is not a CA certificate (no basicConstraints CA:TRUE), yet it is trusted as one"), "{text}");
    let expired = dir.join("expired-ca.pem");
    std::fs::write(&expired, ca_cert("old devices", true)).unwrap();
    let text = check(&expired, "");
    assert!(
        text.contains("ca: CN=old devices expired on 2020-01-01, and is still trusted as an anchor"),
        "{text}"
    );
    let bundle = dir.join("bundle.pem");
    std::fs::write(&bundle, (0..21).map(|i| ca_cert(&format!("public CA {i}"), false)).collect::<String>())
        .unwrap();
    let text = check(&bundle, "");
    assert!(text.contains("ca: 21 certificates, each a device CA: is this a system bundle"), "{text}");
    for (net, covers) in [
        ("172.16.0.0/12", "172.17.0.1, Docker's bridge gateway"),
        ("127.0.0.0/8", "127.0.0.1, loopback"),
        ("::1/128", "::1, loopback"),
    ] {
        let text = check(&devices.root_path, &format!("exempt_networks = [\"{net}\"]"));
        assert!(
            text.contains(&format!("[tls.client_auth] exempt_networks: {net} covers {covers}")),
            "{net}: {text}"
        );
    }
    let text = check(&devices.root_path, "exempt_networks = [\"192.168.1.0/24\"]");
    assert!(!text.contains("[tls.client_auth]"), "a LAN is what exempt_networks is for: {text}");
}

#[test]
fn a_huge_hostile_subject_is_cut_and_escaped_in_the_log_and_the_server_goes_on() {
    // The subject of a certificate that did not verify is the client's
    // text: 30 000 bytes with a terminal escape in them.
    let logs = LogCapture::new();
    logs.run(async {
        let devices = DeviceCa::new();
        let h = harness(&devices, &devices.root_path, "", "").await;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, format!("\u{1b}[2J{}", "x".repeat(30_000)));
        let big = p.self_signed(&key).unwrap();
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        let c = h.client().with_client_cert((vec![big.der().clone()], der.into()));
        assert!(status_h1(&c, "/alive").await.is_err());
        until("the refusal", || logs.text().contains("refused: it is not issued")).await;
        let text = logs.text();
        let line = text.lines().find(|l| l.contains("refused: it is not issued")).unwrap();
        assert!(line.len() < 1200, "cut short: {} bytes", line.len());
        assert!(line.contains("CN=\\\\x1b[2Jxxx") && !line.contains('\u{1b}'), "{line}");
        let phone = h.client().with_client_cert(devices.phone.identity(true));
        assert_eq!(status_h1(&phone, "/alive").await, Ok(200));
    });
}

#[test]
fn a_flood_of_refused_certificates_writes_a_few_log_lines_and_counts_them_all() {
    // Anyone may present a self-made "CN=alice-phone" as often as handshakes
    // go: the log gets the first few a minute, worded as a claim.
    let logs = LogCapture::new();
    logs.run(async {
        let devices = DeviceCa::new();
        let h = harness(&devices, &devices.root_path, "", "").await;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "alice-phone");
        let forged = p.self_signed(&key).unwrap();
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        let c = h.client().with_client_cert((vec![forged.der().clone()], der.into()));
        const TRIES: usize = 25;
        for _ in 0..TRIES {
            assert!(status_h1(&c, "/alive").await.is_err());
        }
        let metrics = h.proxy().metrics().render();
        let counted = format!("vaultgate_client_cert_rejected_total{{reason=\"unknown_issuer\"}} {TRIES}");
        assert!(metrics.lines().any(|l| l == counted), "{counted}\n{metrics}");
        let claim = "unverified certificate claiming CN=alice-phone refused: it is not issued by a [tls.client_auth] ca";
        until(claim, || logs.text().contains(claim)).await;
        let lines = logs.text().lines().filter(|l| l.contains(claim)).count();
        // Ten a minute; twice that if the flood straddled a minute's turn.
        assert!(lines <= 20, "{lines} log lines for {TRIES} refusals");
        assert!(!logs.text().contains("client certificate CN=alice-phone"), "worded as the device's own");
    });
}

/// A request over a fresh connection made with `config` (its session cache
/// shared with earlier connections, so TLS resumes); the status, or why none,
/// and whether the handshake was a resumption.
async fn resumed_status(
    h: &Harness,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> (Result<u16, String>, bool) {
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let tls = match tokio_rustls::TlsConnector::from(config.clone())
        .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return (Err(e.to_string()), false),
    };
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let status = async {
        let mut h1 =
            client::h1_over::<http_body_util::Full<bytes::Bytes>, _>(tls).await.map_err(|e| e.to_string())?;
        let resp = h1.send_request(get("/alive")).await.map_err(|e| format!("{e:?}"))?;
        Ok(resp.status().as_u16())
    }
    .await;
    (status, resumed)
}

#[tokio::test]
async fn a_resumed_session_keeps_its_certificate_and_a_reload_ends_resumption() {
    // Phones resume TLS sessions: the resumed connection must still count as
    // the device's (rustls restores the verified chain), and a CRL reloaded
    // since must not be skipped by resuming a session verified before it.
    let devices = DeviceCa::new();
    let crl = devices.dir.path().join("current.crl");
    std::fs::copy(&devices.empty_crl_path, &crl).unwrap();
    let toml = ProxyToml::new()
        .extra("[limits]\nworkers = 1")
        .tls(&devices.client_auth(&devices.both_path(), &format!("crl = \"{}\"", crl.display())));
    let h = Harness::configured(toml.clone()).await;
    let config = resuming_client(&h, &devices.tablet);
    assert_eq!(resumed_status(&h, &config).await, (Ok(200), false));
    assert_eq!(resumed_status(&h, &config).await, (Ok(200), true), "resumed, and still the tablet's");

    let tablet_serial = u64::from_str_radix(&devices.tablet.serial, 16).unwrap();
    std::fs::write(&crl, devices.crl(&[tablet_serial])).unwrap();
    let config_path = toml.certificate(&h.ca).upstream(h.upstream.addr).write(h.ca.dir.path());
    h.proxy().reload(vaultgate::Config::load(&config_path).unwrap()).unwrap();
    let (status, _) = resumed_status(&h, &config).await;
    assert!(status.is_err(), "the revoked tablet cannot resume its way past the new CRL: {status:?}");
}

/// A client configuration presenting `device`'s chain over HTTP/1.1, with
/// rustls's default session cache (so later connections resume).
fn resuming_client(h: &Harness, device: &Device) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(h.ca.ca_der.clone()).unwrap();
    let (chain, key) = device.identity(true);
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

#[test]
fn an_expired_certificate_cannot_resume_its_session() {
    // rustls restores a resumed session's chain without checking its dates
    // again, and issues fresh tickets on every resumption: a device whose
    // short-lived certificate has expired must still be shut out.
    let logs = LogCapture::new();
    logs.run(async {
        let devices = DeviceCa::new();
        let h = harness(&devices, &devices.root_path, "", "").await;
        let ends = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
        let guest = devices.device_until("guest tablet", 900, ends);
        let config = resuming_client(&h, &guest);
        assert_eq!(resumed_status(&h, &config).await, (Ok(200), false));
        assert_eq!(resumed_status(&h, &config).await, (Ok(200), true), "valid: resumed and served");
        // Waits for the certificate's own end, not for vaultgate.
        let left = ends - time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
        tokio::time::sleep(left.try_into().unwrap_or_default()).await;
        let (status, resumed) = resumed_status(&h, &config).await;
        assert!(resumed, "the session did resume (else this proves nothing)");
        assert!(status.is_err(), "expired, resumed: closed before any request: {status:?}");
        let line =
            "unverified certificate claiming CN=guest tablet,O=vaultgate tests refused: it has expired";
        until(line, || logs.text().contains(line)).await;
        let fresh = h.client().with_client_cert(guest.identity(true));
        assert!(status_h1(&fresh, "/alive").await.is_err(), "a fresh handshake is refused too");
        assert_eq!(h.upstream.requests(), 2, "only the two before it expired");
        let metrics = h.proxy().metrics().render();
        let line = "vaultgate_client_cert_rejected_total{reason=\"expired\"} 2";
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    });
}

/// Reads `ws` until the proxy ends the tunnel (a Close frame, or the end).
async fn until_closed<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, what: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    within(what, async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
}

#[test]
fn a_reload_that_revokes_a_device_closes_the_connections_it_holds_open() {
    // A revoked phone in someone else's hands must not keep the vault over
    // a connection it never lets go: a keep-alive HTTP/1.1 connection, an
    // HTTP/2 one, hubs over both. Valid devices keep theirs.
    let logs = LogCapture::new();
    logs.run(async {
        let devices = DeviceCa::new();
        let crl = devices.dir.path().join("current.crl");
        std::fs::copy(&devices.empty_crl_path, &crl).unwrap();
        let toml = ProxyToml::new()
            .extra("[limits]\nworkers = 1")
            .tls(&devices.client_auth(&devices.both_path(), &format!("crl = \"{}\"", crl.display())));
        let h = Harness::configured(toml.clone()).await;
        let tablet = h.client().with_client_cert(devices.tablet.identity(true));
        let phone = h.client().with_client_cert(devices.phone.identity(true));
        let mut h1 = tablet.h1().await;
        assert_eq!(h1.send_request(get("/alive")).await.unwrap().status(), 200);
        let (mut h2, h2_conn) = tablet.h2_with_connection().await;
        assert_eq!(h2.send_request(get(&h.url("/alive"))).await.unwrap().status(), 200);
        let mut ws = tablet.ws("/notifications/hub?access_token=t").await;
        let mut h2_hub = tablet.h2_for::<Empty<bytes::Bytes>>().await;
        let resp = h2_hub.send_request(extended_connect(&h.url("/notifications/hub?access_token=t"))).await;
        let mut h2_ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(hyper::upgrade::on(resp.unwrap()).await.unwrap()),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        let mut phone_h1 = phone.h1().await;
        assert_eq!(phone_h1.send_request(get("/alive")).await.unwrap().status(), 200);
        let served = h.upstream.requests();

        let tablet_serial = u64::from_str_radix(&devices.tablet.serial, 16).unwrap();
        std::fs::write(&crl, devices.crl(&[tablet_serial])).unwrap();
        let config_path = toml.certificate(&h.ca).upstream(h.upstream.addr).write(h.ca.dir.path());
        h.proxy().reload(vaultgate::Config::load(&config_path).unwrap()).unwrap();

        // The next request on either connection is refused (403, or the
        // connection already closed), and the connections end.
        let next = h1.send_request(get("/alive")).await.map(|r| r.status().as_u16());
        assert!(matches!(next, Ok(403) | Err(_)), "HTTP/1.1 keep-alive after the reload: {next:?}");
        within("the HTTP/1.1 connection closes", async {
            while h1.ready().await.is_ok() && h1.send_request(get("/alive")).await.is_ok() {}
        })
        .await;
        let next = h2.send_request(get(&h.url("/alive"))).await.map(|r| r.status().as_u16());
        assert!(matches!(next, Ok(403) | Err(_)), "HTTP/2 after the reload: {next:?}");
        until_closed(&mut ws, "the HTTP/1.1 hub tunnel closes").await;
        until_closed(&mut h2_ws, "the RFC 8441 hub tunnel closes").await;
        let _ = within("the HTTP/2 connection closes (GOAWAY)", h2_conn).await;
        assert_eq!(
            h.upstream.requests(),
            served,
            "nothing of the tablet's reached the upstream after the reload"
        );
        let line = "client certificate CN=tablet,O=vaultgate tests refused: it is revoked";
        until(line, || logs.text().contains(line)).await;

        assert_eq!(
            phone_h1.send_request(get("/alive")).await.unwrap().status(),
            200,
            "the phone keeps its connection"
        );
        let metrics = h.proxy().metrics().render();
        let line = "vaultgate_client_cert_rejected_total{reason=\"revoked\"} 4";
        assert!(metrics.lines().any(|l| l == line), "each of the tablet's four connections once: {metrics}");
    });
}

#[tokio::test]
async fn a_chain_of_impostor_intermediates_is_refused_and_the_server_goes_on() {
    // 100 "intermediates" named like the real one, each with a key of its
    // own, and a leaf claiming to be issued by that name: every candidate
    // path fails its signature check. webpki bounds that work (a budget of
    // signature checks); the handshake fails, the next device is served.
    let devices = DeviceCa::new();
    let h = harness(&devices, &devices.root_path, "", "").await;
    let mut chain = Vec::new();
    let mut issuers = Vec::new();
    for _ in 0..100 {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "vaultgate test devices intermediate");
        chain.push(p.self_signed(&key).unwrap().der().clone());
        issuers.push(rcgen::Issuer::new(p, key));
    }
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "impostor");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = p.signed_by(&leaf_key, &issuers[0]).unwrap();
    chain.insert(0, leaf.der().clone());
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
    let impostor = h.client().with_client_cert((chain, key.into()));
    assert!(status_h1(&impostor, "/alive").await.is_err());
    assert!(status_h2(&impostor, &h.url("/alive")).await.is_err());
    let phone = h.client().with_client_cert(devices.phone.identity(true));
    assert_eq!(status_h1(&phone, "/alive").await, Ok(200));
    assert_eq!(h.upstream.requests(), 1);
}
