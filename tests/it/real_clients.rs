//! The clients people actually run, through vaultgate: the `@microsoft/signalr`
//! client the Bitwarden apps use (Node), and headless Chromium — over HTTP/2,
//! where the hub rides the page's own connection (RFC 8441), and over HTTP/1.1.
//!
//! Needs Node.js/npm (the npm packages are installed on first use) and
//! Debian's `chromium` (`.ci/run` installs them; without them the tests fail).

use std::process::Stdio;
use std::time::Duration;

use crate::support::logs::LogCapture;
use crate::support::tools::ONE_BROWSER;
use crate::support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

async fn node(script: &str, h: &Harness, env: &[(&str, &str)]) -> tokio::process::Child {
    let url = format!("https://localhost:{}", h.addr.port());
    node_script(script, &url, &h.ca.ca_path, env, Stdio::inherit())
}

/// Runs a script to the end; returns its stdout, asserting it succeeded.
async fn run_to_end(child: tokio::process::Child) -> String {
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the client finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "client failed:\n{stdout}");
    stdout
}

async fn signalr(token_mode: &str) {
    let _one = ONE_BROWSER.lock().await;
    let h = Harness::start("").await;
    let out = run_to_end(node("signalr_client.mjs", &h, &[("VG_TOKEN_MODE", token_mode)]).await).await;
    assert!(out.contains("connected Connected"), "{out}");
    assert!(out.contains("still connected after 4 s"), "pings kept the hub alive: {out}");
    assert!(out.contains("notification type 1 id 2b3e5ba1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalr_client_with_token_in_query_as_browsers_send_it() {
    signalr("query").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalr_client_with_bearer_header_as_node_sends_it() {
    signalr("header").await;
}

/// The distinct client connections (peer addresses) that carried requests,
/// and how many access lines there were.
fn connections_used(log: &LogCapture) -> (Vec<String>, usize) {
    let log = log.text();
    let access: Vec<&str> = log.lines().filter(|l| l.contains("vaultgate::access")).collect();
    let mut peers: Vec<String> = access
        .iter()
        .filter_map(|l| l.split("conn{peer=").nth(1)?.split_whitespace().next().map(str::to_string))
        .collect();
    peers.sort();
    peers.dedup();
    (peers, access.len())
}

/// Established server-side TCP connections on `port` (this process is the
/// proxy), for failure messages: Chromium may also hold a spare, unused one.
fn established_on(port: u16) -> usize {
    tcp_sockets(End::Local, port, "01")
}

/// Drives Chromium through the hub page; returns its stdout, the client
/// connections that carried the page, its fetches and the hub (from the access
/// log, read while the hub was still open), and the established TCP count.
async fn browser(h: &Harness, log: &LogCapture, http1: bool) -> (String, Vec<String>, usize) {
    let spki = h.ca.leaf_spki_sha256.clone();
    let chromium = tool(Tool::Chromium).display().to_string();
    let mut child = node(
        "browser.mjs",
        h,
        &[("VG_SPKI", &spki), ("VG_HTTP1", if http1 { "1" } else { "0" }), ("VG_CHROMIUM", &chromium)],
    )
    .await;
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let ready = script_ready(&mut lines, &mut out).await;
    assert!(ready, "the page did not get its notification:\n{out}");
    let (peers, lines_logged) = connections_used(log);
    assert!(lines_logged >= 3, "page, favicon or fetch, and hub were logged: {lines_logged}");
    let established = established_on(h.addr.port());
    stdin.write_all(b"done\n").await.unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        out.push_str(&line);
        out.push('\n');
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{out}");
    (out, peers, established)
}

/// The hub opened, shook hands and echoed a ping, in that order; then the
/// REST call and its pushed notification both arrived, in either order (on
/// one HTTP/2 connection the notification may overtake the REST response).
fn assert_hub_events(out: &str) {
    let events = out
        .lines()
        .find_map(|l| l.strip_prefix("events "))
        .unwrap_or_else(|| panic!("no events line:\n{out}"));
    let (head, tail) = (
        "[\"open\",\"handshake\",\"ping-echo\",",
        ["\"rest 200\",\"notification\"]", "\"notification\",\"rest 200\"]"],
    );
    assert!(events.strip_prefix(head).is_some_and(|t| tail.contains(&t)), "{out}");
}

/// The proxy's log lines of this test alone: the access log says which
/// client connection (`conn{peer=…}`) carried each request and each hub.
/// One worker, so that all of the proxy runs on the capturing runtime.
const CAPTURED: &str = "[limits]\nworkers = 1";

#[test]
fn chromium_opens_the_hub_on_its_one_http2_connection() {
    let log = LogCapture::new();
    log.run(async {
        let _one = ONE_BROWSER.lock().await;
        let h = Harness::start(CAPTURED).await;
        let (out, peers, established) = browser(&h, &log, false).await;
        assert!(out.contains("protocol h2"), "the page came over HTTP/2:\n{out}");
        assert_hub_events(&out);
        assert_eq!(
            peers.len(),
            1,
            "page, fetches and hub WebSocket on one TCP connection: {peers:?} ({established} established)\n{out}"
        );
    })
}

#[test]
fn chromium_forced_to_http1_still_works() {
    let log = LogCapture::new();
    log.run(async {
        let _one = ONE_BROWSER.lock().await;
        let h = Harness::start(CAPTURED).await;
        let (out, peers, _) = browser(&h, &log, true).await;
        assert!(out.contains("protocol http/1.1"), "{out}");
        assert_hub_events(&out);
        assert!(peers.len() >= 2, "on HTTP/1.1 the hub needs a connection of its own: {peers:?}");
    })
}
