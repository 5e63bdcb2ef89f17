//! The ACME state directory: one folder per CA directory (an account and its
//! certificates never mix between Let's Encrypt's staging and production),
//! one folder per domain in it.
//!
//! ```text
//! state_dir/                                    0700
//!   acme-v02.api.letsencrypt.org-directory/     0700
//!     account.json                              0600
//!     vault.example.com/cert.pem, key.pem       0600
//!     wildcard_.example.com/…                   (for *.example.com)
//! ```
//!
//! Files are written to a temporary name and renamed, so a crash never
//! leaves half a key.

use std::fs;
use std::path::PathBuf;

use crate::config::AcmeConfig;
use crate::tls::private_files::{private_dir, write_private};

pub struct Store {
    /// state_dir/<directory slug>
    ca_dir: PathBuf,
    /// ca_dir/<domain>
    domain_dir: PathBuf,
}

impl Store {
    pub fn new(config: &AcmeConfig) -> Store {
        let ca_dir = config.state_dir.join(slug(&config.directory));
        // `*.example.com` is kept as `wildcard_.example.com`: no `*` for a
        // shell to expand when someone looks at the files.
        let domain_dir = ca_dir.join(config.domain.replace('*', "wildcard_"));
        Store { ca_dir, domain_dir }
    }

    pub fn account_file(&self) -> PathBuf {
        self.ca_dir.join("account.json")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.domain_dir.join("cert.pem")
    }

    pub fn key_file(&self) -> PathBuf {
        self.domain_dir.join("key.pem")
    }

    /// The stored account credentials (JSON), if any.
    pub fn read_account(&self) -> std::io::Result<Option<String>> {
        match fs::read_to_string(self.account_file()) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write_account(&self, json: &str) -> std::io::Result<()> {
        private_dir(&self.ca_dir)?;
        write_private(&self.account_file(), json.as_bytes())
    }

    pub fn forget_account(&self) -> std::io::Result<()> {
        match fs::remove_file(self.account_file()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Stores a new chain and key; the key first, so that a crash in between
    /// leaves a pair that fails the key check and is obtained again.
    pub fn write_certificate(&self, chain_pem: &str, key_pem: &str) -> std::io::Result<()> {
        private_dir(&self.ca_dir)?;
        private_dir(&self.domain_dir)?;
        write_private(&self.key_file(), key_pem.as_bytes())?;
        write_private(&self.cert_file(), chain_pem.as_bytes())
    }
}

/// A folder name for a directory URL: `https://acme-v02.api.letsencrypt.org/directory`
/// → `acme-v02.api.letsencrypt.org-directory`.
pub fn slug(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let mut out = String::new();
    for c in rest.trim_end_matches('/').chars() {
        let keep = c.is_ascii_alphanumeric() || c == '.' || c == '_';
        out.push(if keep { c.to_ascii_lowercase() } else { '-' });
    }
    let out = out.trim_matches(['-', '.']).to_string();
    if out.is_empty() {
        "ca".to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn slugs_name_the_ca() {
        assert_eq!(
            slug("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org-directory"
        );
        assert_eq!(slug("https://127.0.0.1:14000/dir"), "127.0.0.1-14000-dir");
        assert_eq!(slug("https://x/../../etc/"), "x-..-..-etc");
        assert!(!slug("https://x/../../etc").contains('/'));
        assert_eq!(slug("https://"), "ca");
    }

    #[test]
    fn files_are_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let config = AcmeConfig {
            domain: "vault.example.com".into(),
            email: None,
            directory: "https://ca.test/dir".into(),
            ca: None,
            state_dir: dir.path().join("state"),
            challenges: vec![crate::config::Challenge::TlsAlpn01],
            dns: None,
        };
        let store = Store::new(&config);
        assert_eq!(store.read_account().unwrap(), None);
        store.write_account("{\"a\":1}").unwrap();
        store.write_account("{\"a\":2}").unwrap();
        assert_eq!(store.read_account().unwrap().as_deref(), Some("{\"a\":2}"));
        store.write_certificate("CHAIN", "KEY").unwrap();
        for file in [store.account_file(), store.cert_file(), store.key_file()] {
            assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "{file:?}");
        }
        for d in [config.state_dir.clone(), store.ca_dir.clone(), store.domain_dir.clone()] {
            assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{d:?}");
        }
        assert_eq!(fs::read_to_string(store.key_file()).unwrap(), "KEY");
        store.forget_account().unwrap();
        store.forget_account().unwrap();
        assert_eq!(store.read_account().unwrap(), None);
    }
}
