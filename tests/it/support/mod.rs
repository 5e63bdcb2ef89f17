//! Test harness: a CA made at test time, the real proxy on 127.0.0.1:0 in
//! front of an upstream, and real TLS clients.
//!
//! - [`ProxyToml`]: every proxy.toml the tests write;
//! - [`Upstream`]: every upstream the tests run (the stand-in Vaultwarden,
//!   a recording one, a numbering one, raw scripts);
//! - [`Connector`]: every client connection (raw TLS bytes, HTTP/1.1,
//!   HTTP/2, WebSocket);
//! - [`tool`]: every program from outside the repository (Chromium, Node,
//!   Pebble, lintian, cargo-deb, the Vaultwarden binary, curl, openssl);
//! - [`logs::LogCapture`]: the proxy's log lines of one test.
//!
//! Shared by the `it` test binary and, through `#[path]`, by the binaries
//! that count process-wide descriptors or threads (tests/churn.rs,
//! tests/workers.rs).
// Each binary uses a part of it.
#![allow(dead_code, unused_imports)]

#[path = "../../../examples/support/standin.rs"]
pub mod standin;

pub mod client;
pub mod devices;
pub mod logs;
pub mod proxy_toml;
pub mod tools;
pub mod upstream;
pub mod vaultwarden;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use client::{raw_status, Connector, Http1, Http2, Ws};
pub use devices::{CrlSigner, Device, DeviceCa};
pub use proxy_toml::ProxyToml;
pub use tools::{js_dir, optional_tool, tool, Tool};
pub use upstream::Upstream;

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
    /// The names of the leaf's files in [`TestCa::dir`]: a proxy.toml written
    /// there can name them relative to itself.
    pub const CERT: &'static str = "fullchain.pem";
    pub const KEY: &'static str = "privkey.pem";

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
        let cert_path = dir.path().join(TestCa::CERT);
        let key_path = dir.path().join(TestCa::KEY);
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

    /// A client for the proxy at `addr` that trusts this CA, for `localhost`.
    pub fn client(&self, addr: SocketAddr) -> Connector {
        Connector::new(self, addr)
    }
}

/// The proxy under test, its CA and the upstream behind it.
pub struct Harness {
    pub ca: TestCa,
    pub proxy: Option<vaultgate::Server>,
    pub addr: SocketAddr,
    pub upstream: Upstream,
}

impl Harness {
    /// Proxy in front of a fresh stand-in upstream; `extra` goes into
    /// proxy.toml as [`ProxyToml::extra`] does.
    pub async fn start(extra: &str) -> Harness {
        Harness::configured(ProxyToml::new().extra(extra)).await
    }

    /// Proxy in front of a fresh stand-in upstream, configured by `toml`
    /// (to which the test CA's certificate and the upstream are added).
    pub async fn configured(toml: ProxyToml) -> Harness {
        Harness::in_front_of(Upstream::standin().start().await, toml).await
    }

    /// Proxy in front of `upstream`, configured by `toml` (to which the test
    /// CA's certificate and the upstream's address are added).
    pub async fn in_front_of(upstream: Upstream, toml: ProxyToml) -> Harness {
        let ca = TestCa::new();
        let (proxy, addr) = toml.certificate(&ca).upstream(upstream.addr).start(ca.dir.path()).await;
        Harness { ca, proxy: Some(proxy), addr, upstream }
    }

    /// The running server (until [`Harness::shutdown`]).
    pub fn proxy(&self) -> &vaultgate::Server {
        self.proxy.as_ref().expect("the proxy is running")
    }

    /// A client of the proxy that trusts the test CA.
    pub fn client(&self) -> Connector {
        self.ca.client(self.addr)
    }

    pub async fn h1(&self) -> Http1 {
        self.client().h1().await
    }

    pub async fn h2(&self) -> Http2 {
        self.client().h2().await
    }

    pub async fn tls(&self, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        self.client().tls(alpn).await
    }

    /// A hub WebSocket (HTTP/1.1 upgrade) to `path_and_query`; asserts the 101.
    pub async fn ws(&self, path_and_query: &str) -> Ws {
        self.client().ws(path_and_query).await
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

/// A port that was just free: nothing listens there.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port where connections are refused for as long as the returned socket
/// lives: bound but never listening, so no other test can take it meanwhile
/// (a port from [`free_port`] can be taken by the next test's listener).
pub fn refused_port() -> (u16, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (socket.local_addr().unwrap().port(), socket)
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
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(format!("{shell_prefix} exec {} --config '{}'", Self::PATH, config.display()));
        Self::spawn(command)
    }

    /// Starts `WRAPPER… vaultgate --config CONFIG`: the wrapper (e.g. `unshare`,
    /// `setpriv`) ends by exec'ing the arguments after its own.
    pub fn start_under(wrapper: &[&str], config: &std::path::Path) -> RunningBinary {
        let mut command = std::process::Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(Self::PATH).arg("--config").arg(config);
        Self::spawn(command)
    }

    fn spawn(mut command: std::process::Command) -> RunningBinary {
        use std::io::BufRead;
        let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
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

/// The proxy.toml the binary tests start from, written into the CA's folder:
/// any port on 127.0.0.1, `upstream`, and the test CA's files named relative
/// to the proxy.toml beside them.
pub fn binary_toml(upstream: SocketAddr) -> ProxyToml {
    ProxyToml::new().upstream(upstream).certificate_files(TestCa::CERT, TestCa::KEY)
}

/// `curl -sS --cacert CA URL`: (success, body).
pub async fn curl_get(ca: &TestCa, url: &str) -> (bool, Vec<u8>) {
    let out = tokio::process::Command::new(tool(Tool::Curl))
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca.ca_path)
        .arg(url)
        .output()
        .await
        .unwrap();
    (out.status.success(), out.stdout)
}

/// Sends raw bytes on a fresh HTTP/1.1 TLS connection and returns everything
/// the proxy answers until it closes (or 10 s pass).
pub async fn raw_exchange(h: &Harness, bytes: &[u8]) -> String {
    h.client().exchange(bytes).await
}

/// Sends raw bytes on a fresh HTTP/1.1 TLS connection and returns the status
/// of the answer, without waiting for the connection to close.
pub async fn raw_status_of(h: &Harness, bytes: &[u8]) -> u16 {
    h.client().status_of(bytes).await
}

/// Awaits `f`, failing the test (instead of hanging it) after 20 s.
/// A script of `tests/js` run with Node against the proxy at `url`, trusting
/// the CA at `ca`, with `env` added; stdin and stdout piped for
/// [`script_ready`].
pub fn node_script(
    script: &str,
    url: &str,
    ca: &std::path::Path,
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> tokio::process::Child {
    let js = js_dir();
    let mut cmd = tokio::process::Command::new(tool(Tool::Node));
    cmd.arg(js.join(script))
        .current_dir(&js)
        .env("VG_URL", url)
        .env("NODE_EXTRA_CA_CERTS", ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Reads a browser or Node script's output (into `out`) until it prints
/// `ready` (true), a line starting with `FAIL`, or ends, for at most 90 s.
pub async fn script_ready(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    out: &mut String,
) -> bool {
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push_str(&line);
            out.push('\n');
            if line == "ready" || line.starts_with("FAIL") {
                return line == "ready";
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(90), read).await.unwrap_or(false)
}

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(20), f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `done` every 10 ms until it holds, failing the test after 20 s.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Which end of a TCP socket a port is matched against in [`tcp_sockets`].
pub enum End {
    Local,
    Remote,
}

/// TCP sockets (IPv4 and IPv6) in `state` (the kernel's hex code: `01`
/// established, `08` CLOSE_WAIT) whose `end` is on `port`, from /proc/net/tcp*.
pub fn tcp_sockets(end: End, port: u16, state: &str) -> usize {
    let column = match end {
        End::Local => 1,
        End::Remote => 2,
    };
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let on = cols
                .get(column)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            on == Some(port) && cols.get(3) == Some(&state)
        })
        .count()
}
