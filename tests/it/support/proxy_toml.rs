//! Every proxy.toml the tests write, built in one place:
//!
//! ```text
//! ProxyToml::new().upstream(addr).certificate(&ca).extra("[limits]\nworkers = 1").write(dir)
//! ```
//!
//! The text is laid out as a user would write it: `listen`, `upstream`, the
//! [`ProxyToml::extra`] text (top-level keys, then tables), then `[tls]`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::TestCa;

#[derive(Clone, Debug, Default)]
pub struct ProxyToml {
    listen: Option<String>,
    upstream: Option<String>,
    extra: Vec<String>,
    tls: Vec<String>,
}

impl ProxyToml {
    /// `listen = "127.0.0.1:0"` and nothing else.
    pub fn new() -> ProxyToml {
        ProxyToml::empty().listen("127.0.0.1:0")
    }

    /// No key at all (every setting its default).
    pub fn empty() -> ProxyToml {
        ProxyToml::default()
    }

    pub fn listen(mut self, addr: impl Display) -> ProxyToml {
        self.listen = Some(addr.to_string());
        self
    }

    /// `upstream = "http://ADDR"`.
    pub fn upstream(self, addr: SocketAddr) -> ProxyToml {
        self.upstream_url(format!("http://{addr}"))
    }

    pub fn upstream_url(mut self, url: impl Into<String>) -> ProxyToml {
        self.upstream = Some(url.into());
        self
    }

    /// TOML placed after `listen` and `upstream`, before `[tls]`: top-level
    /// keys (`http2_websockets = false`) and whole tables (`[limits]\n...`).
    /// Several calls are joined in order, so keys of the top level go in the
    /// first. `[tls]` lines go through [`ProxyToml::tls`].
    pub fn extra(mut self, text: &str) -> ProxyToml {
        assert!(!text.contains("[tls]"), "[tls] keys go through ProxyToml::tls, not extra: {text:?}");
        if !text.trim().is_empty() {
            self.extra.push(text.trim_end().to_string());
        }
        self
    }

    /// A line of the `[tls]` table (`hsts = true`, `acme = { ... }`).
    pub fn tls(mut self, line: &str) -> ProxyToml {
        self.tls.push(line.trim_end().to_string());
        self
    }

    /// `[tls] cert` and `key`: the test CA's leaf, by absolute paths.
    pub fn certificate(self, ca: &TestCa) -> ProxyToml {
        self.certificate_files(&ca.cert_path, &ca.key_path)
    }

    /// `[tls] cert` and `key` as given (a relative path is read from the
    /// folder of the proxy.toml).
    pub fn certificate_files(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> ProxyToml {
        let (cert, key) = (cert.as_ref().display().to_string(), key.as_ref().display().to_string());
        self.tls(&format!("cert = \"{cert}\"")).tls(&format!("key = \"{key}\""))
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut text = String::new();
        if let Some(listen) = &self.listen {
            text.push_str(&format!("listen = \"{listen}\"\n"));
        }
        if let Some(upstream) = &self.upstream {
            text.push_str(&format!("upstream = \"{upstream}\"\n"));
        }
        for extra in &self.extra {
            text.push_str(extra);
            text.push('\n');
        }
        if !self.tls.is_empty() {
            text.push_str("\n[tls]\n");
            for line in &self.tls {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Writes `DIR/proxy.toml`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        self.write_as(dir.join("proxy.toml"))
    }

    /// Writes the text to `path`; returns it.
    pub fn write_as(&self, path: impl Into<PathBuf>) -> PathBuf {
        let path = path.into();
        std::fs::write(&path, self.text()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Writes `DIR/proxy.toml` and loads it as the proxy would.
    pub fn load(&self, dir: &Path) -> vaultgate::Config {
        let path = self.write(dir);
        vaultgate::Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), self.text()))
    }

    /// Writes `DIR/proxy.toml` and starts the real proxy from it, as a user
    /// would; returns the server and the address it listens on.
    pub async fn start(&self, dir: &Path) -> (vaultgate::Server, SocketAddr) {
        let server = vaultgate::Server::start(self.load(dir)).await.unwrap();
        let addr = server.local_addr();
        (server, addr)
    }
}
