//! The DNS-01 exec hook: `PROGRAM present|cleanup FQDN VALUE`, the calling
//! convention of lego's `exec` provider, so that any provider script (lego's,
//! or acme.sh's dnsapi behind a few lines of shell) puts the record in place.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A hook that has not finished by then is killed: a provider's API that
/// hangs must not hold the renewal forever.
const TIMEOUT: Duration = Duration::from_secs(120);
/// What of a failed hook's output goes into the log line.
const SHOWN: usize = 600;

pub struct Hook {
    pub program: PathBuf,
}

impl Hook {
    /// Checks that `program` is an executable file.
    pub fn load(program: &Path) -> Result<Hook, String> {
        let meta = std::fs::metadata(program)
            .map_err(|e| format!("tls.acme.dns.hook: cannot use {}: {e}", program.display()))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(format!(
                "tls.acme.dns.hook: {} is not an executable file (chmod +x it, or name the program that is)",
                program.display()
            ));
        }
        Ok(Hook { program: program.to_path_buf() })
    }

    /// `PROGRAM ACTION FQDN VALUE`; `FQDN` ends with a dot (`_acme-challenge.vault.example.com.`).
    pub async fn call(&self, action: &str, fqdn: &str, value: &str) -> Result<(), String> {
        let run = tokio::process::Command::new(&self.program)
            .args([action, fqdn, value])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let what = format!("the hook `{} {action} {fqdn} …`", self.program.display());
        let out = match tokio::time::timeout(TIMEOUT, run).await {
            Err(_) => {
                return Err(format!("{what} did not finish within {} s and was killed", TIMEOUT.as_secs()))
            }
            Ok(Err(e)) => return Err(format!("cannot run {what}: {e}")),
            Ok(Ok(out)) => out,
        };
        if out.status.success() {
            return Ok(());
        }
        let mut said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if said.is_empty() {
            said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        if said.len() > SHOWN {
            let cut = said.char_indices().map(|(i, _)| i).find(|i| *i >= said.len() - SHOWN).unwrap_or(0);
            said = format!("…{}", &said[cut..]);
        }
        Err(format!("{what} failed ({}): {}", out.status, crate::observe::redact::escape(&said)))
    }
}
