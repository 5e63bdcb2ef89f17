//! Issue #12, "Leaks and panics": what the proxy tells clients, what it
//! writes to its logs, what /healthz costs and says, and what it warns about
//! at start. Raw bytes wherever a client library would tidy them.

use std::time::Duration;

use crate::support::{self, *};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::ext::Protocol;

#[tokio::test]
async fn the_502_page_names_neither_the_upstream_nor_the_os_error() {
    let port = free_port();
    let ca = TestCa::new();
    let (_proxy, addr) = ProxyToml::new()
        .upstream_url(format!("http://127.0.0.1:{port}"))
        .certificate(&ca)
        .start(ca.dir.path())
        .await;
    for request in [
        "GET /alive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_string(),
        // A hub upgrade fails the same way.
        "GET /notifications/hub HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_string(),
    ] {
        let answer = ca.client(addr).first_answer(request.as_bytes()).await;
        assert_eq!(raw_status(&answer), 502, "{answer}");
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert!(body.contains("Vaultwarden is not answering"), "{answer}");
        for leak in ["127.0.0.1", &port.to_string(), "os error", "refused", "Connection refused", "http://"] {
            assert!(!answer.contains(leak), "`{leak}` reached the client:\n{answer}");
        }
    }
}

#[tokio::test]
async fn the_404_for_a_tunnel_elsewhere_does_not_echo_the_protocol_or_path() {
    let h = Harness::start("").await;
    let mut c = h.client().h2_for::<Empty<bytes::Bytes>>().await;
    for (path, protocol) in
        [("/notifications/hub", "<script>alert(1)</script>"), ("/api/\"alert(2)\"", "websocket")]
    {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(h.url(path))
            .header("sec-websocket-version", "13")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        req.extensions_mut().insert(Protocol::from_static(protocol));
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(!body.contains('<') && !body.contains("script") && !body.contains("alert"), "{body}");
        assert!(!body.contains("/api"), "{body}");
    }
}

#[tokio::test]
async fn the_text_access_log_escapes_every_client_field_and_redacts_decoded_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let h = Harness::start(&format!("[log]\naccess = \"{}\"\n", log.display())).await;
    // A `"` in the path and the agent would end their fields early and let
    // the rest pose as status, size and agent; the encoded name is Rocket's
    // `access_token`.
    let answer = raw_exchange(
        &h,
        b"GET /alive?x=%22%20200&access%5Ftoken=s3cr3t&St%61te=st4te&code=c0de HTTP/1.1\r\nHost: localhost\r\n\
          User-Agent: ua\" 999 0 \"-\" \"forged\\\r\nReferer: https://x/?t=s3nd\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.ends_with('\n') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And a `"` in the path itself, which HTTP/2 lets through.
    let mut c = h.h2().await;
    let resp = c.send_request(get(&h.url("/alive\"-\"x\\y?T%6Fken=s3cr3t"))).await;
    drop(resp);
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() == 2 && text.ends_with('\n') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(text.lines().count(), 2, "{text}");
    for secret in ["s3cr3t", "st4te", "c0de", "s3nd"] {
        assert!(!text.contains(secret), "`{secret}` reached the log: {text}");
    }
    // Outside the escaped fields there are exactly the format's own quotes.
    let (mut bare, mut escaped) = (0, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => bare += 1,
            _ => {}
        }
    }
    assert_eq!(bare, 12, "{text}");
    assert!(text.contains(" 200 "), "{text}");
    assert!(text.contains("\"GET /alive\\\"-\\\"x\\\\y?T%6Fken=REDACTED HTTP/2.0\""), "{text}");
    assert!(text.contains("\"ua\\\" 999 0 \\\"-\\\" \\\"forged\\\\\""), "{text}");
}

/// A plain HTTP/1.1 GET on a fresh socket: the whole answer, bytes as sent.
async fn raw_plain_get(addr: std::net::SocketAddr, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    support::client::plain_exchange(addr, "127.0.0.1", req.as_bytes()).await
}

#[tokio::test]
async fn healthz_reuses_one_upstream_connection_and_names_no_address() {
    let counting = Upstream::recording().start().await;
    let upstream = counting.addr;
    let ca = TestCa::new();
    let (proxy, _) = ProxyToml::new()
        .upstream(upstream)
        .extra("[metrics]\nlisten = \"127.0.0.1:0\"")
        .certificate(&ca)
        .start(ca.dir.path())
        .await;
    let metrics = proxy.metrics_addr().unwrap();
    for _ in 0..5 {
        let answer = raw_plain_get(metrics, "/healthz").await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
        for leak in [upstream.to_string(), upstream.port().to_string(), "127.0.0.1".into(), "http://".into()]
        {
            assert!(!answer.contains(&leak), "`{leak}` in /healthz:\n{answer}");
        }
    }
    // Five probes at once wait their turn on the same connection.
    let probes: Vec<_> = (0..5).map(|_| tokio::spawn(raw_plain_get(metrics, "/healthz"))).collect();
    for p in probes {
        assert_eq!(raw_status(&p.await.unwrap()), 200);
    }
    assert_eq!(counting.accepted(), 1, "one kept connection for every /healthz");

    // Down: 503, and still no address or OS error in the body.
    let dead = free_port();
    let ca = TestCa::new();
    let (down, _) = ProxyToml::new()
        .upstream_url(format!("http://127.0.0.1:{dead}"))
        .extra("[metrics]\nlisten = \"127.0.0.1:0\"")
        .certificate(&ca)
        .start(ca.dir.path())
        .await;
    let answer = raw_plain_get(down.metrics_addr().unwrap(), "/healthz").await;
    assert_eq!(raw_status(&answer), 503, "{answer}");
    for leak in [dead.to_string(), "127.0.0.1".into(), "refused".into(), "os error".into()] {
        assert!(!answer.contains(&leak), "`{leak}` in /healthz:\n{answer}");
    }
    proxy.shutdown().await;
    down.shutdown().await;
}
