//! The service around a running server: SIGTERM (or Ctrl-C) drains and
//! stops it, SIGHUP and certificate files changing on disk reload it
//! (`reload.rs`), and systemd is told each step (`systemd.rs`).

pub mod reload;
pub mod systemd;

use std::path::Path;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::server::Server;

/// Serves until SIGTERM or Ctrl-C, reloading `config_path` on SIGHUP, then
/// shuts the server down (draining connections).
pub async fn run(server: Server, config_path: &Path) -> std::io::Result<()> {
    // SIGTERM and SIGHUP handled before READY=1 lets systemd send them.
    let term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            server.shutdown().await;
            return Err(e);
        }
    };
    let hup = reload::hangup();
    systemd::ready();
    tokio::select! {
        _ = stop_signal(term) => {}
        _ = reload::watch_with(&server, config_path, hup) => {}
    }
    tracing::info!("shutting down");
    systemd::stopping();
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_signal(mut term: Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
