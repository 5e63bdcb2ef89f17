//! Every program from outside the repository that a test runs, found in one
//! place. A missing one fails the test with one line saying what is missing
//! and how to get it; nothing is skipped and nothing is installed behind the
//! tester's back (.ci/run installs them all).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Debian's Chromium (never a downloaded browser), driven by tests/js.
    Chromium,
    /// Node.js, for the Bitwarden and SignalR clients in tests/js.
    Node,
    /// npm, for `npm ci` in tests/js.
    Npm,
    /// Pebble, the ACME test CA.
    Pebble,
    /// Pebble's DNS server.
    PebbleChallTestSrv,
    /// Knot DNS, the authoritative server DNS-01 updates go to (RFC 2136, TSIG).
    Knotd,
    /// Knot's `dig` (to look at the zone) and `nsupdate` (the exec hook's tool).
    Kdig,
    Knsupdate,
    Lintian,
    /// Debian's HAProxy, the relay in front that sends PROXY headers.
    Haproxy,
    /// `cargo deb` (the cargo-deb binary cargo runs).
    CargoDeb,
    DpkgDeb,
    Curl,
    Openssl,
    /// systemd's unit checker (`systemd-analyze verify`).
    SystemdAnalyze,
    /// systemd's socket activation for one program, as a `.socket` unit does it.
    SystemdSocketActivate,
    /// util-linux's `unshare` (a mount namespace of the test's own, as a
    /// container runtime makes one) and `setpriv` (an unprivileged user with
    /// no capabilities, as the image runs).
    Unshare,
    Setpriv,
    /// The real Vaultwarden: `$VAULTWARDEN_BIN`, else
    /// ../shared/vaultwarden/vaultwarden beside the repository (a release
    /// build linked against Debian 12's libssl3).
    Vaultwarden,
}

impl Tool {
    /// The program's name, as looked up on PATH.
    fn program(self) -> &'static str {
        match self {
            Tool::Chromium => "chromium",
            Tool::Node => "node",
            Tool::Npm => "npm",
            Tool::Pebble => "pebble",
            Tool::PebbleChallTestSrv => "pebble-challtestsrv",
            Tool::Knotd => "knotd",
            Tool::Kdig => "kdig",
            Tool::Knsupdate => "knsupdate",
            Tool::Lintian => "lintian",
            Tool::Haproxy => "haproxy",
            Tool::CargoDeb => "cargo-deb",
            Tool::DpkgDeb => "dpkg-deb",
            Tool::Curl => "curl",
            Tool::Openssl => "openssl",
            Tool::SystemdAnalyze => "systemd-analyze",
            Tool::SystemdSocketActivate => "systemd-socket-activate",
            Tool::Unshare => "unshare",
            Tool::Setpriv => "setpriv",
            Tool::Vaultwarden => "vaultwarden",
        }
    }

    /// How to get it.
    fn how(self) -> &'static str {
        match self {
            Tool::Chromium => "apt-get install chromium (or run .ci/run)",
            Tool::Node => "apt-get install nodejs (or run .ci/run)",
            Tool::Npm => "apt-get install npm (or run .ci/run)",
            Tool::Pebble | Tool::PebbleChallTestSrv => "apt-get install pebble (or run .ci/run)",
            Tool::Knotd => "apt-get install knot (or run .ci/run)",
            Tool::Kdig | Tool::Knsupdate => "apt-get install knot-dnsutils (or run .ci/run)",
            Tool::Lintian => "apt-get install lintian (or run .ci/run)",
            Tool::Haproxy => "apt-get install haproxy (or run .ci/run)",
            Tool::CargoDeb => "cargo install cargo-deb --locked --version 3.8.0 (or run .ci/run)",
            Tool::DpkgDeb => "apt-get install dpkg",
            Tool::Curl => "apt-get install curl (or run .ci/run)",
            Tool::Openssl => "apt-get install openssl (or run .ci/run)",
            Tool::SystemdAnalyze | Tool::SystemdSocketActivate => "apt-get install systemd (or run .ci/run)",
            Tool::Unshare | Tool::Setpriv => {
                "apt-get install util-linux (and run the tests as root: they make a mount namespace)"
            }
            Tool::Vaultwarden => {
                "set VAULTWARDEN_BIN=/path/to/vaultwarden (.ci/run uses ../shared/vaultwarden/vaultwarden)"
            }
        }
    }
}

/// Where `tool` is; panics with one line saying how to get it when it is missing.
pub fn tool(tool: Tool) -> PathBuf {
    match find(tool) {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

/// Where `tool` is, or `None`: for checks that add to a test without being
/// what it is about.
pub fn optional_tool(tool: Tool) -> Option<PathBuf> {
    find(tool).ok()
}

fn find(tool: Tool) -> Result<PathBuf, String> {
    let missing = |what: &str| format!("{what} not found: {}", tool.how());
    if tool == Tool::Vaultwarden {
        let path = match std::env::var_os("VAULTWARDEN_BIN") {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(format!("VAULTWARDEN_BIN={} is not a file: {}", path.display(), tool.how()));
                }
                path
            }
            None => {
                let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vaultwarden/vaultwarden");
                if !default.is_file() {
                    return Err(missing(&format!(
                        "Vaultwarden (no VAULTWARDEN_BIN, nothing at {})",
                        default.display()
                    )));
                }
                default
            }
        };
        let libs = std::process::Command::new("ldconfig")
            .arg("-p")
            .output()
            .map_err(|e| format!("ldconfig: {e}"))?;
        if !String::from_utf8_lossy(&libs.stdout).contains("libssl.so.3 ") {
            return Err(
                "libssl3 (for Vaultwarden) not found: apt-get install libssl3 (or run .ci/run)".into()
            );
        }
        return Ok(path);
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    // Daemons (knotd, haproxy) live in /usr/sbin, which a user's PATH may lack.
    dirs.push(PathBuf::from("/usr/sbin"));
    if tool == Tool::CargoDeb {
        // Where cargo looks for its subcommands besides PATH.
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
        dirs.extend(home.map(|h| h.join("bin")));
    }
    dirs.iter()
        .map(|d| d.join(tool.program()))
        .find(|p| is_executable(p))
        .ok_or_else(|| missing(tool.program()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// tests/js, with its npm packages installed (`npm ci` on first use when
/// node_modules lacks them).
pub fn js_dir() -> PathBuf {
    static DONE: Mutex<bool> = Mutex::new(false);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    let installed = ["@microsoft/signalr", "@bitwarden/cli/package.json", "playwright-core"]
        .iter()
        .all(|p| dir.join("node_modules").join(p).exists());
    if !*done && !installed {
        let out = std::process::Command::new(self::tool(Tool::Npm))
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "npm ci in tests/js: {}", String::from_utf8_lossy(&out.stderr));
    }
    *done = true;
    dir
}

/// Held by the tests that drive Chromium or the Node clients next to the
/// stand-in: one at a time, so two browsers do not compete for two cores.
pub static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
