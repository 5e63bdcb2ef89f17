//! DNS-01 end to end: Knot DNS from Debian's `knot` package, started here on
//! 127.0.0.1 with the zone example.com and a TSIG key allowed to update it,
//! is the authoritative server; Pebble looks the TXT record up there
//! (`-dnsserver`). vaultgate puts the record in place with RFC 2136 updates
//! or through an exec hook (a shell script around Knot's `knsupdate`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use tokio::net::TcpStream;

use crate::acme::{acme_toml_for, connect, issued, leaf, Pebble, DOMAIN};
use crate::support::*;

const KEY_NAME: &str = "vaultgate-acme";

/// A random TSIG secret, base64 as `keymgr`/`tsig-keygen` print it.
fn new_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    BASE64_STANDARD.encode(bytes)
}

/// knotd serving example.com on 127.0.0.1:`port` (TCP and UDP), stopped when dropped.
struct Knot {
    _child: tokio::process::Child,
    port: u16,
    secret: String,
    dir: tempfile::TempDir,
}

impl Knot {
    async fn start() -> Knot {
        let knotd = tool(Tool::Knotd);
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let secret = new_secret();
        let d = dir.path().display();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        // ns.example.com is 127.0.0.1: the zone's NS, on port 53, where
        // nothing of this test listens. The key may change only the TXT
        // records DNS-01 needs (the README's Knot example).
        std::fs::write(
            dir.path().join("example.com.zone"),
            "$ORIGIN example.com.\n$TTL 60\n\
             @ SOA ns.example.com. admin.example.com. 1 3600 600 86400 60\n\
             @ NS ns.example.com.\nns A 127.0.0.1\nvault A 127.0.0.1\n",
        )
        .unwrap();
        let config = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n\
             database:\n    storage: \"{d}/db\"\n\
             key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
             acl:\n  - id: acme_update\n    key: {KEY_NAME}\n    action: update\n\
             \x20   update-type: TXT\n    update-owner: name\n\
             \x20   update-owner-name: [_acme-challenge.vault, _acme-challenge]\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    file: \"%s.zone\"\n\
             zone:\n  - domain: example.com\n    acl: acme_update\n\
             log:\n  - target: stderr\n    any: info\n\
             control:\n    listen: \"{d}/knot.sock\"\n"
        );
        std::fs::write(dir.path().join("knot.conf"), config).unwrap();
        let child = tokio::process::Command::new(knotd)
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdout(std::fs::File::create(dir.path().join("knot.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("knot.err")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        within("knotd to listen", async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        Knot { _child: child, port, secret, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knot.err")).unwrap_or_default()
    }

    /// The TXT records at `name`, as Knot answers them now (kdig over TCP).
    async fn txt(&self, name: &str) -> Vec<String> {
        let out = tokio::process::Command::new(tool(Tool::Kdig))
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string(), "+tcp", "+short", "TXT", name])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "kdig: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| l.trim_matches('"').to_string()).collect()
    }

    /// The DNS-01 updates Knot has processed (its log line per update).
    fn updates(&self) -> usize {
        self.log().matches("DDNS, finished").count()
    }
}

/// A file holding `secret`, mode 0600 as the README says.
fn secret_file(dir: &Path, secret: &str) -> PathBuf {
    let path = dir.join("tsig.secret");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `, dns = { … }` for RFC 2136 updates to `knot` signed with the key in `secret`.
fn rfc2136(knot: &Knot, secret: &Path, extra: &str) -> String {
    format!(
        ", dns = {{ server = \"127.0.0.1:{}\", key_name = \"{KEY_NAME}\", key_secret_file = \"{}\"{extra} }}",
        knot.port,
        secret.display()
    )
}

const RECORD: &str = "_acme-challenge.vault.example.com";

#[tokio::test]
async fn rfc_2136_gets_and_renews_the_certificate_and_removes_the_record() {
    let knot = Knot::start().await;
    // Certificates that live 12 s are due for renewal after 8.
    let pebble = Pebble::start_with(free_port(), free_port(), Some(12), Some(knot.port)).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let secret = secret_file(work.path(), &knot.secret);
    let tls_port = free_port();
    // The zone is found from the SOA; the record is awaited on Knot itself.
    let dns = rfc2136(&knot, &secret, &format!(", check_servers = [\"127.0.0.1:{}\"]", knot.port));
    let path = acme_toml_for(DOMAIN, &pebble, tls_port, upstream.addr, &work.path().join("state"), &dns)
        .write_as(work.path().join("dns.toml"));

    // `vaultgate check` says how the record will be put in place.
    let out = std::process::Command::new(RunningBinary::PATH)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("dns-01 through RFC 2136 updates to 127.0.0.1:"), "{said}");

    let proxy = RunningBinary::start(&path, "");
    let root = pebble.root().await;
    let line = proxy.wait_for_log(&["ACME: waiting up to 120 s for the TXT record", RECORD], 30).await;
    assert!(line.contains(&format!("127.0.0.1:{}", knot.port)), "{line}");
    let first = issued(tls_port, &root, None, &pebble).await;
    proxy.wait_for_log(&["ACME: TXT record", RECORD, "removed through an RFC 2136 update"], 20).await;
    assert_eq!(knot.txt(RECORD).await, Vec::<String>::new(), "the record is gone:\n{}", knot.log());

    // The renewal goes the same way, with a record of its own.
    let second = issued(tls_port, &root, Some(&first), &pebble).await;
    assert_ne!(first, second);
    let tls = connect(tls_port, &root, &[b"http/1.1"]).await.unwrap();
    assert_eq!(leaf(&tls), second);
    until("the second record removed", || knot.updates() >= 4).await;
    assert_eq!(knot.txt(RECORD).await, Vec::<String>::new(), "the record is gone:\n{}", knot.log());
    let (_, log) = proxy.stop();
    assert_eq!(log.matches("put in place through an RFC 2136 update").count(), 2, "{log}");
    assert!(!log.contains("could not obtain"), "{log}");
}

#[tokio::test]
async fn a_wrong_tsig_key_is_named_in_the_log() {
    let knot = Knot::start().await;
    let pebble = Pebble::start_with(free_port(), free_port(), None, Some(knot.port)).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();

    // The right name, another secret: Knot answers BADSIG.
    let wrong = secret_file(work.path(), &new_secret());
    let path = acme_toml_for(
        DOMAIN,
        &pebble,
        free_port(),
        upstream.addr,
        &work.path().join("s1"),
        &rfc2136(&knot, &wrong, ""),
    )
    .write_as(work.path().join("badsig.toml"));
    let proxy = RunningBinary::start(&path, "");
    let line = proxy.wait_for_log(&["ACME: could not obtain a certificate"], 30).await;
    assert!(line.contains("refused the update of zone example.com"), "{line}");
    assert!(line.contains("BADSIG") && line.contains("key_secret_file"), "{line}");
    assert!(line.contains("retrying in 2m"), "{line}");
    drop(proxy);

    // A name Knot does not know: BADKEY.
    let right = secret_file(work.path(), &knot.secret);
    let dns = rfc2136(&knot, &right, "").replace(KEY_NAME, "nobody-knows-me");
    let path = acme_toml_for(DOMAIN, &pebble, free_port(), upstream.addr, &work.path().join("s2"), &dns)
        .write_as(work.path().join("badkey.toml"));
    let proxy = RunningBinary::start(&path, "");
    let line = proxy.wait_for_log(&["ACME: could not obtain a certificate"], 30).await;
    assert!(line.contains("BADKEY") && line.contains("key_name"), "{line}");
    drop(proxy);
    assert_eq!(knot.updates(), 0, "nothing reached the zone:\n{}", knot.log());
}

/// A "DNS server" that says yes to everything: a bare NOERROR header for
/// each message, without the TSIG record a real server signs its answer with
/// (what an attacker on the path would send to fake a successful update).
async fn yes_man() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let len = tcp.read_u16().await.unwrap() as usize;
                let mut request = vec![0; len];
                tcp.read_exact(&mut request).await.unwrap();
                // The same ID; QR set, opcode UPDATE (5), NOERROR; no records.
                let mut answer = vec![0, 12, request[0], request[1], 0x80 | (5 << 3), 0];
                answer.extend([0; 8]);
                tcp.write_all(&answer).await.unwrap();
            });
        }
    });
    port
}

#[tokio::test]
async fn an_unsigned_yes_to_an_update_is_not_believed() {
    let fake = yes_man().await;
    let pebble = Pebble::start_with(free_port(), free_port(), None, Some(fake)).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let secret = secret_file(work.path(), &new_secret());
    let dns = format!(
        ", dns = {{ server = \"127.0.0.1:{fake}\", zone = \"example.com\", key_name = \"{KEY_NAME}\", key_secret_file = \"{}\" }}",
        secret.display()
    );
    let path = acme_toml_for(DOMAIN, &pebble, free_port(), upstream.addr, &work.path().join("state"), &dns)
        .write_as(work.path().join("fake.toml"));
    let proxy = RunningBinary::start(&path, "");
    let line = proxy.wait_for_log(&["ACME: could not obtain a certificate"], 30).await;
    assert!(line.contains("not signed with the TSIG key") && line.contains("not trusted"), "{line}");
    let (_, log) = proxy.stop();
    assert!(!log.contains("put in place"), "{log}");
}

#[tokio::test]
async fn the_record_is_awaited_on_the_zones_name_servers_for_a_bounded_time() {
    // No check_servers: the zone's NS (ns.example.com, 127.0.0.1 port 53,
    // where nothing of the test answers) must have the record too.
    let knot = Knot::start().await;
    let pebble = Pebble::start_with(free_port(), free_port(), None, Some(knot.port)).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let secret = secret_file(work.path(), &knot.secret);
    let dns = rfc2136(&knot, &secret, ", propagation_timeout = \"2s\"");
    let path = acme_toml_for(DOMAIN, &pebble, free_port(), upstream.addr, &work.path().join("state"), &dns)
        .write_as(work.path().join("ns.toml"));
    let proxy = RunningBinary::start(&path, "");
    let line = proxy.wait_for_log(&["ACME: waiting up to 2 s for the TXT record"], 30).await;
    assert!(
        line.contains(&format!("127.0.0.1:{}", knot.port)) && line.contains("ns.example.com (127.0.0.1:53)"),
        "{line}"
    );
    let line = proxy.wait_for_log(&["ACME: could not obtain a certificate"], 30).await;
    assert!(line.contains("still not visible after 2 s on ns.example.com (127.0.0.1:53"), "{line}");
    assert!(line.contains("propagation_timeout"), "{line}");
    // Not on the list of what was missing: the server updated has it.
    assert!(!line.contains(&format!("on 127.0.0.1:{}", knot.port)), "{line}");
    // Removed even though the CA was never asked to look.
    proxy.wait_for_log(&["ACME: TXT record", "removed"], 20).await;
    assert_eq!(knot.txt(RECORD).await, Vec::<String>::new());
    let (_, log) = proxy.stop();
    assert!(!pebble.log().contains("POST /chalZ"), "the CA was not told to check:\n{log}");
}

/// The exec hook: lego's `exec` convention, a few lines of shell around knsupdate.
const HOOK: &str = r#"#!/bin/sh
set -eu
action=$1 fqdn=$2 value=$3
case $action in
  present) op=add ;;
  cleanup) op=del ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
echo "$action $fqdn $value" >> "$HOOK_LOG"
printf 'server 127.0.0.1 %s\nzone example.com.\nupdate %s %s 60 TXT "%s"\nsend\n' "$PORT" "$op" "$fqdn" "$value" |
  "$KNSUPDATE" -y "hmac-sha256:$KEY_NAME:$SECRET"
"#;

#[tokio::test]
async fn the_exec_hook_gets_a_wildcard_certificate() {
    let knot = Knot::start().await;
    let pebble = Pebble::start_with(free_port(), free_port(), None, Some(knot.port)).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let hook_log = work.path().join("hook.log");
    let hook = work.path().join("dns-hook");
    let script = HOOK
        .replace("$HOOK_LOG", &hook_log.display().to_string())
        .replace("$PORT", &knot.port.to_string())
        .replace("$KNSUPDATE", &tool(Tool::Knsupdate).display().to_string())
        .replace("$KEY_NAME", KEY_NAME)
        .replace("$SECRET", &knot.secret);
    std::fs::write(&hook, script).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700)).unwrap();
    let tls_port = free_port();
    let dns =
        format!(", dns = {{ hook = \"{}\", check_servers = [\"127.0.0.1:{}\"] }}", hook.display(), knot.port);
    let path =
        acme_toml_for("*.example.com", &pebble, tls_port, upstream.addr, &work.path().join("state"), &dns)
            .write_as(work.path().join("hook.toml"));
    let proxy = RunningBinary::start(&path, "");
    let root = pebble.root().await;

    // DOMAIN (vault.example.com) verifies against the wildcard.
    let cert = issued(tls_port, &root, None, &pebble).await;
    let other = Connector::trusting(root.clone(), ([127, 0, 0, 1], tls_port).into(), "other.example.com");
    assert_eq!(leaf(&other.try_tls(&[b"http/1.1"]).await.unwrap()), cert, "one certificate for every name");
    proxy.wait_for_log(&["ACME: TXT record _acme-challenge.example.com. removed through the hook"], 20).await;
    let calls = std::fs::read_to_string(&hook_log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let value = calls[0].strip_prefix("present _acme-challenge.example.com. ").expect("present FQDN VALUE");
    assert_eq!(value.len(), 43, "the base64url SHA-256 of the key authorization: {value}");
    assert_eq!(calls[1], format!("cleanup _acme-challenge.example.com. {value}"));
    assert_eq!(knot.txt("_acme-challenge.example.com").await, Vec::<String>::new());
    drop(proxy);
}

#[tokio::test]
async fn a_failing_hook_is_quoted_in_the_log() {
    let pebble = Pebble::start_with(free_port(), free_port(), None, Some(free_port())).await;
    let upstream = Upstream::standin().start().await;
    let work = tempfile::tempdir().unwrap();
    let hook = work.path().join("dns-hook");
    std::fs::write(&hook, "#!/bin/sh\necho \"provider API: invalid token for $2\" >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dns = format!(", dns = {{ hook = \"{}\", check_servers = [\"127.0.0.1\"] }}", hook.display());
    let path = acme_toml_for(DOMAIN, &pebble, free_port(), upstream.addr, &work.path().join("state"), &dns)
        .write_as(work.path().join("hook.toml"));
    let proxy = RunningBinary::start(&path, "");
    let line = proxy.wait_for_log(&["ACME: could not obtain a certificate"], 30).await;
    assert!(line.contains("present _acme-challenge.vault.example.com."), "{line}");
    assert!(line.contains("exit status: 3"), "{line}");
    assert!(line.contains("provider API: invalid token for _acme-challenge.vault.example.com."), "{line}");
    drop(proxy);
}

#[tokio::test]
async fn check_finds_what_dns_01_cannot_use() {
    let work = tempfile::tempdir().unwrap();
    let check = |toml: &str| {
        let path = work.path().join("proxy.toml");
        std::fs::write(&path, format!("upstream = \"http://127.0.0.1:8000\"\n[tls]\n{toml}\n")).unwrap();
        let out = std::process::Command::new(RunningBinary::PATH)
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    // A wildcard without DNS-01.
    let (ok, said) = check("acme = { domain = \"*.example.com\" }");
    assert!(
        !ok && said.contains("tls.acme.domain") && said.contains("DNS-01") && said.contains("acme.dns"),
        "{said}"
    );
    // A secret file that is not there, one that is not base64, a hook that cannot run.
    let dns = |d: &str| format!("acme = {{ domain = \"vault.example.com\", dns = {{ {d} }} }}");
    let (ok, said) =
        check(&dns("server = \"127.0.0.1\", key_name = \"k\", key_secret_file = \"missing.secret\""));
    assert!(
        !ok && said.contains("tls.acme.dns.key_secret_file") && said.contains("missing.secret"),
        "{said}"
    );
    std::fs::write(work.path().join("bad.secret"), "key \"k\" { secret \"…\"; };").unwrap();
    let (ok, said) =
        check(&dns("server = \"127.0.0.1\", key_name = \"k\", key_secret_file = \"bad.secret\""));
    assert!(!ok && said.contains("does not hold a base64 secret"), "{said}");
    std::fs::write(work.path().join("hook.sh"), "#!/bin/sh\n").unwrap();
    let (ok, said) = check(&dns("hook = \"hook.sh\""));
    assert!(!ok && said.contains("tls.acme.dns.hook") && said.contains("not an executable file"), "{said}");
    // The server refuses to start on it too.
    std::fs::write(
        work.path().join("start.toml"),
        format!(
            "upstream = \"http://127.0.0.1:8000\"\nlisten = \"127.0.0.1:0\"\n[tls]\n{}\n",
            dns("hook = \"hook.sh\"")
        ),
    )
    .unwrap();
    let start = tokio::process::Command::new(RunningBinary::PATH)
        .arg("--config")
        .arg(work.path().join("start.toml"))
        .kill_on_drop(true)
        .output();
    let out = within("the refused start", start).await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("not an executable file"), "{said}");
    // A secret others can read: a warning with the fix.
    std::fs::write(work.path().join("open.secret"), new_secret()).unwrap();
    std::fs::set_permissions(work.path().join("open.secret"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let (ok, said) =
        check(&dns("server = \"127.0.0.1\", key_name = \"k\", key_secret_file = \"open.secret\""));
    assert!(
        ok && said.contains("warning:") && said.contains("open.secret") && said.contains("chmod 600"),
        "{said}"
    );
    // Fixed, `check` describes it.
    std::fs::set_permissions(work.path().join("hook.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, said) = check(&dns("hook = \"hook.sh\""));
    assert!(ok && said.contains("dns-01 through the hook"), "{said}");
}
