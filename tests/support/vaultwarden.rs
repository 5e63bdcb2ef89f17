//! The real Vaultwarden behind the real proxy: a Vaultwarden process on
//! 127.0.0.1 with its own temporary data folder and SQLite, `DOMAIN` set to
//! the proxy's URL, and vaultgate in front of it with the test CA.
//!
//! The binary is `$VAULTWARDEN_BIN`, else `../shared/vaultwarden/vaultwarden`
//! beside the repository. Without either, the tests that need it skip with one
//! line saying how to run them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::support::{start_proxy, TestCa};

/// vaultgate's `[client_ip]` section as a self-hoster leaves it: nobody in
/// front is trusted, so vaultgate writes `X-Real-IP` from the TCP peer.
pub const CLIENT_IP_DEFAULTS: &str = "[client_ip]\ntrusted_proxies = []\nheader = \"X-Forwarded-For\"\n";

/// The Vaultwarden binary, or `None` (after saying once how to enable the
/// tests) when it is not there. A `VAULTWARDEN_BIN` that names no file is an
/// error, never a skip.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VAULTWARDEN_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "VAULTWARDEN_BIN={} is not a file", path.display());
        return Some(path);
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vaultwarden/vaultwarden");
    if default.is_file() {
        return Some(default);
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        // Straight to stderr: libtest captures print! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "tests/vaultwarden.rs: skipped, no Vaultwarden at {}; enable with VAULTWARDEN_BIN=/path/to/vaultwarden cargo test",
            default.display()
        );
    });
    None
}

/// A running Vaultwarden (killed on drop) and vaultgate in front of it.
pub struct Stack {
    pub ca: TestCa,
    /// Held so vaultgate runs as long as the stack.
    _proxy: vaultgate::Server,
    pub addr: std::net::SocketAddr,
    pub data: tempfile::TempDir,
    pub log_path: PathBuf,
    /// Where Vaultwarden listens (tests talk to it only through vaultgate).
    pub vw_port: u16,
    child: std::process::Child,
}

impl Stack {
    /// Starts both, or returns `None` when there is no Vaultwarden binary.
    pub async fn start(proxy_extra: &str) -> Option<Stack> {
        let bin = binary()?;
        // Vaultwarden's port first (vaultgate needs it), then vaultgate's
        // (Vaultwarden's DOMAIN needs that).
        let vw_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ca = TestCa::new();
        // `proxy_extra` first: its top-level keys must come before any table.
        let extra = format!("{proxy_extra}\n{CLIENT_IP_DEFAULTS}");
        let (proxy, addr) = start_proxy(&ca, &format!("http://127.0.0.1:{vw_port}"), &extra).await;
        let data = tempfile::tempdir().unwrap();
        let log_path = data.path().join("vaultwarden.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = std::process::Command::new(&bin)
            .current_dir(data.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("DATA_FOLDER", data.path())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", vw_port.to_string())
            .env("DOMAIN", format!("https://localhost:{}", addr.port()))
            .env("WEB_VAULT_ENABLED", "false")
            .env("SIGNUPS_ALLOWED", "true")
            .env("IP_HEADER", "X-Real-IP")
            .env("IP_HEADER_TRUSTED_PROXIES", "local")
            .env("I_REALLY_WANT_VOLATILE_STORAGE", "true")
            .env("DISABLE_ICON_DOWNLOAD", "true")
            .env("LOGIN_RATELIMIT_MAX_BURST", "100")
            .env("LOGIN_RATELIMIT_SECONDS", "1")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stack = Stack { ca, _proxy: proxy, addr, data, log_path, vw_port, child };
        stack.wait_alive().await;
        Some(stack)
    }

    async fn wait_alive(&self) {
        let port = self.vw_port;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ =
                    s.write_all(b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer).await;
                if answer.starts_with(b"HTTP/1.1 200") {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "Vaultwarden did not come up:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Everything Vaultwarden logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub async fn h1(&self) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
        let tls = super::support::tls_connect(&self.ca, self.addr, &[b"http/1.1"]).await;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    pub async fn h2(&self) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
        let tls = super::support::tls_connect(&self.ca, self.addr, &[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        sender
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
