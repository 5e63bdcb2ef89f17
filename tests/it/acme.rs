//! Automatic HTTPS against Pebble, the ACME test CA from Debian's `pebble`
//! package (installed by .ci/run), on 127.0.0.1. pebble-challtestsrv is its
//! DNS server and answers 127.0.0.1 for every name, so Pebble's checks of
//! "vault.example.com" land on the vaultgate under test.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{self, *};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

pub const DOMAIN: &str = "vault.example.com";

/// Pebble and its DNS server, stopped when dropped.
pub struct Pebble {
    _children: Vec<tokio::process::Child>,
    pub directory: String,
    management: u16,
    /// The CA of Pebble's own HTTPS listener (vaultgate's `acme.ca`).
    pub listener_ca: TestCa,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Pebble validating TLS-ALPN-01 on `tls_port` and HTTP-01 on
    /// `http_port`; certificates valid for `validity` seconds (Pebble's
    /// default of years when `None`).
    async fn start(tls_port: u16, http_port: u16, validity: Option<u64>) -> Pebble {
        Pebble::start_with(tls_port, http_port, validity, None).await
    }

    /// As [`Pebble::start`]; with `dns_port`, Pebble looks names up at the
    /// DNS server on 127.0.0.1:`dns_port` (for DNS-01: the authoritative
    /// server the test runs) instead of pebble-challtestsrv.
    pub async fn start_with(
        tls_port: u16,
        http_port: u16,
        validity: Option<u64>,
        dns_port: Option<u16>,
    ) -> Pebble {
        let pebble = tool(Tool::Pebble);
        let challtestsrv = tool(Tool::PebbleChallTestSrv);
        let listener_ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let (acme, management) = (free_port(), free_port());
        let dns = dns_port.unwrap_or_else(free_port);
        let validity = validity.map(|s| format!(",\n\"certificateValidityPeriod\": {s}")).unwrap_or_default();
        let config = format!(
            "{{\"pebble\": {{\"listenAddress\": \"127.0.0.1:{acme}\", \"managementListenAddress\": \"127.0.0.1:{management}\",
             \"certificate\": \"{}\", \"privateKey\": \"{}\", \"httpPort\": {http_port}, \"tlsPort\": {tls_port},
             \"ocspResponderURL\": \"\", \"externalAccountBindingRequired\": false{validity}}}}}",
            listener_ca.cert_path.display(),
            listener_ca.key_path.display()
        );
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let mut children = Vec::new();
        if dns_port.is_none() {
            children.push(
                tokio::process::Command::new(challtestsrv)
                    .args([
                        "-defaultIPv4",
                        "127.0.0.1",
                        "-defaultIPv6",
                        "",
                        "-http01",
                        "",
                        "-https01",
                        "",
                        "-tlsalpn01",
                        "",
                    ])
                    .arg("-dns01")
                    .arg(format!("127.0.0.1:{dns}"))
                    .arg("-management")
                    .arg(format!("127.0.0.1:{}", free_port()))
                    .stdout(log("challtestsrv.log"))
                    .stderr(log("challtestsrv.err"))
                    .kill_on_drop(true)
                    .spawn()
                    .unwrap(),
            );
        }
        let pebble = tokio::process::Command::new(pebble)
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns}"))
            // No random sleeps before validating, no nonces refused at random,
            // no authorizations reused between orders: every order is checked.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        within("pebble to listen", async {
            while TcpStream::connect(("127.0.0.1", acme)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        children.push(pebble);
        Pebble {
            _children: children,
            directory: format!("https://127.0.0.1:{acme}/dir"),
            management,
            listener_ca,
            dir,
        }
    }

    /// Pebble's issuing root (made fresh at each start), as PEM.
    pub async fn root(&self) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let (ok, pem) =
            curl_get(&self.listener_ca, &format!("https://127.0.0.1:{}/roots/0", self.management)).await;
        assert!(ok, "pebble's management interface answers");
        CertificateDer::from_pem_slice(&pem).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// vaultgate on `tls_port` with `[tls] acme = {…}` for Pebble (`acme_extra`
/// added inside the braces).
fn acme_toml(
    pebble: &Pebble,
    tls_port: u16,
    upstream: SocketAddr,
    state: &Path,
    acme_extra: &str,
) -> ProxyToml {
    acme_toml_for(DOMAIN, pebble, tls_port, upstream, state, acme_extra)
}

/// As [`acme_toml`], for `domain`.
pub fn acme_toml_for(
    domain: &str,
    pebble: &Pebble,
    tls_port: u16,
    upstream: SocketAddr,
    state: &Path,
    acme_extra: &str,
) -> ProxyToml {
    ProxyToml::new().listen(format!("127.0.0.1:{tls_port}")).upstream(upstream).tls(&format!(
        "acme = {{ domain = \"{domain}\", email = \"admin@example.com\", directory = \"{}\", ca = \"{}\", state_dir = \"{}\"{acme_extra} }}",
        pebble.directory,
        pebble.listener_ca.ca_path.display(),
        state.display()
    ))
}

async fn start(dir: &Path, toml: &ProxyToml) -> vaultgate::Server {
    toml.start(dir).await.0
}

/// A client of vaultgate on `port` for DOMAIN that trusts only `root`.
fn client(port: u16, root: &CertificateDer<'static>) -> Connector {
    Connector::trusting(root.clone(), SocketAddr::from(([127, 0, 0, 1], port)), DOMAIN)
}

/// A TLS connection to vaultgate for DOMAIN that verifies against `root`.
pub async fn connect(
    port: u16,
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    client(port, root).try_tls(alpn).await
}

pub fn leaf(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// Waits until vaultgate serves a certificate from Pebble other than
/// `not`, and returns it.
pub async fn issued(
    port: u16,
    root: &CertificateDer<'static>,
    not: Option<&CertificateDer<'static>>,
    pebble: &Pebble,
) -> CertificateDer<'static> {
    for _ in 0..600 {
        if let Ok(tls) = connect(port, root, &[b"http/1.1"]).await {
            let cert = leaf(&tls);
            if Some(&cert) != not {
                return cert;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no certificate from Pebble within 60 s; pebble's log:\n{}", pebble.log());
}

pub async fn alive_through(tls: tokio_rustls::client::TlsStream<TcpStream>) -> http::StatusCode {
    let mut sender: Http1 = support::client::h1_over(tls).await.unwrap();
    let req = http::Request::get("/alive")
        .header(http::header::HOST, DOMAIN)
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    sender.send_request(req).await.unwrap().status()
}

fn state_file(state: &Path, name: &str) -> PathBuf {
    // The CA's folder (beside it, files such as the login guard's state).
    let ca = std::fs::read_dir(state).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    if name == "account.json" {
        ca.join(name)
    } else {
        ca.join(DOMAIN).join(name)
    }
}

#[tokio::test]
async fn tls_alpn_01_gets_a_certificate_and_a_restart_reuses_it() {
    let (tls_port, http_port) = (free_port(), free_port());
    let pebble = Pebble::start(tls_port, http_port, None).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let toml = acme_toml(&pebble, tls_port, upstream.addr, &state, ", challenge = \"tls-alpn-01\"");
    let server = start(work.path(), &toml).await;
    let root = pebble.root().await;

    let cert = issued(tls_port, &root, None, &pebble).await;
    // The chain verified against Pebble's root for DOMAIN; requests flow.
    let tls = connect(tls_port, &root, &[b"http/1.1"]).await.unwrap();
    assert_eq!(alive_through(tls).await, http::StatusCode::OK);
    // Nothing listens on Pebble's HTTP-01 port: TLS-ALPN-01 did it.
    assert!(!pebble.log().contains("validate w/ HTTP"), "{}", pebble.log());

    // Kept private on disk.
    for name in ["account.json", "cert.pem", "key.pem"] {
        let mode = std::fs::metadata(state_file(&state, name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let account = std::fs::read_to_string(state_file(&state, "account.json")).unwrap();

    // Asking for acme-tls/1 with no check pending gets no certificate at all.
    assert!(connect(tls_port, &root, &[b"acme-tls/1"]).await.is_err());

    // A restart serves the stored certificate from the first handshake on,
    // with the same account and no new order.
    server.shutdown().await;
    let orders_before = pebble.log().matches("POST /order-plz").count();
    let server = start(work.path(), &toml).await;
    let tls = connect(tls_port, &root, &[b"http/1.1"]).await.unwrap();
    assert_eq!(leaf(&tls), cert, "the stored certificate is reused");
    assert_eq!(alive_through(tls).await, http::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pebble.log().matches("POST /order-plz").count(),
        orders_before,
        "no new order after a restart"
    );
    assert_eq!(std::fs::read_to_string(state_file(&state, "account.json")).unwrap(), account);

    // Forcing a renewal (remove the stored certificate, reload) swaps what
    // new handshakes get; a hub opened before stays open and working.
    let tls = connect(tls_port, &root, &[b"http/1.1"]).await.unwrap();
    let mut hub = open_hub(tls, tls_port, &root).await;
    std::fs::remove_file(state_file(&state, "cert.pem")).unwrap();
    server.reload(vaultgate::Config::load(&work.path().join("proxy.toml")).unwrap()).unwrap();
    let renewed = issued(tls_port, &root, Some(&cert), &pebble).await;
    assert_ne!(renewed, cert);
    assert!(state_file(&state, "cert.pem").exists(), "the new certificate is stored");
    hub_still_works(&mut hub, &upstream).await;
    server.shutdown().await;
}

type Hub = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A hub over `tls` (the connection whose certificate the caller checked).
async fn open_hub(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    port: u16,
    root: &CertificateDer<'static>,
) -> Hub {
    let url = client(port, root).ws_url("/notifications/hub?access_token=t");
    let (mut hub, resp) = support::client::ws_over(tls, &url).await.expect("hub upgrade");
    assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    hub.send(Message::text("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")).await.unwrap();
    hub
}

/// A push from the upstream arrives and a message from the client is echoed.
async fn hub_still_works(hub: &mut Hub, upstream: &Upstream) {
    let push = standin::notification(7, "ReceiveMessage");
    upstream.push(push.clone());
    within("the pushed message on the old hub", async {
        loop {
            match hub.next().await.expect("hub still open").expect("hub frame") {
                Message::Binary(b) if b == push => break,
                _ => continue,
            }
        }
    })
    .await;
    hub.send(Message::binary(vec![0x02, 0x91, 0x06])).await.unwrap();
    within("the echo on the old hub", async {
        loop {
            match hub.next().await.expect("hub still open").expect("hub frame") {
                Message::Binary(b) if b[..] == [0x02, 0x91, 0x06] => break,
                _ => continue,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn http_01_is_answered_on_the_redirect_listener() {
    // Pebble's TLS-ALPN-01 port leads nowhere: only HTTP-01 can succeed.
    let (tls_port, http_port) = (free_port(), free_port());
    let pebble = Pebble::start(free_port(), http_port, None).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let toml = acme_toml(&pebble, tls_port, upstream.addr, &state, ", challenge = \"http-01\"")
        .extra(&format!("[redirect]\nlisten = \"127.0.0.1:{http_port}\""));
    let server = start(work.path(), &toml).await;
    let root = pebble.root().await;

    issued(tls_port, &root, None, &pebble).await;
    assert!(pebble.log().contains("validate w/ HTTP"), "validated by HTTP-01:\n{}", pebble.log());
    let tls = connect(tls_port, &root, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // Between orders the challenge path answers 404; everything else is still redirected.
    let probe = |path: &str| {
        let path = path.to_string();
        async move {
            let out = tokio::process::Command::new(tool(Tool::Curl))
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H"])
                .arg(format!("Host: {DOMAIN}"))
                .arg(format!("http://127.0.0.1:{http_port}{path}"))
                .output()
                .await
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        }
    };
    assert_eq!(probe("/.well-known/acme-challenge/unknown-token").await, "404 ");
    assert_eq!(probe("/#/vault").await, format!("301 https://{DOMAIN}:{tls_port}/"));
    server.shutdown().await;
}

#[tokio::test]
async fn when_tls_alpn_01_fails_http_01_follows_without_the_backoff() {
    // Only the redirect listener's port is reachable from Pebble: its
    // TLS-ALPN-01 check connects to a port where nothing listens. Both
    // challenges are configured (the default with [redirect]), TLS-ALPN-01 first.
    // Certificates that live 12 s are due for renewal after 8.
    let (tls_port, http_port) = (free_port(), free_port());
    let pebble = Pebble::start(free_port(), http_port, Some(12)).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let path = acme_toml(&pebble, tls_port, upstream.addr, &work.path().join("state"), "")
        .extra(&format!("[redirect]\nlisten = \"127.0.0.1:{http_port}\""))
        .write_as(work.path().join("fallback.toml"));
    let proxy = RunningBinary::start(&path, "");
    let root = pebble.root().await;

    // Which failed, why (the CA's words and what to check), what comes next.
    let line = proxy.wait_for_log(&["ACME: tls-alpn-01 failed"], 30).await;
    assert!(line.contains("Failed to connect") && line.contains("port 443"), "{line}");
    assert!(line.contains("trying http-01 next with a new order") && line.contains("port 80"), "{line}");
    let first = issued(tls_port, &root, None, &pebble).await;
    assert!(pebble.log().contains("validate w/ HTTP"), "validated by HTTP-01:\n{}", pebble.log());
    assert_eq!(pebble.log().matches("POST /order-plz").count(), 2, "one order per challenge");

    // The renewal starts with the challenge that worked: one more order.
    issued(tls_port, &root, Some(&first), &pebble).await;
    assert_eq!(pebble.log().matches("POST /order-plz").count(), 3, "{}", pebble.log());
    let (_, log) = proxy.stop();
    assert_eq!(log.matches("ACME: tls-alpn-01 failed").count(), 1, "{log}");
    // No backoff came between: no attempt as a whole failed.
    assert!(!log.contains("could not obtain a certificate"), "{log}");
}

#[tokio::test]
async fn renewal_swaps_the_certificate_while_a_hub_stays_open() {
    // Certificates that live 12 s are due for renewal after 8.
    let (tls_port, http_port) = (free_port(), free_port());
    let pebble = Pebble::start(tls_port, http_port, Some(12)).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let server = start(work.path(), &acme_toml(&pebble, tls_port, upstream.addr, &state, "")).await;
    let root = pebble.root().await;

    let first = issued(tls_port, &root, None, &pebble).await;
    let tls = connect(tls_port, &root, &[b"http/1.1"]).await.unwrap();
    assert_eq!(leaf(&tls), first);
    let mut hub = open_hub(tls, tls_port, &root).await;

    let second = issued(tls_port, &root, Some(&first), &pebble).await;
    assert_ne!(second, first);

    // The hub opened under the first certificate still carries messages both ways.
    hub_still_works(&mut hub, &upstream).await;
    server.shutdown().await;
}

#[tokio::test]
async fn failures_are_logged_with_what_to_check() {
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();

    // No ACME server at the directory URL (and none can start there).
    let (dead, _held) = refused_port();
    let metrics = free_port();
    let path = ProxyToml::new()
        .upstream(upstream.addr)
        .extra(&format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\""))
        .tls(&format!(
            "acme = {{ domain = \"{DOMAIN}\", directory = \"https://127.0.0.1:{dead}/dir\", state_dir = \"state\" }}"
        ))
        .write_as(work.path().join("dead.toml"));
    // `check` says where the certificate will be and that there is none yet.
    let out = std::process::Command::new(RunningBinary::PATH)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("no ACME certificate for vault.example.com yet") && said.contains("state/"),
        "{said}"
    );
    let proxy = RunningBinary::start(&path, "");
    proxy
        .wait_for_log(&["ACME: requesting a certificate", "there is no certificate yet", "tls-alpn-01"], 20)
        .await;
    let line = proxy.wait_for_log(&["ACME: could not obtain a certificate"], 20).await;
    assert!(line.contains("cannot talk to the ACME server") && line.contains("Connection refused"), "{line}");
    assert!(line.contains("retrying in 2m"), "{line}");
    // /healthz stays green (clients are served) and says ACME is failing.
    let out = tokio::process::Command::new(tool(Tool::Curl))
        .args(["-sS", "--max-time", "5", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{metrics}/healthz"))
        .output()
        .await
        .unwrap();
    let health = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(health.starts_with("ok: Vaultwarden answers\n"), "{health}");
    assert!(health.contains("\nwarning: ACME could not obtain a certificate (last attempt at "), "{health}");
    assert!(health.ends_with("the log says why)\n200"), "{health}");
    // Meanwhile the listener serves a stand-in certificate and requests flow.
    let (ok, _) = tokio::process::Command::new(tool(Tool::Curl))
        .args(["-sSk", "--max-time", "5", "-o", "/dev/null"])
        .arg(format!("https://127.0.0.1:{}/alive", proxy.port()))
        .status()
        .await
        .map(|s| (s.success(), ()))
        .unwrap();
    assert!(ok);
    proxy.stop();

    // Pebble is up, but its TLS-ALPN-01 check cannot reach vaultgate.
    let pebble = Pebble::start(free_port(), free_port(), None).await;
    let path = acme_toml(&pebble, free_port(), upstream.addr, &work.path().join("state2"), "")
        .write_as(work.path().join("unreachable.toml"));
    let proxy = RunningBinary::start(&path, "");
    let line = proxy.wait_for_log(&["ACME: could not obtain a certificate"], 30).await;
    assert!(line.contains("the CA answered") && line.contains("Failed to connect"), "{line}");
    assert!(line.contains("vault.example.com points here") && line.contains("port 443"), "{line}");
    proxy.stop();
}

/// What examples/deploy/Dockerfile and compose.yaml promise, without a
/// container engine: run the binary as a runtime would run the image — its
/// own mount namespace with every filesystem read-only but the state volume,
/// as uid 10001 with no capabilities and no-new-privileges — and it still gets
/// its certificate, keeps it in the volume, and serves it again after a restart.
const READ_ONLY_IMAGE: &str = r#"set -e
state=$1; shift
for mount in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case $mount in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$mount" 2>/dev/null || true
done
mount --bind "$state" "$state"
mount -o remount,bind,rw "$state"
for probe in / /tmp "$(dirname "$state")"; do
  if touch "$probe/.vaultgate-write-probe" 2>/dev/null; then
    echo "$probe is still writable: not the image's read-only root" >&2
    exit 97
  fi
done
exec setpriv --reuid=10001 --regid=10001 --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all "$@"
"#;

#[tokio::test]
async fn the_image_works_on_a_read_only_root_as_its_own_user() {
    use std::os::unix::fs::chown;
    let (tls_port, http_port) = (free_port(), free_port());
    let pebble = Pebble::start(tls_port, http_port, None).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // `mkdir state && chown 10001:10001 state`, as compose.yaml says; what the
    // image's user must read is readable, as a mounted config would be.
    chown(&state, Some(10001), Some(10001)).unwrap();
    for dir in [work.path(), pebble.listener_ca.dir.path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = acme_toml(&pebble, tls_port, upstream.addr, &state, ", challenge = \"tls-alpn-01\"")
        .write(work.path());
    let (unshare, setpriv) = (tool(Tool::Unshare), tool(Tool::Setpriv));
    assert!(setpriv.exists());
    let state_arg = state.to_str().unwrap();
    let wrapper = [
        unshare.to_str().unwrap(),
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        READ_ONLY_IMAGE,
        "sh",
        state_arg,
    ];

    let proxy = RunningBinary::start_under(&wrapper, &config);
    let root = pebble.root().await;
    let cert = issued(tls_port, &root, None, &pebble).await;
    let tls = connect(tls_port, &root, &[b"http/1.1"]).await.unwrap();
    assert_eq!(alive_through(tls).await, http::StatusCode::OK);
    // Everything it wrote is in the volume, owned by the image's user.
    for name in ["account.json", "cert.pem", "key.pem"] {
        let meta = std::fs::metadata(state_file(&state, name)).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 10001, "{name}");
    }
    let (exit, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(exit.success(), "{exit}\n{log}");
    assert!(!log.contains("ERROR") && !log.contains("WARN"), "nothing failed to write:\n{log}");

    // A restart in the same read-only shape serves the stored certificate.
    let proxy = RunningBinary::start_under(&wrapper, &config);
    let tls = connect(tls_port, &root, &[b"http/1.1"]).await.unwrap();
    assert_eq!(leaf(&tls), cert, "the stored certificate is served after a restart");
    drop(proxy);
}
