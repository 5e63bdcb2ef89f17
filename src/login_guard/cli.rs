//! `vaultgate bans` and `vaultgate unban ADDRESS`: the operator's view of
//! the state file, and requests the running vaultgate takes (`state.rs`
//! says why the state file itself is never edited from outside).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::state;
use super::table::{human, show_key, Ban};
use crate::config::Config;
use crate::conn_limit::group;

/// How long `unban` waits for the running vaultgate to take its request
/// (it looks every second).
const TAKEN_WITHIN: Duration = Duration::from_secs(5);

fn state_file(config: &Config) -> Result<PathBuf, String> {
    config.login_guard.state_file.clone().ok_or_else(|| {
        format!(
            "{}: [login_guard] keeps its bans in memory only (no ACME state directory, no state_file)\n  \
             fix: set state_file under [login_guard], e.g. state_file = \"/var/lib/vaultgate/login_guard.json\", and reload",
            config.source.display()
        )
    })
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The bans in force in `path`, soonest ending first.
fn active(path: &Path) -> Result<Vec<(IpAddr, Ban)>, String> {
    let now = now_ms();
    let mut bans: Vec<_> = state::load(path)?.into_iter().filter(|(_, b)| b.until > now).collect();
    bans.sort_by_key(|(k, b)| (b.until, *k));
    Ok(bans)
}

/// What `vaultgate check` says of `[login_guard]`; `Err` (a warning) when
/// the state file is there but cannot be read: vaultgate would start
/// without its bans.
pub fn describe(config: &Config) -> Result<String, String> {
    let g = &config.login_guard;
    if !g.enabled {
        return Ok("login guard: off ([login_guard] enabled = false)".into());
    }
    let rules = format!(
        "login guard: {} failed logins within {} ban an address for {} (doubling up to {})",
        g.max_failures,
        human(g.window),
        human(g.ban),
        human(g.max_ban)
    );
    match &g.state_file {
        None => Ok(format!(
            "{rules}; bans in memory only (set [login_guard] state_file to keep them across restarts)"
        )),
        Some(path) => {
            let bans = active(path).map_err(|e| format!("{e}; vaultgate would start without these bans"))?;
            Ok(format!("{rules}; bans kept in {} ({} in force)", path.display(), bans.len()))
        }
    }
}

/// `vaultgate bans`: one line per ban in force. Whether it worked.
pub fn bans(config_path: &Path) -> bool {
    let run = || -> Result<String, String> {
        let config = Config::load(config_path).map_err(|e| e.to_string())?;
        let path = state_file(&config)?;
        let bans = active(&path)?;
        if bans.is_empty() {
            return Ok(format!("no bans in force ({})\n", path.display()));
        }
        let prefix = config.limits.ipv6_prefix;
        let now = now_ms();
        let mut out = format!("{:<28} {:<22} {:>10} {:>5}\n", "ADDRESS", "UNTIL", "LEFT", "BANS");
        for (key, ban) in bans {
            out.push_str(&format!(
                "{:<28} {:<22} {:>10} {:>5}\n",
                show_key(key, prefix),
                rfc3339(ban.until),
                human(Duration::from_millis(ban.until - now)),
                ban.strikes
            ));
        }
        Ok(out)
    };
    report(run())
}

/// `vaultgate unban ADDRESS`: asks the running vaultgate to lift the ban on
/// `address` (an address, or an IPv6 network as `bans` lists it) and waits
/// a little for it to do so. Whether it worked.
pub fn unban(config_path: &Path, address: &str) -> bool {
    let run = || -> Result<String, String> {
        let config = Config::load(config_path).map_err(|e| e.to_string())?;
        let path = state_file(&config)?;
        let written = address.trim();
        let ip: IpAddr = written.split('/').next().unwrap_or("").parse().map_err(|_| {
            format!("`{written}` is not an IP address\n  fix: write it as `vaultgate bans` lists it, e.g. vaultgate unban 203.0.113.7")
        })?;
        let prefix = config.limits.ipv6_prefix;
        let key = group(ip, prefix);
        let shown = show_key(key, prefix);
        if !active(&path)?.iter().any(|(k, _)| group(*k, prefix) == key) {
            return Err(format!("{shown} is not banned (see `vaultgate bans`)"));
        }
        let request = state::request_unban(&path, ip)
            .map_err(|e| format!("cannot leave the unban request beside {}: {e}", path.display()))?;
        let deadline = std::time::Instant::now() + TAKEN_WITHIN;
        while request.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if request.exists() {
            return Ok(format!(
                "no running vaultgate took the request within {}s: the ban on {shown} is lifted when vaultgate next starts (the request waits in {})\n",
                TAKEN_WITHIN.as_secs(),
                request.display()
            ));
        }
        Ok(format!("unbanned {shown}\n"))
    };
    report(run())
}

/// Prints a command's answer (stdout) or error (stderr); whether it worked.
fn report(result: Result<String, String>) -> bool {
    match result {
        Ok(text) => {
            print!("{text}");
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}
