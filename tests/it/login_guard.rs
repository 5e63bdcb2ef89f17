//! `[login_guard]` against the real Vaultwarden (1.37.2): failed logins
//! as Vaultwarden answers them ban the address that made them, before the
//! next attempt reaches Vaultwarden; two-factor logins are never counted
//! for the step that asks for the second factor; wrong admin tokens ban;
//! bans survive a restart and `vaultgate unban` lifts one; allowed networks
//! are never banned; behind a trusted proxy the client is banned, not the
//! proxy, and a forged X-Forwarded-For changes nothing.
//!
//! Clients connect from different loopback addresses (127.0.0.x) to be
//! different clients.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncWriteExt;

use crate::support::logs::LogCapture;
use crate::support::vaultwarden::{Stack, CLIENT_IP_DEFAULTS};
use crate::support::*;

/// Vaultwarden's own hashing made cheaper (its minimum), so that the many
/// logins here do not take minutes; the answers are the same.
const FAST_HASH: (&str, &str) = ("PASSWORD_ITERATIONS", "100000");
const ADMIN_TOKEN: &str = "admin-token-for-the-login-guard-test";

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {} {}", self.status, self.body))
    }
}

/// One request on a fresh connection from `from` (a loopback address).
async fn send(
    s: &Stack,
    from: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Answer {
    let mut h1 = s.client().from(from).h1().await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("localhost:{}", s.addr.port()))
        .header("device-type", "9");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let what = format!("{method} {path} from {from}");
    let resp = within(&what, h1.send_request(req.body(Full::new(Bytes::from(body))).unwrap())).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = within(&what, body.collect()).await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace('@', "%40")
                    .replace(' ', "%20")
                    .replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// An account, registered the way the clients do (the server checks none
/// of the client-side crypto: these strings stand in for it).
struct Account {
    email: String,
    /// What clients send as the password: the master password hash.
    hash: String,
}

async fn register(s: &Stack, tag: &str) -> Account {
    let email = format!("{tag}@example.com");
    let hash = format!("hash-of-the-master-password-of-{tag}");
    let body = serde_json::json!({
        "email": email,
        "name": tag,
        "masterPasswordHash": hash,
        "masterPasswordHint": null,
        "key": "2.AAAAAAAAAAAAAAAAAAAAAA==|AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=|AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "kdf": 0,
        "kdfIterations": 600000,
        "keys": { "publicKey": "AAAA", "encryptedPrivateKey": "2.AAAA|AAAA|AAAA" },
    });
    let a = send(s, "127.0.0.1", "POST", "/identity/accounts/register", &[JSON], body.to_string()).await;
    assert_eq!(a.status, 200, "register: {}", a.body);
    Account { email, hash }
}

const DEVICE: &str = "6f1b7a52-1c1e-4f0e-9a7e-2b8f43e3c001";

/// The password grant from `from`, with `extra` form fields (the second factor).
async fn login(s: &Stack, from: &str, user: &str, password: &str, extra: &[(&str, &str)]) -> Answer {
    login_at(s, "/identity/connect/token", from, user, password, extra).await
}

/// The same, sent to `path` (another spelling of the token endpoint).
async fn login_at(
    s: &Stack,
    path: &str,
    from: &str,
    user: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> Answer {
    let mut pairs = vec![
        ("grant_type", "password"),
        ("username", user),
        ("password", password),
        ("scope", "api offline_access"),
        ("client_id", "web"),
        ("deviceType", "9"),
        ("deviceIdentifier", DEVICE),
        ("deviceName", "chrome"),
    ];
    pairs.extend_from_slice(extra);
    send(s, from, "POST", path, &[FORM], form(&pairs)).await
}

async fn login_via(s: &Stack, from: &str, xff: &str, user: &Account, password: &str) -> Answer {
    let pairs = [
        ("grant_type", "password"),
        ("username", user.email.as_str()),
        ("password", password),
        ("scope", "api offline_access"),
        ("client_id", "web"),
        ("deviceType", "9"),
        ("deviceIdentifier", DEVICE),
        ("deviceName", "chrome"),
    ];
    send(s, from, "POST", "/identity/connect/token", &[FORM, ("x-forwarded-for", xff)], form(&pairs)).await
}

fn metric(s: &Stack, name: &str) -> u64 {
    let text = s.proxy().metrics().render();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Asserts that `a` is the guard's refusal, for about an hour.
fn assert_banned(a: &Answer, what: &str) {
    // The start of the body is enough to tell (and keeps tokens out of the output).
    let start: String = a.body.chars().take(160).collect();
    assert_eq!(a.status, 429, "{what}: {start}");
    assert!(a.body.contains("too many failed logins from your address"), "{what}: {}", a.body);
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "{what}: Retry-After {retry}");
}

#[test]
fn ten_wrong_passwords_ban_the_address_before_the_right_one_reaches_vaultwarden() {
    let log = LogCapture::new();
    log.clone().run(async move {
        let s = Stack::start_with("[limits]\nworkers = 1\n", CLIENT_IP_DEFAULTS, &[FAST_HASH]).await;
        let victim = register(&s, "victim").await;

        // The guesser's own hub, open from before the guessing.
        let ok = login(&s, "127.0.0.2", &victim.email, &victim.hash, &[]).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        let token = ok.json()["access_token"].as_str().unwrap().to_string();
        let mut hub =
            s.client().from("127.0.0.2").ws(&format!("/notifications/hub?access_token={token}")).await;
        use futures_util::{SinkExt, StreamExt};
        hub.send(tokio_tungstenite::tungstenite::Message::text(
            "{\"protocol\":\"json\",\"version\":1}\u{1e}",
        ))
        .await
        .unwrap();

        for i in 1..=10 {
            // Vaultwarden's router drops empty path segments: each of these
            // spellings is its token endpoint, and each must count.
            let path =
                ["/identity/connect/token", "/identity/connect/token/", "//identity//connect/token"][i % 3];
            let a = login_at(&s, path, "127.0.0.2", &victim.email, "a-wrong-password-hash", &[]).await;
            assert_eq!(a.status, 400, "attempt {i} at {path}: {}", a.body);
            // The shape read from Vaultwarden's source (login_guard/judge.rs).
            let j = a.json();
            assert_eq!(j["message"], "Username or password is incorrect. Try again", "{}", a.body);
            assert_eq!(j["error"], "", "a wrong password is not `invalid_grant`: {}", a.body);
        }
        let eleventh = login(&s, "127.0.0.2", &victim.email, &victim.hash, &[]).await;
        assert_banned(&eleventh, "the right password after ten wrong ones");

        // Vaultwarden saw the ten failures and never the eleventh.
        let vw = s.log();
        assert_eq!(
            vw.matches("Username or password is incorrect. Try again. IP: 127.0.0.2.").count(),
            10,
            "{vw}"
        );
        assert_eq!(vw.matches("logged in successfully. IP: 127.0.0.2").count(), 1, "only the first:\n{vw}");

        // Meanwhile another address logs in as usual.
        let other = login(&s, "127.0.0.3", &victim.email, &victim.hash, &[]).await;
        assert_eq!(other.status, 200, "{}", other.body);

        // The guesser's hub was closed.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match hub.next().await {
                    None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => {
                        return
                    }
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the banned address's hub is still open");

        assert_eq!(metric(&s, "vaultgate_login_failures_total"), 10);
        assert_eq!(metric(&s, "vaultgate_bans_total"), 1);
        assert_eq!(metric(&s, "vaultgate_bans_active"), 1);
    });
    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.contains("ban 127.0.0.2 after"))
        .unwrap_or_else(|| panic!("no ban line:\n{text}"));
    assert!(
        line.contains("vaultgate::login_guard: ban 127.0.0.2 after 10 failed logins in ")
            && line.ends_with(" for 1h"),
        "{line}"
    );
}

/// RFC 6238 with Vaultwarden's parameters: SHA-1, 30 s steps, 6 digits.
fn totp(secret: &str, step: u64) -> String {
    let key = base32(secret);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let tag = ring::hmac::sign(&key, &step.to_be_bytes());
    let h = tag.as_ref();
    let at = usize::from(h[19] & 0xf);
    let n = u32::from_be_bytes([h[at] & 0x7f, h[at + 1], h[at + 2], h[at + 3]]);
    format!("{:06}", n % 1_000_000)
}

fn base32(s: &str) -> Vec<u8> {
    let (mut out, mut bits, mut acc) = (Vec::new(), 0u32, 0u64);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn step_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_two_factor_logins_never_ban_and_ten_wrong_totp_codes_do() {
    let s = Stack::start_with("", CLIENT_IP_DEFAULTS, &[FAST_HASH]).await;
    let user = register(&s, "totp").await;
    let first = login(&s, "127.0.0.1", &user.email, &user.hash, &[]).await;
    let token = first.json()["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let auth = ("authorization", bearer.as_str());
    let pw = serde_json::json!({ "masterPasswordHash": user.hash }).to_string();
    let key = send(&s, "127.0.0.1", "POST", "/api/two-factor/get-authenticator", &[JSON, auth], pw).await;
    let secret = key.json()["key"].as_str().unwrap().to_string();
    // Enabled with the previous step's code (Vaultwarden allows one step
    // of drift), so that the current step's is still unused for the login.
    let mut enabled = false;
    for _ in 0..3 {
        let body = serde_json::json!({ "key": secret, "token": totp(&secret, step_now() - 1), "masterPasswordHash": user.hash });
        let a =
            send(&s, "127.0.0.1", "POST", "/api/two-factor/authenticator", &[JSON, auth], body.to_string())
                .await;
        if a.status == 200 {
            enabled = true;
            break;
        }
    }
    assert!(enabled, "TOTP could not be enabled");

    let mut remember = String::new();
    for i in 1..=20 {
        // Every login first: the password alone, answered "two factor required".
        let asked = login(&s, "127.0.0.2", &user.email, &user.hash, &[]).await;
        assert_eq!(asked.status, 400, "login {i}: {}", asked.body);
        assert_eq!(asked.json()["TwoFactorProviders"][0], "0", "login {i}: {}", asked.body);
        // Then the second factor: the TOTP code once, after that the
        // remembered device's token, as the clients send it.
        let done = if i == 1 {
            let code = totp(&secret, step_now());
            let a = login(
                &s,
                "127.0.0.2",
                &user.email,
                &user.hash,
                &[("twoFactorToken", &code), ("twoFactorProvider", "0"), ("twoFactorRemember", "1")],
            )
            .await;
            if a.status == 200 {
                remember = a.json()["TwoFactorToken"].as_str().unwrap().to_string();
            }
            a
        } else {
            login(
                &s,
                "127.0.0.2",
                &user.email,
                &user.hash,
                &[("twoFactorToken", &remember), ("twoFactorProvider", "5"), ("twoFactorRemember", "0")],
            )
            .await
        };
        assert_eq!(done.status, 200, "login {i}: {}", done.body);
    }
    assert_eq!(
        metric(&s, "vaultgate_login_failures_total"),
        0,
        "a request for the second factor is no failure"
    );
    assert_eq!(metric(&s, "vaultgate_bans_total"), 0);

    // A wrong code: not any of the codes of the steps Vaultwarden accepts.
    let now = step_now();
    let valid: Vec<String> = (now - 2..=now + 2).map(|t| totp(&secret, t)).collect();
    let wrong = (0..)
        .map(|n| format!("{:06}", (123_456 + n * 7919) % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap();
    for i in 1..=10 {
        let a = login(
            &s,
            "127.0.0.2",
            &user.email,
            &user.hash,
            &[("twoFactorToken", &wrong), ("twoFactorProvider", "0")],
        )
        .await;
        assert_eq!(a.status, 400, "wrong code {i}: {}", a.body);
        assert!(a.json()["message"].as_str().unwrap().starts_with("Invalid TOTP code!"), "{}", a.body);
    }
    let code = totp(&secret, step_now() + 1);
    let eleventh = login(
        &s,
        "127.0.0.2",
        &user.email,
        &user.hash,
        &[("twoFactorToken", &code), ("twoFactorProvider", "0")],
    )
    .await;
    assert_banned(&eleventh, "after ten wrong TOTP codes");
    assert_eq!(metric(&s, "vaultgate_login_failures_total"), 10);
}

async fn admin_login(s: &Stack, from: &str, token: &str) -> Answer {
    send(s, from, "POST", "/admin", &[FORM], form(&[("token", token)])).await
}

async fn vaultgate(args: &[&str], config: &std::path::Path) -> (bool, String, String) {
    let out = tokio::process::Command::new(RunningBinary::PATH)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_tokens_ban_the_ban_survives_a_restart_and_unban_lifts_it() {
    let extra = "[login_guard]\nstate_file = \"state/login_guard.json\"\n";
    // Vaultwarden's own admin rate limit (3 tries in 5 minutes by default)
    // widened, so that it is the guard that stops the guessing.
    let vw_env = [
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("ADMIN_RATELIMIT_MAX_BURST", "100"),
        ("ADMIN_RATELIMIT_SECONDS", "1"),
    ];
    let mut s = Stack::start_with(extra, CLIENT_IP_DEFAULTS, &vw_env).await;
    let config = s.config_path();
    for i in 1..=10 {
        let a = admin_login(&s, "127.0.0.4", "not-the-admin-token").await;
        assert_eq!(a.status, 401, "attempt {i}: {}", a.body);
    }
    assert_banned(&admin_login(&s, "127.0.0.4", ADMIN_TOKEN).await, "the right token after ten wrong ones");
    assert_eq!(admin_login(&s, "127.0.0.5", ADMIN_TOKEN).await.status, 200, "another address gets in");

    s.restart_proxy().await;
    assert_banned(&admin_login(&s, "127.0.0.4", ADMIN_TOKEN).await, "after a restart");
    let (ok, said, err) = vaultgate(&["check"], &config).await;
    assert!(ok, "{err}");
    assert!(said.contains("login guard: 10 failed logins within 10m ban an address for 1h (doubling up to 7d); bans kept in ") && said.contains("login_guard.json (1 in force)"), "{said}");
    let (ok, listed, err) = vaultgate(&["bans"], &config).await;
    assert!(ok, "{err}");
    assert!(listed.lines().any(|l| l.starts_with("127.0.0.4 ")), "{listed}");

    let (ok, out, err) = vaultgate(&["unban", "127.0.0.4"], &config).await;
    assert!(ok && out.contains("unbanned 127.0.0.4"), "{out}{err}");
    let a = admin_login(&s, "127.0.0.4", ADMIN_TOKEN).await;
    assert_eq!(a.status, 200, "unbanned: {}", a.body);
    until("the state file to lose the ban", || {
        std::fs::read_to_string(s.ca.dir.path().join("state/login_guard.json"))
            .is_ok_and(|t| !t.contains("127.0.0.4"))
    })
    .await;
    let (_, listed, _) = vaultgate(&["bans"], &config).await;
    assert!(listed.starts_with("no bans in force"), "{listed}");
    let (ok, _, err) = vaultgate(&["unban", "127.0.0.4"], &config).await;
    assert!(!ok && err.contains("127.0.0.4 is not banned"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_networks_are_never_banned_and_behind_a_trusted_proxy_the_client_is() {
    let client_ip = "[client_ip]\ntrusted_proxies = [\"127.0.0.6\"]\nheader = \"X-Forwarded-For\"\n";
    let s = Stack::start_with("[login_guard]\nallow = [\"127.0.0.5/32\"]\n", client_ip, &[FAST_HASH]).await;
    let user = register(&s, "lan").await;

    for i in 1..=15 {
        let a = login(&s, "127.0.0.5", &user.email, "wrong", &[]).await;
        assert_eq!(a.status, 400, "allowed, attempt {i}: {}", a.body);
    }
    assert_eq!(login(&s, "127.0.0.5", &user.email, &user.hash, &[]).await.status, 200);

    // Through the trusted proxy: the client it names is banned.
    for _ in 0..10 {
        assert_eq!(login_via(&s, "127.0.0.6", "198.51.100.7", &user, "wrong").await.status, 400);
    }
    assert_banned(
        &login_via(&s, "127.0.0.6", "198.51.100.7", &user, &user.hash).await,
        "the proxied guesser",
    );
    let other = login_via(&s, "127.0.0.6", "198.51.100.8", &user, &user.hash).await;
    assert_eq!(other.status, 200, "the proxy's other clients are served: {}", other.body);

    // Not through the trusted proxy, X-Forwarded-For is the client's own
    // words: it neither bans the address it names nor saves the sender.
    for _ in 0..10 {
        assert_eq!(login_via(&s, "127.0.0.7", "198.51.100.9", &user, "wrong").await.status, 400);
    }
    assert_banned(&login_via(&s, "127.0.0.7", "198.51.100.10", &user, &user.hash).await, "a forged header");
    let named = login_via(&s, "127.0.0.6", "198.51.100.9", &user, &user.hash).await;
    assert_eq!(named.status, 200, "the address a forger named is not banned: {}", named.body);
}

/// A stand-in for the token endpoint: each request's `x-shape` header says
/// how it answers 400. `small`: Vaultwarden's refusal; `huge`: 1 MiB with a
/// Content-Length; `endless`: chunked, 32 KiB at once and then more every
/// 50 ms for as long as the proxy reads.
async fn token_standin() -> Upstream {
    Upstream::script(|mut conn| async move {
        loop {
            let head = conn.read_head().await;
            if head.is_empty() {
                return;
            }
            let out: Vec<u8> = if head.contains("x-shape: small") {
                let body = r#"{"message":"Username or password is incorrect. Try again","error":"","object":"error"}"#;
                format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
            } else if head.contains("x-shape: huge") {
                let body = format!("{{\"message\":\"{}\"}}", "a".repeat(1 << 20));
                format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
            } else {
                let mut out = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                let first = format!("{{\"message\":\"{}", "b".repeat(32 * 1024));
                out.extend_from_slice(format!("{:x}\r\n{first}\r\n", first.len()).as_bytes());
                if conn.write_all(&out).await.is_err() {
                    return;
                }
                while conn.write_all(b"1\r\nc\r\n").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return;
            };
            if conn.write_all(&out).await.is_err() {
                return;
            }
        }
    })
    .start()
    .await
}

async fn token_request(h: &Harness, from: &str, shape: &str) -> (u16, hyper::body::Incoming) {
    let mut h1 = h.client().from(from).h1().await;
    let req = Request::post("/identity/connect/token")
        .header("host", "localhost")
        .header("x-shape", shape)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within("the answer's head", h1.send_request(req)).await.unwrap();
    (resp.status().as_u16(), resp.into_body())
}

fn harness_metric(h: &Harness, name: &str) -> u64 {
    let text = h.proxy().metrics().render();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_bounded_prefix_of_a_login_answer_is_read_longer_ones_stream_unjudged_and_bans_outlive_a_reload(
) {
    let h = Harness::in_front_of(
        token_standin().await,
        ProxyToml::new().extra("[login_guard]\nmax_failures = 3\n"),
    )
    .await;

    // A refusal as small as Vaultwarden's is judged (and counted).
    let (status, body) = token_request(&h, "127.0.0.2", "small").await;
    assert_eq!(status, 400);
    body.collect().await.unwrap();
    assert_eq!(harness_metric(&h, "vaultgate_login_failures_total"), 1);

    // 1 MiB: passed on whole, not judged.
    let (status, body) = token_request(&h, "127.0.0.2", "huge").await;
    assert_eq!(status, 400);
    assert_eq!(body.collect().await.unwrap().to_bytes().len(), (1 << 20) + 14);
    // Never-ending: its first bytes reach the client while it goes on.
    let (status, mut body) = token_request(&h, "127.0.0.2", "endless").await;
    assert_eq!(status, 400);
    let mut got = 0;
    while got < 32 * 1024 + 100 {
        let frame = within("the endless answer's bytes", body.frame()).await.unwrap().unwrap();
        got += frame.data_ref().map_or(0, |d| d.len());
    }
    drop(body);
    assert_eq!(harness_metric(&h, "vaultgate_login_failures_total"), 1, "longer answers are not judged");

    // Two more refusals ban; then hammering costs Vaultwarden nothing.
    for _ in 0..2 {
        let (_, body) = token_request(&h, "127.0.0.2", "small").await;
        body.collect().await.unwrap();
    }
    let seen = h.upstream.heads().len();
    for _ in 0..50 {
        let (status, body) = token_request(&h, "127.0.0.2", "small").await;
        assert_eq!(status, 429);
        body.collect().await.unwrap();
    }
    assert_eq!(h.upstream.heads().len(), seen, "nothing of a banned address's requests reached the upstream");
    let (status, _) = token_request(&h, "127.0.0.3", "small").await;
    assert_eq!(status, 400, "another address is served");

    // A reload (new settings, even) keeps the bans and the counts.
    let config = ProxyToml::new()
        .listen(h.addr)
        .upstream(h.upstream.addr)
        .extra("[login_guard]\nmax_failures = 2\n")
        .certificate(&h.ca)
        .load(h.ca.dir.path());
    h.proxy().reload(config).unwrap();
    let (status, _) = token_request(&h, "127.0.0.2", "small").await;
    assert_eq!(status, 429, "still banned after the reload");
    let (status, _) = token_request(&h, "127.0.0.3", "small").await;
    assert_eq!(status, 400);
    let (status, _) = token_request(&h, "127.0.0.3", "small").await;
    assert_eq!(status, 429, "the failure counted before the reload and the one after: two, the new maximum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_failures_count_and_the_ban_holds_on_every_stream() {
    let h = Harness::in_front_of(
        token_standin().await,
        ProxyToml::new().extra("[login_guard]\nmax_failures = 3\n"),
    )
    .await;
    let mut h2 = h.client().from("127.0.0.4").h2().await;
    let url = h.url("/identity/connect/token");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let req =
            Request::post(url.as_str()).header("x-shape", "small").body(Full::new(Bytes::new())).unwrap();
        let resp = within("an HTTP/2 answer", h2.send_request(req)).await.unwrap();
        statuses.push(resp.status().as_u16());
        resp.into_body().collect().await.unwrap();
    }
    assert_eq!(
        statuses,
        [400, 400, 400, 429, 429],
        "one connection, many streams: each judged, then refused"
    );
    let mut other = h.client().from("127.0.0.5").h2().await;
    let req = Request::post(url.as_str()).header("x-shape", "small").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(within("another client", other.send_request(req)).await.unwrap().status(), 400);
}

#[test]
fn parallel_guesses_reach_vaultwarden_no_more_often_than_the_ban_allows() {
    // Logged into a capture of its own, as the other ban tests are: its ban
    // line must not land on a thread that logs nowhere while theirs are
    // being captured.
    LogCapture::new().run(parallel_guesses());
}

async fn parallel_guesses() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // Every login that reaches the stand-in is counted and held unanswered
    // until the test opens the gate.
    let arrived = Arc::new(AtomicUsize::new(0));
    let (open, gate) = tokio::sync::watch::channel(false);
    let (seen, gate_seen) = (arrived.clone(), gate.clone());
    let upstream = Upstream::script(move |mut conn| {
        let (arrived, mut gate) = (seen.clone(), gate_seen.clone());
        async move {
            loop {
                let head = conn.read_head().await;
                if head.is_empty() {
                    return;
                }
                if !head.starts_with("POST /identity/connect/token ") {
                    // Anything else (the harness's own checks) is answered at once.
                    if conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.is_err() {
                        return;
                    }
                    continue;
                }
                arrived.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                let body = r#"{"message":"Username or password is incorrect. Try again","error":"","object":"error"}"#;
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if conn.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .start()
    .await;
    drop(gate);
    let h = Harness::in_front_of(
        upstream,
        ProxyToml::new().extra("[limits]\nworkers = 1\n[login_guard]\nmax_failures = 3\n"),
    )
    .await;
    let h2 = h.client().from("127.0.0.8").h2().await;
    let url = h.url("/identity/connect/token");
    // Twenty guesses at once on one connection's streams.
    let guesses: Vec<_> = (0..20)
        .map(|_| {
            let mut h2 = h2.clone();
            let req = Request::post(url.as_str()).body(Full::new(Bytes::new())).unwrap();
            tokio::spawn(async move {
                let resp = h2.send_request(req).await.unwrap();
                let status = resp.status().as_u16();
                resp.into_body().collect().await.unwrap();
                status
            })
        })
        .collect();
    // All but the three the ban leaves room for are told to wait, while
    // those three are still unanswered.
    let mut guesses: futures_util::stream::FuturesUnordered<_> = guesses.into_iter().collect();
    let mut statuses = Vec::new();
    within("17 answers while three guesses are held", async {
        use futures_util::StreamExt;
        while statuses.len() < 17 {
            statuses.push(guesses.next().await.unwrap().unwrap());
        }
    })
    .await;
    assert!(statuses.iter().all(|s| *s == 429), "{statuses:?}");
    // The three let through may still be on their way to the stand-in.
    until("the three guesses let through to arrive", || arrived.load(Ordering::SeqCst) >= 3).await;
    assert_eq!(arrived.load(Ordering::SeqCst), 3, "no more guesses reached Vaultwarden than the ban allows");
    open.send(true).unwrap();
    assert_eq!(harness_metric(&h, "vaultgate_bans_total"), 0, "no answer yet, no ban yet");
    within("the three held answers, then the ban", async {
        use futures_util::StreamExt;
        while let Some(status) = guesses.next().await {
            assert_eq!(status.unwrap(), 400, "a held guess gets Vaultwarden's answer");
        }
    })
    .await;
    assert_eq!(harness_metric(&h, "vaultgate_bans_total"), 1);
    let req = Request::post(url.as_str()).body(Full::new(Bytes::new())).unwrap();
    let mut h2 = h2.clone();
    assert_eq!(within("after the ban", h2.send_request(req)).await.unwrap().status(), 429);
    assert_eq!(arrived.load(Ordering::SeqCst), 3);
}
