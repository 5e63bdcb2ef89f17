//! The Debian package (`cargo deb`, [package.metadata.deb] in Cargo.toml),
//! built and taken apart without installing it: `dpkg-deb -x`/`-e`, the
//! layout, the conffile, the maintainer scripts, the unit, then `lintian`
//! (.ci/run installs it and cargo-deb; without either the test fails).
//!
//! The test packages the debug binary the other tests already built (`cargo
//! deb --profile dev --no-build`, seconds) rather than a release build (about
//! 2.5 minutes on two cores): everything checked here but the binary's speed
//! is the same. A release package is `cargo deb`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{optional_tool, tool, Tool};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Builds the .deb into `dir` with `cargo deb`.
fn build_deb(dir: &Path) -> PathBuf {
    tool(Tool::CargoDeb);
    run(Command::new(cargo())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["deb", "--profile", "dev", "--no-build", "--fast", "--quiet", "--output"])
        .arg(dir));
    let debs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let name = debs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("vaultgate_{}-1_", env!("CARGO_PKG_VERSION"))), "{name}");
    debs[0].clone()
}

#[test]
fn the_debian_package_has_the_binary_unit_user_conffile_and_passes_lintian() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());
    let root = dir.path().join("root");
    let control = dir.path().join("control");
    let dpkg_deb = tool(Tool::DpkgDeb);
    run(Command::new(&dpkg_deb).arg("-x").arg(&deb).arg(&root));
    run(Command::new(&dpkg_deb).arg("-e").arg(&deb).arg(&control));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));

    // The layout: every file, nothing else.
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    assert_eq!(
        files,
        [
            "etc/vaultgate/proxy.toml",
            "usr/bin/vaultgate",
            "usr/lib/systemd/system/vaultgate.service",
            "usr/lib/systemd/system/vaultgate.socket",
            "usr/lib/sysusers.d/vaultgate.conf",
            "usr/share/doc/vaultgate/README.md",
            "usr/share/doc/vaultgate/SECURITY.md",
            "usr/share/doc/vaultgate/changelog.Debian.gz",
            "usr/share/doc/vaultgate/copyright",
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("usr/bin/vaultgate"), 0o755);
    assert_eq!(mode("etc/vaultgate/proxy.toml"), 0o644);

    // The packaged binary runs, and the packaged config is valid.
    let bin = root.join("usr/bin/vaultgate");
    let out = run(Command::new(&bin).arg("--version"));
    assert_eq!(text(&out).trim(), format!("vaultgate {}", env!("CARGO_PKG_VERSION")));
    let conf = root.join("etc/vaultgate/proxy.toml");
    let out = run(Command::new(&bin).args(["check", "--config"]).arg(&conf));
    assert!(text(&out).contains("ok (listen 0.0.0.0:443, upstream http://127.0.0.1:8000"), "{}", text(&out));
    // Production-shaped, not the repository's laptop file.
    let conf_text = read(&conf);
    for needle in ["acme = { domain = ", "state_dir = \"/var/lib/vaultgate/acme\"", "[redirect]", "[metrics]"]
    {
        assert!(conf_text.contains(needle), "proxy.toml lacks {needle}");
    }

    // The conffile dpkg keeps across upgrades, and only it.
    assert_eq!(read(&control.join("conffiles")).lines().collect::<Vec<_>>(), ["/etc/vaultgate/proxy.toml"]);
    let fields = read(&control.join("control"));
    assert!(fields.contains("Package: vaultgate\n"), "{fields}");
    let depends = fields.lines().find_map(|l| l.strip_prefix("Depends: ")).expect("Depends");
    for dep in ["libc6", "ssl-cert", "systemd | systemd-standalone-sysusers"] {
        assert!(depends.contains(dep), "Depends: {depends}");
    }

    // The unit: the packaged binary and config, Type=notify, the user, the state.
    let unit = read(&root.join("usr/lib/systemd/system/vaultgate.service"));
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/vaultgate --config /etc/vaultgate/proxy.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=vaultgate",
        "StateDirectory=vaultgate",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // systemd's own parser, where systemd is installed: nothing unknown or
    // unparsable (only the binary missing from this host's /usr/bin may be said).
    if let Some(Ok(out)) = optional_tool(Tool::SystemdAnalyze).map(|systemd_analyze| {
        Command::new(systemd_analyze)
            .arg("verify")
            .arg(root.join("usr/lib/systemd/system/vaultgate.service"))
            .arg(root.join("usr/lib/systemd/system/vaultgate.socket"))
            .output()
    }) {
        let said = text(&out);
        let other: Vec<_> = said
            .lines()
            .filter(|l| !l.contains("Command /usr/bin/vaultgate is not executable") && !l.trim().is_empty())
            .collect();
        assert!(other.is_empty(), "systemd-analyze verify:\n{said}");
    }

    // The user: sysusers.d, applied by postinst on configure.
    let sysusers = read(&root.join("usr/lib/sysusers.d/vaultgate.conf"));
    assert!(
        sysusers.lines().any(|l| l.starts_with("u vaultgate - ") && l.ends_with(" /var/lib/vaultgate")),
        "{sysusers}"
    );
    let postinst = read(&control.join("postinst"));
    assert!(
        postinst.contains("systemd-sysusers ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} vaultgate.conf"),
        "{postinst}"
    );
    assert!(!postinst.contains("deb-systemd-invoke start"), "not started before proxy.toml names a domain");
    assert!(postinst.contains("deb-systemd-invoke try-restart vaultgate.service"), "restarted on upgrade");
    let postrm = read(&control.join("postrm"));
    assert!(postrm.contains("rm -rf /var/lib/vaultgate"), "purge removes the state:\n{postrm}");
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(control.join(script)));
        assert_eq!(std::fs::metadata(control.join(script)).unwrap().permissions().mode() & 0o111, 0o111);
    }

    // lintian: no errors (warnings printed).
    let out =
        Command::new(tool(Tool::Lintian)).arg("--tag-display-limit").arg("0").arg(&deb).output().unwrap();
    let said = text(&out);
    eprintln!("lintian:\n{said}");
    let errors: Vec<_> = said.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{said}");
}
