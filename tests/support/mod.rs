//! Test harness: a CA made at test time, the real proxy on 127.0.0.1:0 in
//! front of the stand-in Vaultwarden, and real TLS clients (HTTP/1.1, HTTP/2,
//! WebSocket, raw bytes).
#![allow(dead_code)]

#[path = "../../examples/support/standin.rs"]
pub mod standin;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use standin::StandIn;

/// A certificate authority and a leaf for localhost/127.0.0.1 signed by it,
/// written as PEM files (full chain) into a temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
    /// base64 SHA-256 of the leaf's SubjectPublicKeyInfo (Chromium's
    /// `--ignore-certificate-errors-spki-list` trusts the certificate by it).
    pub leaf_spki_sha256: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "vaultgate test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("fullchain.pem");
        let key_path = dir.path().join("privkey.pem");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&cert_path, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        std::fs::write(&ca_path, ca.pem()).unwrap();
        let spki_der = {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(leaf_key.public_key_pem().as_bytes())
                .unwrap()
        };
        let spki = ring::digest::digest(&ring::digest::SHA256, spki_der.as_ref());
        let leaf_spki_sha256 = BASE64_STANDARD.encode(spki);
        TestCa {
            ca_der: ca.der().clone(),
            ca_pem: ca.pem(),
            cert_path,
            key_path,
            ca_path,
            leaf_spki_sha256,
            dir,
        }
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// The proxy under test, its CA and the stand-in upstream behind it.
pub struct Harness {
    pub ca: TestCa,
    pub proxy: Option<vaultgate::Server>,
    pub addr: SocketAddr,
    pub upstream: StandIn,
}

impl Harness {
    /// Proxy in front of a fresh stand-in upstream. `extra` is appended to the
    /// top level of proxy.toml.
    pub async fn start(extra: &str) -> Harness {
        let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
        Harness::start_with_upstream(upstream, extra).await
    }

    pub async fn start_with_upstream(upstream: StandIn, extra: &str) -> Harness {
        let ca = TestCa::new();
        let (proxy, addr) = start_proxy(&ca, &format!("http://{}", upstream.addr), extra).await;
        Harness { ca, proxy: Some(proxy), addr, upstream }
    }

    pub async fn h1(&self) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let tls = self.tls(&[b"http/1.1"]).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn.with_upgrades());
        sender
    }

    pub async fn h2(&self) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        let tls = self.tls(&[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the proxy negotiates h2");
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    pub async fn tls(&self, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        tls_connect(&self.ca, self.addr, alpn).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub async fn shutdown(&mut self) {
        if let Some(p) = self.proxy.take() {
            p.shutdown().await;
        }
    }
}

/// Starts the real proxy from a proxy.toml written to disk, as a user would.
pub async fn start_proxy(ca: &TestCa, upstream: &str, extra: &str) -> (vaultgate::Server, SocketAddr) {
    let path = ca.dir.path().join("proxy.toml");
    // The test CA's files go into [tls], whether or not `extra` has its own.
    let tls_files =
        format!("[tls]\ncert = \"{}\"\nkey = \"{}\"\n", ca.cert_path.display(), ca.key_path.display());
    let text = if extra.contains("[tls]") {
        format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{}\n",
            extra.replace("[tls]\n", &tls_files)
        )
    } else {
        format!("listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{extra}\n{tls_files}")
    };
    std::fs::write(&path, text).unwrap();
    let config = vaultgate::Config::load(&path).unwrap();
    let server = vaultgate::Server::start(config).await.unwrap();
    let addr = server.local_addr();
    (server, addr)
}

pub async fn tls_connect(ca: &TestCa, addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(ca.client_config(alpn))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// A GET for a path (HTTP/1.1, with `Host: localhost`) or for a full URL
/// (HTTP/2, where the URL's authority becomes `:authority`).
pub fn get(target: &str) -> Request<Full<Bytes>> {
    let mut req = Request::get(target);
    if target.starts_with('/') {
        req = req.header("host", "localhost");
    }
    req.body(Full::default()).unwrap()
}

pub async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// The stand-in's echo of what it received.
pub async fn echoed(resp: Response<Incoming>) -> serde_json::Value {
    let bytes = body_bytes(resp).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not an echo: {}", String::from_utf8_lossy(&bytes)))
}

/// All values of a header in an echo, in order.
pub fn echoed_header(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_string())
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    standin::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// The built `vaultgate` binary, started as a user would, with its stderr
/// read line by line.
pub struct RunningBinary {
    child: std::process::Child,
    /// Log lines up to and including "vaultgate is listening".
    pub startup_log: Vec<String>,
    /// Every line after startup, as it arrives.
    rest: Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningBinary {
    pub const PATH: &'static str = env!("CARGO_BIN_EXE_vaultgate");

    /// Starts `vaultgate --config CONFIG`; `shell_prefix` (e.g. `ulimit -n 48 &&`)
    /// runs before it in `sh -c` when not empty.
    pub fn start(config: &std::path::Path, shell_prefix: &str) -> RunningBinary {
        use std::io::BufRead;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{shell_prefix} exec {} --config '{}'", Self::PATH, config.display()))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut startup_log = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.contains("vaultgate is listening");
            startup_log.push(line);
            if done {
                break;
            }
        }
        assert!(
            startup_log.last().is_some_and(|l| l.contains("vaultgate is listening")),
            "the proxy did not start:\n{}",
            startup_log.join("\n")
        );
        let rest = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = rest.clone();
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        RunningBinary { child, startup_log, rest, reader: Some(reader) }
    }

    /// Waits (up to `seconds`) for a log line containing every one of
    /// `needles`, and returns it; panics with the log so far if none comes.
    pub async fn wait_for_log(&self, needles: &[&str], seconds: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let found =
                self.rest.lock().unwrap().iter().find(|l| needles.iter().all(|n| l.contains(n))).cloned();
            if let Some(line) = found {
                return line;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "no log line with {needles:?} within {seconds} s; log:\n{}",
                    self.rest.lock().unwrap().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port from the "listening" log line.
    pub fn port(&self) -> u16 {
        let line = self.startup_log.last().unwrap();
        let addr = line.split("listen=").nth(1).unwrap().split_whitespace().next().unwrap();
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGTERM, then the exit status and every log line after startup.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        let log = self.rest.lock().unwrap().join("\n");
        (status, log)
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proxy.toml for the binary: `listen`, the upstream, and the test CA's files.
pub fn binary_config(ca: &TestCa, listen: &str, upstream: SocketAddr) -> PathBuf {
    let path = ca.dir.path().join("proxy.toml");
    let text = format!(
        "listen = \"{listen}\"\nupstream = \"http://{upstream}\"\n\n[tls]\ncert = \"fullchain.pem\"\nkey = \"privkey.pem\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `curl -sS --cacert CA URL`: (success, body).
pub async fn curl_get(ca: &TestCa, url: &str) -> (bool, Vec<u8>) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca.ca_path)
        .arg(url)
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    (out.status.success(), out.stdout)
}

/// Sends raw bytes on a fresh HTTP/1.1 TLS connection and returns everything
/// the proxy answers until it closes (or 10 s pass).
pub async fn raw_exchange(h: &Harness, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = h.tls(&[b"http/1.1"]).await;
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends raw bytes on a fresh HTTP/1.1 TLS connection and returns the status
/// of the answer, without waiting for the connection to close.
pub async fn raw_status_of(h: &Harness, bytes: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = h.tls(&[b"http/1.1"]).await;
    tls.write_all(bytes).await.unwrap();
    let mut line = [0u8; 12];
    match tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut line)).await {
        Ok(Ok(_)) => raw_status(&String::from_utf8_lossy(&line)),
        _ => 0,
    }
}

/// The status code of a raw HTTP/1.1 answer (0 when there was none).
pub fn raw_status(answer: &str) -> u16 {
    answer.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Awaits `f`, failing the test (instead of hanging it) after 20 s.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(20), f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// `path` from Debian's `package`, installed on first use when it is missing
/// (CI and the development machines run as root), so `cargo test` alone
/// sets up. Panics with what to install when that fails.
pub fn debian_program(path: &'static str, package: &str) -> &'static str {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !std::path::Path::new(path).exists() {
        let install =
            format!("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}");
        let _ = std::process::Command::new("sh").args(["-c", &install]).status();
    }
    assert!(
        std::path::Path::new(path).exists(),
        "Debian's {package} is needed: apt-get install {package} (.ci/run does)"
    );
    path
}
