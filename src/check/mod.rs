//! `vaultgate check`: the configuration and certificates, and with
//! `--probe` the running setup end to end (`probe.rs`).

pub mod probe;

use std::path::Path;

use crate::config::{Config, TlsSource};

/// What `[tls.client_auth]` will accept, in a line or two.
fn describe_client_auth(
    auth: &crate::config::ClientAuth,
    loaded: &crate::tls::client_auth::Loaded,
) -> String {
    let mut text = format!(
        "client certificates: {} ({} trust anchor{}: {}); {}",
        if auth.required { "required" } else { "verified when given, never required" },
        loaded.anchors.len(),
        if loaded.anchors.len() == 1 { "" } else { "s" },
        loaded.anchors.join("; "),
        match &auth.crl {
            None => "no CRL".to_string(),
            Some(file) => format!(
                "{} CRL{} from {} (issued by {})",
                loaded.crls.len(),
                if loaded.crls.len() == 1 { "" } else { "s" },
                file.display(),
                loaded.crls.join("; ")
            ),
        }
    );
    if auth.required && (!auth.exempt_paths.is_empty() || !auth.exempt_networks.is_empty()) {
        let networks: Vec<String> = auth.exempt_networks.iter().map(|n| n.to_string()).collect();
        text.push_str(&format!(
            "\n  exempt: paths [{}], networks [{}]",
            auth.exempt_paths.join(", "),
            networks.join(", ")
        ));
    }
    text
}

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
    if let Some(auth) = &config.tls.client_auth {
        // Loaded once more for what it holds (tls::load above has refused
        // a missing file, one without certificates, a CRL that does not parse).
        match crate::tls::client_auth::load(auth, crate::tls::provider()) {
            Ok(loaded) => println!("{}", describe_client_auth(auth, &loaded)),
            Err(e) => {
                eprintln!("error: {e}");
                return false;
            }
        }
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
