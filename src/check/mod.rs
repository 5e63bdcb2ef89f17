//! `vaultgate check`: the configuration and certificates, and with
//! `--probe` the running setup end to end (`probe.rs`).

pub mod probe;

use std::path::Path;

use crate::config::{Config, TlsSource};

/// Checks the file at `path` (and with `probe` the running proxy it
/// describes), printing what it finds; true when everything is in order.
pub fn run(path: &Path, probe: bool) -> bool {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return false;
        }
    };
    if let Err(e) = crate::tls::load(&config.tls, &Default::default()) {
        eprintln!("error: {e}");
        return false;
    }
    if let TlsSource::Acme(acme) = &config.tls.source {
        println!("{}", crate::acme::describe_stored(acme));
    }
    if let TlsSource::Files { key, .. } = &config.tls.source {
        if let Some(warning) = crate::tls::key_permission_warning(key) {
            eprintln!("warning: {warning}");
        }
    }
    println!(
        "{}: ok (listen {}, upstream {}, hub paths {})",
        path.display(),
        config.listen,
        config.upstream.url,
        config.hub_paths.join(", ")
    );
    if !probe {
        return true;
    }
    let target = probe::Target::from_config(&config);
    let findings = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(probe::probe(&config, &target)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return false;
        }
    };
    for f in &findings {
        println!("{f}");
    }
    findings.iter().all(|f| f.ok)
}
