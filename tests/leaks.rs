//! Issue #12, "Leaks and panics": what the proxy tells clients, what it
//! writes to its logs, what /healthz costs and says, and what it warns about
//! at start. Raw bytes wherever a client library would tidy them.

mod support;

use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;

/// A port that was just free: nothing listens there.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends raw bytes on a fresh HTTP/1.1 TLS connection and returns the first
/// answer, head and `Content-Length` body, as the bytes arrived.
async fn raw_answer(h: &Harness, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = h.tls(&[b"http/1.1"]).await;
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                    .and_then(|n| n.trim().parse::<usize>().ok());
                if length.is_some_and(|n| body.len() >= n) {
                    return;
                }
            }
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_502_page_names_neither_the_upstream_nor_the_os_error() {
    let port = dead_port();
    let ca = TestCa::new();
    let (proxy, addr) = start_proxy(&ca, &format!("http://127.0.0.1:{port}"), "").await;
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(15)).await.unwrap();
    let h = Harness { ca, proxy: Some(proxy), addr, upstream };
    for request in [
        "GET /alive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_string(),
        // A hub upgrade fails the same way.
        "GET /notifications/hub HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_string(),
    ] {
        let answer = raw_answer(&h, request.as_bytes()).await;
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
    let tls = h.tls(&[b"h2"]).await;
    let (mut c, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
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

/// A Vaultwarden stand-in that answers `/alive` with keep-alive and counts
/// the connections it accepts.
async fn counting_upstream() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"\"alive\""),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// A plain HTTP/1.1 GET on a fresh socket: the whole answer, bytes as sent.
async fn raw_plain_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn healthz_reuses_one_upstream_connection_and_names_no_address() {
    use std::sync::atomic::Ordering;
    let (upstream, accepted) = counting_upstream().await;
    let ca = TestCa::new();
    let (proxy, _) =
        start_proxy(&ca, &format!("http://{upstream}"), "[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
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
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one kept connection for every /healthz");

    // Down: 503, and still no address or OS error in the body.
    let dead = dead_port();
    let ca = TestCa::new();
    let (down, _) =
        start_proxy(&ca, &format!("http://127.0.0.1:{dead}"), "[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    let answer = raw_plain_get(down.metrics_addr().unwrap(), "/healthz").await;
    assert_eq!(raw_status(&answer), 503, "{answer}");
    for leak in [dead.to_string(), "127.0.0.1".into(), "refused".into(), "os error".into()] {
        assert!(!answer.contains(&leak), "`{leak}` in /healthz:\n{answer}");
    }
    proxy.shutdown().await;
    down.shutdown().await;
}
