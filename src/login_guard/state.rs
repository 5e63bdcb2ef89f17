//! The bans on disk: one small JSON file that the running vaultgate alone
//! writes (a temporary file, fsync, rename: a crash leaves the old file or
//! the new, never half of one), and unban requests beside it.
//!
//! `vaultgate unban` never edits the state file: the running process
//! rewrites it whenever a ban begins or ends, and an edit made in between
//! would be lost. It drops a request file of its own instead
//! (`<state file>.unban-<unique>`, written the same atomic way), which the
//! running vaultgate takes within a second (or the next one at its start),
//! applies and deletes. Every request has its own file, so two never
//! overwrite each other either.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::Ban;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    bans: Vec<Saved>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    address: IpAddr,
    /// Milliseconds since the Unix epoch.
    until_ms: u64,
    strikes: u32,
}

/// The bans in `path`; none when the file does not exist yet.
pub fn load(path: &Path) -> Result<Vec<(IpAddr, Ban)>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: File = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a login guard state file: {e}", path.display()))?;
    if file.version != 1 {
        return Err(format!("{} has version {}, this vaultgate reads 1", path.display(), file.version));
    }
    Ok(file.bans.into_iter().map(|s| (s.address, Ban { until: s.until_ms, strikes: s.strikes })).collect())
}

/// Replaces `path` with `bans`, atomically.
pub fn save(path: &Path, bans: &[(IpAddr, Ban)]) -> std::io::Result<()> {
    let file = File {
        version: 1,
        bans: bans
            .iter()
            .map(|(address, b)| Saved { address: *address, until_ms: b.until, strikes: b.strikes })
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    // 0600, as the ACME files beside it: who was banned is the operator's business.
    write_atomically(path, &sibling(path, ".tmp"), &text, 0o600)
}

/// Writes `text` to `tmp`, flushes it to disk and renames it to `path`, then
/// flushes the directory so the rename itself survives a power cut.
fn write_atomically(path: &Path, tmp: &Path, text: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(tmp)?;
    // Whatever the umask of whoever runs this.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    f.write_all(text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// What request files are called: the state file's name and this.
const REQUEST: &str = ".unban-";

/// Leaves a request to lift the ban on `address` beside `path`; returns the
/// request file (gone once a running vaultgate has taken it).
pub fn request_unban(path: &Path, address: IpAddr) -> std::io::Result<PathBuf> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let unique = format!("{REQUEST}{}-{nanos}", std::process::id());
    let request = sibling(path, &unique);
    // Written under a name no reader picks up, then renamed into place:
    // a reader never sees half a request.
    // Readable by all (the 0700 directory keeps others out): `sudo vaultgate
    // unban` writes it as root, and the daemon reads it as its own user.
    let tmp = sibling(path, &format!(".tmp{unique}"));
    write_atomically(&request, &tmp, address.to_string().as_bytes(), 0o644)?;
    Ok(request)
}

/// The unban requests left beside `path`, each deleted once read. A file
/// that does not hold an address is deleted too, with a warning.
pub fn take_unban_requests(path: &Path) -> Vec<IpAddr> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Vec::new() };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let prefix = format!("{}{REQUEST}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let file = entry.path();
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                // Left in place: `vaultgate unban` then says it was not taken.
                tracing::warn!("cannot read the unban request {}: {e}", file.display());
                continue;
            }
        };
        match text.trim().parse::<IpAddr>() {
            Ok(ip) => out.push(ip),
            Err(_) => tracing::warn!("ignoring {}: not an unban request", file.display()),
        }
        if let Err(e) = std::fs::remove_file(&file) {
            tracing::warn!("cannot remove the unban request {}: {e}", file.display());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unban_request_is_readable_by_the_daemon_and_an_unreadable_one_is_left_for_the_cli_to_see() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("login_guard.json");
        let request = request_unban(&state, "192.0.2.1".parse().unwrap()).unwrap();
        // Written by root (`sudo vaultgate unban`), read by the daemon's user.
        assert_eq!(std::fs::metadata(&request).unwrap().permissions().mode() & 0o777, 0o644);
        // One that cannot be read (here: a directory by a request's name).
        let unreadable = dir.path().join("login_guard.json.unban-x");
        std::fs::create_dir(&unreadable).unwrap();
        assert_eq!(take_unban_requests(&state), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert!(!request.exists(), "taken");
        assert!(unreadable.exists(), "left in place, so that unban says it was not taken");
    }

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bans_round_trip_and_a_missing_file_is_no_bans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("login_guard.json");
        assert_eq!(load(&path).unwrap(), vec![]);
        let bans = vec![
            (ip("203.0.113.7"), Ban { until: 1_800_000_000_000, strikes: 1 }),
            (ip("2001:db8:1:2::"), Ban { until: 1_800_000_360_000, strikes: 3 }),
        ];
        save(&path, &bans).unwrap();
        assert_eq!(load(&path).unwrap(), bans);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!sibling(&path, ".tmp").exists(), "the temporary file was renamed");
        save(&path, &[]).unwrap();
        assert_eq!(load(&path).unwrap(), vec![]);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("login_guard.json");
        std::fs::write(&path, "{\"version\":1,\"bans\":[{\"address\":\"nope\"").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("login_guard.json") && e.contains("not a login guard state file"), "{e}");
    }

    #[test]
    fn unban_requests_are_taken_once_each_and_leave_the_state_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("login_guard.json");
        save(&path, &[(ip("192.0.2.1"), Ban { until: 5, strikes: 1 })]).unwrap();
        let before = std::fs::read(&path).unwrap();
        let a = request_unban(&path, ip("192.0.2.1")).unwrap();
        let b = request_unban(&path, ip("2001:db8::1")).unwrap();
        assert_ne!(a, b);
        std::fs::write(dir.path().join("login_guard.json.unban-bogus"), "not an address").unwrap();
        std::fs::write(dir.path().join("other.json.unban-1"), "192.0.2.9").unwrap();
        let mut got = take_unban_requests(&path);
        got.sort();
        assert_eq!(got, vec![ip("192.0.2.1"), ip("2001:db8::1")]);
        assert!(!a.exists() && !b.exists() && !dir.path().join("login_guard.json.unban-bogus").exists());
        assert!(dir.path().join("other.json.unban-1").exists(), "another file's requests are not ours");
        assert_eq!(take_unban_requests(&path), Vec::<IpAddr>::new());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn requests_made_while_the_proxy_rewrites_the_file_are_never_lost_and_readers_never_see_half_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("login_guard.json");
        let bans: Vec<(IpAddr, Ban)> = (0..200u32)
            .map(|i| (IpAddr::from(std::net::Ipv4Addr::from(0xc000_0200 + i)), Ban { until: 9, strikes: 1 }))
            .collect();
        save(&path, &bans).unwrap();
        std::thread::scope(|s| {
            // The proxy: rewriting the file, and taking requests, as fast as it can.
            let writer = s.spawn(|| {
                let mut taken = Vec::new();
                for _ in 0..300 {
                    save(&path, &bans).unwrap();
                    taken.extend(take_unban_requests(&path));
                }
                taken
            });
            // `vaultgate bans`: every read is a whole file.
            s.spawn(|| {
                for _ in 0..300 {
                    assert_eq!(load(&path).unwrap().len(), 200);
                }
            });
            // `vaultgate unban`, 50 times meanwhile.
            for i in 0..50u32 {
                request_unban(&path, IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))).unwrap();
            }
            let mut taken = writer.join().unwrap();
            taken.extend(take_unban_requests(&path));
            taken.sort();
            let asked: Vec<IpAddr> =
                (0..50u32).map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))).collect();
            assert_eq!(taken, asked, "every request taken, once");
        });
    }
}
