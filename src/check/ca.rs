//! `vaultgate ca export`: the local CA's root, for the devices that are to
//! trust the server: the PEM on stdout, the DER `.crt` phones import
//! written with `--der`, and on stderr how to install it on each kind of
//! device.

use std::path::Path;

use crate::config::{Config, TlsSource};
use crate::tls::local_ca::{Root, ROOT};

/// Prints the root of the local CA that `config` uses; true when done.
pub fn export(config: &Path, der: Option<&Path>) -> bool {
    match exported(config, der) {
        Ok((pem, steps)) => {
            print!("{pem}");
            eprintln!("{steps}");
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}

/// The root's PEM and the text that goes with it, or what stands in the way.
fn exported(path: &Path, der: Option<&Path>) -> Result<(String, String), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let TlsSource::LocalCa(ca) = &config.tls.source else {
        return Err(format!(
            "{}: [tls] takes its certificate from `cert`/`key` or `acme`, not from the local CA: there is no root to export\n  \
             fix: remove cert, key and acme from [tls] to use the local CA",
            path.display()
        ));
    };
    let root_file = ca.state_dir.join(ROOT);
    // Read only: a root made here might belong to another user than the server.
    let root = Root::open(&ca.state_dir).map_err(|e| e.to_string())?.ok_or_else(|| {
        format!(
            "{}: there is no local CA yet\n  fix: start vaultgate once with this config (it makes the root), then run this again",
            root_file.display()
        )
    })?;
    let crt = match der {
        Some(file) => {
            std::fs::write(file, root.der.as_ref())
                .map_err(|e| format!("{}: cannot write: {e}", file.display()))?;
            file.display().to_string()
        }
        None => "vaultgate-local-ca.crt".to_string(),
    };
    let config_arg = format!("--config {}", path.display());
    let mut steps = format!(
        "The root of vaultgate's local CA ({}), SHA-256 fingerprint\n  {}\n",
        root_file.display(),
        root.fingerprint()
    );
    match der {
        Some(_) => steps.push_str(&format!("The DER form phones import is in {crt}.\n")),
        None => steps.push_str(&format!(
            "For phones, write the DER form too: vaultgate ca export {config_arg} --der {crt}\n"
        )),
    }
    steps.push_str(&format!(
        "\nInstall it once on every device that opens the vault; where the device shows the fingerprint, compare it with the one above.\n\
         \n\
         Android: copy {crt} to the phone; Settings > Security & privacy > More security settings >\n  \
           Encryption & credentials > Install a certificate > CA certificate, and pick the file\n  \
           (menus differ between makers; search the settings for \"CA certificate\").\n\
         iOS, iPadOS: send {crt} to the device (AirDrop, Mail, Files) and open it (\"Profile Downloaded\");\n  \
           Settings > General > VPN & Device Management > the profile > Install; then\n  \
           Settings > General > About > Certificate Trust Settings: turn on full trust for \"vaultgate local CA\".\n  \
           Without that last switch Safari and the Bitwarden app still refuse the certificate.\n\
         Desktop:\n  \
           Debian, Ubuntu: vaultgate ca export {config_arg} | sudo tee /usr/local/share/ca-certificates/vaultgate-local-ca.crt\n    \
             && sudo update-ca-certificates\n  \
           Fedora: vaultgate ca export {config_arg} | sudo tee /etc/pki/ca-trust/source/anchors/vaultgate-local-ca.pem\n    \
             && sudo update-ca-trust\n  \
           macOS: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {crt}\n  \
           Windows (as administrator): certutil -addstore -f Root {crt}\n  \
           Firefox keeps a list of its own: Settings > Privacy & Security > Certificates > View Certificates >\n    \
             Authorities > Import.\n\
         \n\
         Whoever holds the root's key ({}) can make certificates these devices trust for any site:\n\
         keep the state directory private, and remove the root from devices that no longer use this vault.",
        ca.state_dir.join(crate::tls::local_ca::ROOT_KEY).display()
    ));
    Ok((root.pem, steps))
}
