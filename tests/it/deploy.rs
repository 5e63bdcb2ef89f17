//! examples/deploy/Dockerfile and compose.yaml, checked without a Docker
//! engine (none runs where the tests do): the final stage's instructions are
//! read as Docker parses them, and the HEALTHCHECK command itself is run here
//! against the built binary's /healthz. How the image runs (read-only root,
//! uid 10001, no capabilities, only the state volume writable) is rehearsed
//! with the built binary in `acme::the_image_works_on_a_read_only_root_as_its_own_user`.
//! Not verified: that the image builds (docker build), multi-arch builds.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

fn deploy(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Dockerfile's instructions as (KEYWORD, arguments): comments dropped,
/// `\` continuations joined, as Docker reads them.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let (keyword, args) =
                    current.trim().split_once(char::is_whitespace).unwrap_or((current.trim(), ""));
                out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The final stage: what runs.
fn final_stage() -> Vec<(String, String)> {
    let all = instructions(&deploy("Dockerfile"));
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").expect("a FROM");
    all[last_from..].to_vec()
}

fn one<'a>(stage: &'a [(String, String)], keyword: &str) -> &'a str {
    let found: Vec<_> = stage.iter().filter(|(k, _)| k == keyword).collect();
    assert_eq!(found.len(), 1, "one {keyword} in the final stage: {found:?}");
    &found[0].1
}

/// HEALTHCHECK's options and its exec-form command.
fn healthcheck() -> (String, Vec<String>) {
    let stage = final_stage();
    let args = one(&stage, "HEALTHCHECK");
    let (options, cmd) = args.split_once("CMD").expect("HEALTHCHECK ... CMD");
    let argv: Vec<String> = serde_json::from_str(cmd.trim()).expect("CMD in exec form (a JSON array)");
    (options.trim().to_owned(), argv)
}

#[test]
fn the_image_runs_as_a_user_of_its_own_with_a_state_volume_and_a_healthcheck() {
    let stage = final_stage();
    let user = one(&stage, "USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    let (uid, gid): (u32, u32) = (uid.parse().expect("numeric uid"), gid.parse().expect("numeric gid"));
    assert!(uid != 0 && gid != 0 && uid != 65534, "not root, not nobody: {user}");
    let user_pos = stage.iter().position(|(k, _)| k == "USER").unwrap();
    assert!(stage[user_pos..].iter().all(|(k, _)| k != "RUN"), "nothing runs as root after USER");
    let run =
        stage.iter().filter(|(k, _)| k == "RUN").map(|(_, a)| a.as_str()).collect::<Vec<_>>().join("\n");
    assert!(run.contains(&format!("--uid {uid}")) && run.contains(&format!("--gid {gid}")), "{run}");
    assert!(run.contains("install -d -o vaultgate -g vaultgate -m 0700 /var/lib/vaultgate"), "{run}");

    assert_eq!(one(&stage, "VOLUME"), "/var/lib/vaultgate", "the state dir is a volume (read-only root)");
    let entry: Vec<String> = serde_json::from_str(one(&stage, "ENTRYPOINT")).expect("exec-form ENTRYPOINT");
    assert_eq!(entry, ["/usr/local/bin/vaultgate", "--config", "/etc/vaultgate/proxy.toml"]);
    assert!(stage
        .iter()
        .any(|(k, a)| k == "COPY" && a.ends_with("/src/target/release/vaultgate /usr/local/bin/vaultgate")));
    assert_eq!(one(&stage, "ENV"), "VAULTGATE_HEALTHZ=127.0.0.1:9187");

    let (options, argv) = healthcheck();
    for option in ["--interval=", "--timeout=", "--start-period=", "--retries="] {
        assert!(options.contains(option), "HEALTHCHECK {option}: {options}");
    }
    assert_eq!(argv[..2], ["/bin/bash", "-c"]);
    assert!(argv[2].contains("GET /healthz HTTP/1.1"), "{argv:?}");

    // The context leaves target/ (gigabytes) out.
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"), "{ignore}");

    // compose.yaml runs it read-only, the state on a volume, /healthz configured.
    let compose = deploy("compose.yaml");
    for line in ["read_only: true", "- ./state:/var/lib/vaultgate", "cap_drop: [ALL]"] {
        assert!(compose.lines().any(|l| l.trim() == line), "compose.yaml lacks {line}");
    }
    assert!(
        compose.contains("#   listen = \"127.0.0.1:9187\""),
        "the compose proxy.toml has [metrics] for the healthcheck"
    );
    assert!(compose.contains("chown 10001:10001 state"), "the state dir for the image's user");
}

/// Runs the image's HEALTHCHECK command here, with VAULTGATE_HEALTHZ = `addr`.
async fn health(addr: &str) -> bool {
    let (_, argv) = healthcheck();
    let run = tokio::process::Command::new(&argv[0]).args(&argv[1..]).env("VAULTGATE_HEALTHZ", addr).status();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("within HEALTHCHECK's timeout")
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_is_healthy_only_when_vaultwarden_answers() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let config = binary_toml(upstream.addr).extra("[metrics]\nlisten = \"127.0.0.1:0\"").write(ca.dir.path());
    let proxy = RunningBinary::start(&config, "");
    let line = proxy.startup_log.iter().find(|l| l.contains("health on /healthz")).expect("metrics line");
    let metrics = line.split("listen=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();

    assert!(health(&metrics).await, "healthy with Vaultwarden up");
    upstream.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!health(&metrics).await, "unhealthy with Vaultwarden gone");
    let (exit, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(exit.success(), "{exit}\n{log}");
    assert!(!health(&metrics).await, "unhealthy with nothing listening");
}
