//! Reloading while running: on SIGHUP, and when the certificate or key file
//! changes on disk (certbot and acme.sh renew without telling anyone). A
//! broken new configuration or certificate is refused with a log line, and
//! the running one stays in force.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::{Config, TlsSource};
use crate::server::Server;

/// SIGHUP handled from now on (instead of its default, ending the process),
/// for [`watch_with`]; None, with a warning, when it cannot be.
pub fn hangup() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP ({e}); reload by restarting");
            None
        }
    }
}

/// [`watch`] with a SIGHUP stream made earlier by [`hangup`].
pub async fn watch_with(server: &Server, config_path: &Path, mut hup: Option<Signal>) {
    let mut seen = stamps(&server.config());
    loop {
        let interval = server.config().tls.watch_interval;
        tokio::select! {
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                reload(server, config_path, "SIGHUP");
            }
            _ = tokio::time::sleep(interval) => {
                let now = stamps(&server.config());
                if now == seen {
                    continue;
                }
                reload(server, config_path, "the certificate files changed");
            }
        }
        seen = stamps(&server.config());
    }
}

/// Reads the file again and hands it to the server; logs the outcome.
pub fn reload(server: &Server, config_path: &Path, why: &str) {
    super::systemd::reloading();
    let result = Config::load(config_path)
        .map_err(|e| e.to_string())
        .and_then(|config| server.reload(config).map_err(|e| e.to_string()));
    server.metrics().reloaded(result.is_ok());
    if let Err(e) = result {
        tracing::error!("reload ({why}) refused, the running configuration stays in force: {e}");
    } else {
        tracing::info!("reload ({why}) done");
    }
    // Refused or not, a configuration is in force again.
    super::systemd::ready();
}

/// What identifies the current content of the certificate and key files,
/// and of `[tls.client_auth]`'s CA and CRL (a new CRL takes effect on new
/// connections without a SIGHUP).
fn stamps(config: &Config) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    let mut files: Vec<&PathBuf> = match &config.tls.source {
        // The ACME and local-CA tasks swap their certificates themselves.
        TlsSource::LocalCa(_) | TlsSource::Acme(_) => Vec::new(),
        TlsSource::Files { cert, key } => vec![cert, key],
    };
    if let Some(auth) = &config.tls.client_auth {
        files.push(&auth.ca);
        files.extend(auth.crl.as_ref());
    }
    files
        .into_iter()
        .map(|p| {
            // Follow symlinks: certbot's live/ files point into archive/.
            let meta = std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.clone(), meta)
        })
        .collect()
}
