//! The raw-byte guard under hyper's HTTP/1.1 parser (issue #12): it never
//! loses step with hyper, refuses what it cannot follow, cuts overlong header
//! lines (431) and aborts bodies whose framing breaks mid-way. Every attack
//! is sent as raw bytes (also one byte per TLS record), a legitimate client is
//! served on another connection meanwhile, and a raw recording upstream shows
//! what Vaultwarden would have seen.

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    ca: TestCa,
    addr: std::net::SocketAddr,
    /// Records every byte each upstream connection sent, and the requests
    /// whose body it read to the end.
    rec: Upstream,
    _proxy: vaultgate::Server,
}

async fn setup(extra: &str) -> Setup {
    let rec = Upstream::recording().start().await;
    let ca = TestCa::new();
    let (proxy, addr) =
        ProxyToml::new().upstream(rec.addr).extra(extra).certificate(&ca).start(ca.dir.path()).await;
    Setup { ca, addr, rec, _proxy: proxy }
}

impl Setup {
    fn client(&self) -> Connector {
        self.ca.client(self.addr)
    }
}

/// Sends `bytes` (`one_by_one`: each byte in a TLS record of its own) and
/// returns all the proxy answered until it closed; panics if it does not
/// close within 10 s.
async fn attack(s: &Setup, bytes: &[u8], one_by_one: bool) -> String {
    let mut tls = s.client().tls(&[b"http/1.1"]).await;
    if one_by_one {
        for b in bytes {
            if tls.write_all(&[*b]).await.is_err() {
                break;
            }
            let _ = tls.flush().await;
        }
    } else {
        let _ = tls.write_all(bytes).await;
        let _ = tls.flush().await;
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out).into_owned();
    assert!(read.is_ok(), "the connection was left open after {answer:?}");
    answer
}

/// A legitimate request on a connection of its own: 200 from the upstream.
async fn legit(s: &Setup) {
    let mut tls = s.client().tls(&[b"http/1.1"]).await;
    tls.write_all(
        b"POST /legit HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    within("the legitimate client", tls.read_to_end(&mut out)).await.unwrap();
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

/// Runs `bytes` as an attack (whole, then byte by byte) while a legitimate
/// client is served; returns the answers.
async fn attack_while_serving(s: &Setup, bytes: &[u8]) -> Vec<String> {
    let mut answers = Vec::new();
    for one_by_one in [false, true] {
        // The legitimate client connects just after the attacker (see the
        // report on issue #12: at the very same instant it was once not served).
        let later = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            legit(s).await
        };
        let (answer, ()) = tokio::join!(attack(s, bytes, one_by_one), later);
        answers.push(answer);
    }
    answers
}

fn statuses(answer: &str) -> Vec<u16> {
    answer.match_indices("HTTP/1.1 ").filter_map(|(i, _)| answer[i + 9..].get(..3)?.parse().ok()).collect()
}

/// A request hyper parses and the old guard did not look at: bare LF.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\nHost: localhost\n\n";

fn assert_not_smuggled(s: &Setup) {
    let complete = s.rec.complete();
    assert!(!complete.iter().any(|p| p == "/smuggled"), "smuggled through: {complete:?}");
    let raw = s.rec.received_text();
    assert!(!raw.contains("/smuggled"), "the upstream saw {raw:?}");
}

#[tokio::test]
async fn an_upgrade_request_answered_without_101_closes_so_pipelined_requests_never_run() {
    let s = setup("").await;
    for first in [
        &b"GET /api/sync HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"[..],
        b"GET /api/sync HTTP/1.1\r\nHost: localhost\r\nUpgrade: foo\r\n\r\n",
        b"POST /api/x HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabc",
        b"CONNECT localhost:22 HTTP/1.1\r\nHost: localhost:22\r\n\r\n",
    ] {
        let attack = [first, SMUGGLED].concat();
        for answer in attack_while_serving(&s, &attack).await {
            assert_eq!(statuses(&answer).len(), 1, "one answer, then the connection closes: {answer}");
            assert!(answer.to_ascii_lowercase().contains("connection: close\r\n"), "{answer}");
        }
        assert_not_smuggled(&s);
    }
}

#[tokio::test]
async fn a_long_chunk_extension_is_refused_instead_of_switching_the_guard_off() {
    let s = setup("").await;
    let attack = [
        format!(
            "POST /ext HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n",
            "e".repeat(2000)
        )
        .as_bytes(),
        SMUGGLED,
    ]
    .concat();
    for answer in attack_while_serving(&s, &attack).await {
        assert_eq!(statuses(&answer), [400], "{answer}");
    }
    assert_not_smuggled(&s);
    assert!(!s.rec.complete().iter().any(|p| p == "/ext"), "{:?}", s.rec.complete());
}

#[tokio::test]
async fn a_bare_lf_in_a_trailer_cannot_make_the_guard_skip_the_next_request() {
    let s = setup("").await;
    // hyper: trailers `X: a\n`, `Y: z`, `Content-Length: 60`, then the next
    // request. The old guard took `Y: z ...` for a head and skipped 60 bytes.
    let smuggled = [SMUGGLED, &[b'x'; 20][..]].concat();
    assert_eq!(smuggled.len(), 60);
    let attack = [
        &b"POST /trailer HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"1\r\nx\r\n0\r\nX: a\n\r\nY: z\r\nContent-Length: 60\r\n\r\n",
        &smuggled,
    ]
    .concat();
    for answer in attack_while_serving(&s, &attack).await {
        assert_eq!(statuses(&answer), [400], "{answer}");
    }
    assert_not_smuggled(&s);
    assert!(!s.rec.complete().iter().any(|p| p == "/trailer"), "{:?}", s.rec.complete());
}

/// Sends a chunked request's head and first chunk, waits until the upstream
/// has them, then `rest`: returns the answer.
async fn break_mid_body(s: &Setup, path: &str, rest: &[u8]) -> String {
    let mut tls = s.client().tls(&[b"http/1.1"]).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let seen = s.rec.requests();
    let needle = format!("POST {path} ");
    let arrived = || {
        s.rec.connections().iter().any(|c| {
            let log = c.bytes();
            log.ends_with(b"hello\r\n") && String::from_utf8_lossy(&log).contains(&needle)
        })
    };
    until("the head upstream", || s.rec.requests() != seen && arrived()).await;
    // A legitimate client is served while this body is half-way.
    legit(s).await;
    for b in rest {
        let _ = tls.write_all(&[*b]).await;
        let _ = tls.flush().await;
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out).into_owned();
    assert!(read.is_ok(), "{path}: the connection was left open after {answer:?}");
    answer
}

#[tokio::test]
async fn a_framing_error_mid_body_gets_400_and_close_and_the_upstream_never_a_complete_request() {
    let s = setup("").await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/no-crlf", b"5\r\nworldXX0\r\n\r\n".to_vec()),
        ("/overflow", b"ffffffffffffffffff\r\nx\r\n0\r\n\r\n".to_vec()),
        ("/not-hex", b"5x\r\nworld\r\n0\r\n\r\n".to_vec()),
        ("/long-extension", [&b"5;"[..], &[b'e'; 1100], b"\r\nworld\r\n0\r\n\r\n"].concat()),
        ("/bare-lf-trailer", b"0\r\nX: a\n\r\n\r\n".to_vec()),
    ];
    for (path, rest) in &cases {
        let answer = break_mid_body(&s, path, &[&rest[..], SMUGGLED].concat()).await;
        assert_eq!(statuses(&answer), [400], "{path}: {answer}");
        assert!(answer.contains("connection: close\r\n"), "{path}: {answer}");
        // The upstream got the head and the first chunk, and then its
        // connection was cut: never the last chunk.
        let complete = s.rec.complete();
        assert!(!complete.iter().any(|p| p == path), "{path} completed upstream: {complete:?}");
        let needle = format!("POST {path} ");
        let conn = s.rec.connections().into_iter().find(|c| c.text().contains(&needle));
        let conn = conn.expect("the head went upstream");
        until("the upstream connection to be cut", || conn.ended()).await;
        let text = conn.text();
        let after = &text[text.find(&needle).unwrap()..];
        assert!(!after.contains("\r\n0\r\n\r\n"), "{path}: the upstream saw a terminated body: {after:?}");
        assert_not_smuggled(&s);
    }
}

#[tokio::test]
async fn a_header_line_over_the_limit_is_431_and_never_forwarded() {
    let s = setup("").await;
    let long = |name: &str, len: usize| {
        format!("GET /long HTTP/1.1\r\nHost: localhost\r\n{name}: {}\r\n\r\n", "v".repeat(len)).into_bytes()
    };
    // 8 KiB is the default: a line of exactly 8192 bytes passes.
    let fine = [
        long("X-Fine", 8192 - 8),
        b"GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
    ]
    .concat();
    let (answer, ()) = tokio::join!(attack(&s, &fine, false), legit(&s));
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
    let before = s.rec.requests();
    // One byte over, a 64 KiB token, a long Cookie line.
    for bytes in [long("X-Token", 8192 - 8), long("Authorization", 64 * 1024), long("Cookie", 9000)] {
        let bytes = [&bytes[..], SMUGGLED].concat();
        for answer in attack_while_serving(&s, &bytes).await {
            assert_eq!(statuses(&answer), [431], "{answer}");
        }
    }
    // Only the legitimate requests reached the upstream.
    assert_eq!(s.rec.requests() - before, 6);
    assert_not_smuggled(&s);
}

#[tokio::test]
async fn the_header_line_limit_is_configurable_and_applies_to_http2_fields() {
    let s = setup("[limits]\nmax_header_line = \"1KiB\"\n").await;
    let answer = attack(
        &s,
        format!("GET / HTTP/1.1\r\nHost: localhost\r\nX: {}\r\n\r\n", "v".repeat(1100)).as_bytes(),
        false,
    )
    .await;
    assert_eq!(statuses(&answer), [431], "{answer}");
    // HTTP/2: name + value, after HPACK decoding.
    let mut h2 = s.client().h2().await;
    let url = format!("https://localhost:{}/h2-long", s.addr.port());
    let req = |value: String| {
        http::Request::get(&url).header("x-long", value).body(Full::<Bytes>::default()).unwrap()
    };
    let before = s.rec.requests();
    let resp = h2.send_request(req("v".repeat(1100))).await.unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(s.rec.requests(), before, "never forwarded");
    let resp = h2.send_request(req("v".repeat(1000))).await.unwrap();
    assert_eq!(resp.status(), 200, "and the connection serves on");
    // Cookie crumbs count one by one; joined they may pass the limit.
    let mut cookies = http::Request::get(&url);
    for i in 0..20 {
        cookies = cookies.header("cookie", format!("c{i}={}", "v".repeat(500)));
    }
    let resp = h2.send_request(cookies.body(Full::<Bytes>::default()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = h2
        .send_request(
            http::Request::get(&url)
                .header("cookie", format!("c={}", "v".repeat(1100)))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    legit(&s).await;
}
