//! vaultgate: a TLS-terminating, WebSocket-aware reverse proxy for Vaultwarden.
//!
//! The library API is small on purpose: load a [`Config`], [`Server::start`]
//! it, read [`Server::local_addr`], and [`Server::shutdown`] it, or hand it
//! to [`run_until_stopped`] as the `vaultgate` command does; [`check`] is
//! `vaultgate check`, [`ca_export`] `vaultgate ca export`. Everything else is the crate's own.
//!
//! The modules are floors: each uses only the floors below it (the order
//! is `FLOORS` in the test at the end of this file; ARCHITECTURE.md has the
//! map).

pub(crate) mod acme;
pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod conn_limit;
pub(crate) mod daemon;
pub(crate) mod http;
pub(crate) mod io;
pub(crate) mod login_guard;
pub(crate) mod observe;
pub(crate) mod proxy;
pub(crate) mod server;
pub(crate) mod shutdown;
pub(crate) mod tls;
pub(crate) mod websocket;

pub use check::ca::export as ca_export;
pub use check::run as check;
pub use config::{Config, ConfigError};
pub use daemon::run as run_until_stopped;
pub use login_guard::cli::{bans, unban};
pub use server::{Server, ServerError};

/// What the integration and property tests, and the examples, reach of the
/// pure functions inside. Not part of the API.
#[doc(hidden)]
pub mod testing {
    pub use crate::check::probe::AnyCertificate;
    pub use crate::config::parse_duration;
    pub use crate::http::{access, client_cert, client_ip, headers, host, path};
    pub use crate::observe::redact;
}

/// The floors, top first: a module may use only the ones after its own.
#[cfg(test)]
mod floors {
    const FLOORS: [&str; 14] = [
        "check",
        "daemon",
        "server",
        "acme",
        "proxy",
        "login_guard",
        "websocket",
        "tls",
        "observe",
        "shutdown",
        "conn_limit",
        "config",
        "http",
        "io",
    ];

    fn rank(module: &str) -> Option<usize> {
        FLOORS.iter().position(|f| *f == module)
    }

    /// Every `crate::<module>` a file's code (before its tests) names.
    fn uses(code: &str) -> Vec<&str> {
        code.match_indices("crate::")
            .map(|(at, m)| {
                let rest = &code[at + m.len()..];
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                &rest[..end]
            })
            .collect()
    }

    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// What a file inside a folder takes from its folder's `mod.rs` (not
    /// from a sibling): `mod.rs` uses its children, so that is a circle.
    fn from_parent<'a>(code: &'a str, folder: &str, siblings: &[String]) -> Vec<&'a str> {
        let mut names = Vec::new();
        for prefix in ["super::".to_string(), format!("crate::{folder}::")] {
            for (at, _) in code.match_indices(prefix.as_str()) {
                let rest = &code[at + prefix.len()..];
                let rest = rest.strip_prefix('{').unwrap_or(rest);
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                let name = &rest[..end];
                if !name.is_empty() && !siblings.iter().any(|s| s == name) {
                    names.push(name);
                }
            }
        }
        names
    }

    #[test]
    fn every_import_points_down() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut up = Vec::new();
        for path in &all {
            let rel = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let own = rel.split('/').next().unwrap().trim_end_matches(".rs");
            let Some(own_rank) = rank(own) else {
                assert!(
                    matches!(own, "lib" | "main"),
                    "{rel}: a module that is on no floor (add it to FLOORS)"
                );
                continue;
            };
            let text = std::fs::read_to_string(path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for used in uses(code) {
                if rank(used).is_some_and(|r| r < own_rank) {
                    up.push(format!("{rel} uses crate::{used}"));
                }
            }
            let folder = path.parent().unwrap();
            if folder != src && !rel.ends_with("/mod.rs") && rel != "server/reload.rs" {
                let siblings: Vec<String> = std::fs::read_dir(folder)
                    .unwrap()
                    .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
                    .collect();
                for name in from_parent(code, own, &siblings) {
                    up.push(format!("{rel} uses {name} from its folder's mod.rs"));
                }
            }
        }
        assert!(all.len() > 40, "found the sources");
        assert!(up.is_empty(), "imports pointing up the floors:\n{}", up.join("\n"));
    }
}
