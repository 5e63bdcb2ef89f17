//! `vaultgate check`: the configuration and certificates, and with
//! `--probe` the running setup end to end (`probe.rs`); `vaultgate ca
//! export`, the local CA's root for devices (`ca.rs`).

pub mod ca;
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

/// Addresses from which vaultgate may see the internet arrive, on this
/// host, though nothing there is the LAN: loopback (a tunnel on the host:
/// frp, rathole, ngrok, cloudflared in TCP mode) and Docker's default
/// bridges' gateways (docker-proxy hands on IPv6 clients, or all clients
/// with userland-proxy, from there).
const MASQUERADED: [(&str, &str); 4] = [
    ("127.0.0.1", "loopback, where a tunnel on this host (frp, rathole, ngrok) delivers the internet"),
    ("::1", "loopback, where a tunnel on this host (frp, rathole, ngrok) delivers the internet"),
    ("172.17.0.1", "Docker's bridge gateway, where docker-proxy delivers clients of a published port"),
    ("172.18.0.1", "a Docker network's gateway, where docker-proxy delivers clients of a published port"),
];

/// `exempt_networks` that cover an address behind which the whole internet
/// can hide, with nothing (`[proxy_protocol]`) to tell who is really there.
fn exempt_network_warnings(config: &Config, auth: &crate::config::ClientAuth) -> Vec<String> {
    if !auth.required || !config.proxy_protocol.is_empty() {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    for net in &auth.exempt_networks {
        for (addr, what) in MASQUERADED {
            if net.contains(addr.parse().expect("a literal address")) {
                warnings.push(format!(
                    "{}: [tls.client_auth] exempt_networks: {net} covers {addr}, {what}; NAT or a tunnel there \
                     makes every client look local and skip the certificate. Narrow the network to your LAN, \
                     or have the relay send a PROXY header ([proxy_protocol] from)",
                    config.source.display()
                ));
                break;
            }
        }
    }
    warnings
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
    if let Err(e) = crate::tls::validate(&config.tls) {
        eprintln!("error: {e}");
        return false;
    }
    if let TlsSource::Acme(acme) = &config.tls.source {
        println!("{}", crate::acme::describe_stored(acme));
        match crate::acme::check_dns(acme) {
            None => {}
            Some(Ok(line)) => println!("{line}"),
            Some(Err(e)) => {
                eprintln!("error: {}: {e}", path.display());
                return false;
            }
        }
        if let Some(crate::config::DnsProvider::Rfc2136 { key_secret_file, .. }) =
            acme.dns.as_deref().map(|d| &d.provider)
        {
            if let Some(warning) = crate::tls::key_permission_warning(key_secret_file) {
                eprintln!("warning: {warning}");
            }
        }
    }
    if let TlsSource::LocalCa(ca) = &config.tls.source {
        // validate() has read it once already and refused what is broken.
        match crate::tls::local_ca::describe(&crate::tls::provider(), ca) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return false;
            }
        }
    }
    if let Some(auth) = &config.tls.client_auth {
        // Loaded once more for what it holds (tls::load above has refused
        // a missing file, one without certificates, a CRL that does not parse).
        match crate::tls::client_auth::load(auth, crate::tls::provider()) {
            Ok(loaded) => {
                println!("{}", describe_client_auth(auth, &loaded));
                for warning in loaded.warnings.iter().chain(&exempt_network_warnings(&config, auth)) {
                    eprintln!("warning: {warning}");
                }
            }
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
    match crate::login_guard::cli::describe(&config) {
        Ok(line) => println!("{line}"),
        Err(warning) => eprintln!("warning: {warning}"),
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
