//! The real Vaultwarden behind the real proxy: a Vaultwarden process on
//! 127.0.0.1 with its own temporary data folder and SQLite, `DOMAIN` set to
//! the proxy's URL, and vaultgate in front of it with the test CA.
//!
//! The binary is [`Tool::Vaultwarden`]: without it the tests that need it
//! fail, saying how to get it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::{tool, Connector, Http1, Http2, ProxyToml, TestCa, Tool};

/// vaultgate's `[client_ip]` section as a self-hoster leaves it: nobody in
/// front is trusted, so vaultgate writes `X-Real-IP` from the TCP peer.
pub const CLIENT_IP_DEFAULTS: &str = "[client_ip]\ntrusted_proxies = []\nheader = \"X-Forwarded-For\"\n";

/// A running Vaultwarden (killed on drop) and vaultgate in front of it.
pub struct Stack {
    pub ca: TestCa,
    /// Held so vaultgate runs as long as the stack (`None` only while
    /// [`Stack::restart_proxy`] restarts it).
    proxy: Option<vaultgate::Server>,
    /// What vaultgate was started from (written to `ca.dir/proxy.toml`).
    toml: ProxyToml,
    pub addr: std::net::SocketAddr,
    pub data: tempfile::TempDir,
    pub log_path: PathBuf,
    /// Where Vaultwarden listens (tests talk to it only through vaultgate).
    pub vw_port: u16,
    child: std::process::Child,
}

impl Stack {
    /// Starts both; `proxy_extra` goes into vaultgate's proxy.toml as
    /// [`ProxyToml::extra`] does (before `[client_ip]`).
    pub async fn start(proxy_extra: &str) -> Stack {
        Stack::start_with(proxy_extra, CLIENT_IP_DEFAULTS, &[]).await
    }

    /// Starts both, vaultgate with `client_ip` as its `[client_ip]` section
    /// and Vaultwarden with `vw_env` added to its environment.
    pub async fn start_with(proxy_extra: &str, client_ip: &str, vw_env: &[(&str, &str)]) -> Stack {
        let bin = tool(Tool::Vaultwarden);
        // Vaultwarden's port first (vaultgate needs it), then vaultgate's
        // (Vaultwarden's DOMAIN needs that).
        let vw_port = super::free_port();
        let ca = TestCa::new();
        let toml = ProxyToml::new()
            .upstream_url(format!("http://127.0.0.1:{vw_port}"))
            .extra(proxy_extra)
            .extra(client_ip)
            .certificate(&ca);
        let (proxy, addr) = toml.start(ca.dir.path()).await;
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
            .envs(vw_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stack = Stack { ca, proxy: Some(proxy), toml, addr, data, log_path, vw_port, child };
        stack.wait_alive().await;
        stack
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

    /// The vaultgate in front (its metrics, for instance).
    pub fn proxy(&self) -> &vaultgate::Server {
        self.proxy.as_ref().expect("vaultgate runs")
    }

    /// vaultgate's proxy.toml.
    pub fn config_path(&self) -> PathBuf {
        self.ca.dir.path().join("proxy.toml")
    }

    /// Stops vaultgate (as SIGTERM would) and starts it again from the same
    /// proxy.toml on the same address: what a restart leaves of its state.
    pub async fn restart_proxy(&mut self) {
        self.proxy.take().expect("vaultgate runs").shutdown().await;
        let (proxy, addr) = self.toml.clone().listen(self.addr).start(self.ca.dir.path()).await;
        assert_eq!(addr, self.addr);
        self.proxy = Some(proxy);
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Everything Vaultwarden logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A client of vaultgate that trusts the test CA.
    pub fn client(&self) -> Connector {
        self.ca.client(self.addr)
    }

    pub async fn h1(&self) -> Http1 {
        self.client().h1().await
    }

    pub async fn h2(&self) -> Http2 {
        self.client().h2().await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
