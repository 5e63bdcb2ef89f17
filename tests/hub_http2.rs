//! WebSockets over HTTP/2 (RFC 8441): extended CONNECT from the client,
//! translated to an HTTP/1.1 upgrade to Vaultwarden, spliced both ways.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type H2Client = hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>;

async fn h2_client(ca: &TestCa, addr: std::net::SocketAddr) -> H2Client {
    let tls = tls_connect(ca, addr, &[b"h2"]).await;
    let (c, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    c
}

fn extended_connect(url: &str, protocol: &'static str) -> Request<Empty<bytes::Bytes>> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(url)
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat")
        .header("origin", "https://localhost")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut().insert(Protocol::from_static(protocol));
    req
}

#[tokio::test]
async fn hub_over_http2_carries_signalr_both_ways() {
    let upstream = StandIn::start("127.0.0.1:0".parse().unwrap(), Duration::from_millis(200)).await.unwrap();
    let h = Harness::start_with_upstream(upstream, "").await;
    let mut c = h2_client(&h.ca, h.addr).await;
    c.ready().await.unwrap();
    let mut resp = c
        .send_request(extended_connect(&h.url("/notifications/hub?access_token=x.y.z"), "websocket"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "HTTP/2 answer to extended CONNECT is 200, not 101");
    for hop in ["upgrade", "connection", "sec-websocket-accept"] {
        assert!(!resp.headers().contains_key(hop), "{hop} is HTTP/1.1-only");
    }
    let stream = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await;

    ws.send(Message::text("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")).await.unwrap();
    within("handshake answer and a ping", async {
        let (mut got_ping, mut got_handshake) = (false, false);
        while !(got_ping && got_handshake) {
            match ws.next().await.unwrap().unwrap() {
                Message::Binary(b) if b.as_ref() == b"{}\x1e" => got_handshake = true,
                Message::Ping(_) => got_ping = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let push = standin::notification(0, "ReceiveMessage");
    h.upstream.push(push.clone());
    within("the pushed notification", async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Binary(b) => {
                    assert_eq!(b.as_ref(), &push[..]);
                    break;
                }
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    // The same connection still serves ordinary requests alongside the hub.
    let mut plain = c.clone();
    let req = Request::get(h.url("/alive")).body(Empty::new()).unwrap();
    assert_eq!(plain.send_request(req).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn extended_connect_elsewhere_is_refused() {
    let h = Harness::start("").await;
    let mut c = h2_client(&h.ca, h.addr).await;
    c.ready().await.unwrap();
    let resp = c.send_request(extended_connect(&h.url("/api/sync"), "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c.send_request(extended_connect(&h.url("/notifications/hub"), "h2c")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c.send_request(extended_connect(&h.url("/notifications//hub"), "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.upstream.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn refused_upgrade_over_http2_is_relayed() {
    let h = Harness::start("").await;
    let mut c = h2_client(&h.ca, h.addr).await;
    c.ready().await.unwrap();
    // No token: Vaultwarden says 401.
    let resp = c.send_request(extended_connect(&h.url("/notifications/hub"), "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// A raw upstream that records the upgrade request it got, answers 101 with
/// `accept` (None: the right one), then writes `after` and closes.
async fn raw_upstream(
    accept: Option<&'static str>,
    after: &'static [u8],
) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let (addr, head, _) = raw_upstream_recording(accept, after, true).await;
    (addr, head)
}

/// As [`raw_upstream`]; also reports every byte it then receives until the
/// client's side ends, and closes its own side only if `close` is set.
async fn raw_upstream_recording(
    accept: Option<&'static str>,
    after: &'static [u8],
    close: bool,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<String>, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (rest_tx, rest_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let key =
            head.lines().find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap_or("").trim().to_string();
        let accept = accept
            .map(str::to_string)
            .unwrap_or_else(|| tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()));
        let _ = tx.send(head);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        tcp.write_all(after).await.unwrap();
        if close {
            tcp.shutdown().await.unwrap();
        }
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        let _ = rest_tx.send(rest);
    });
    (addr, rx, rest_rx)
}

#[tokio::test]
async fn translation_sends_vaultwarden_a_proper_http1_upgrade() {
    let (addr, head) = raw_upstream(None, b"\x81\x02hi").await;
    let ca = TestCa::new();
    let (_proxy, proxy_addr) = start_proxy(&ca, &format!("http://{addr}"), "").await;
    let mut c = h2_client(&ca, proxy_addr).await;
    c.ready().await.unwrap();
    let url = format!("https://localhost:{}/notifications/hub?access_token=a%2Eb~c", proxy_addr.port());
    let mut resp = c.send_request(extended_connect(&url, "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat", "the chosen subprotocol is passed back");

    let head = head.await.unwrap();
    assert!(head.starts_with("GET /notifications/hub?access_token=a%2Eb~c HTTP/1.1\r\n"), "{head}");
    for line in [
        "connection: Upgrade",
        "upgrade: websocket",
        "sec-websocket-version: 13",
        "sec-websocket-protocol: chat",
        "origin: https://localhost",
        "cookie: a=1; b=2",
        &format!("host: localhost:{}", proxy_addr.port()),
        "x-real-ip: 127.0.0.1",
    ] {
        assert!(head.contains(&format!("{line}\r\n")), "missing `{line}`:\n{head}");
    }
    let key = head.lines().find_map(|l| l.strip_prefix("sec-websocket-key: ")).expect("a fresh key");
    assert_eq!(key.trim().len(), 24);

    // Upstream's bytes arrive, then its close becomes END_STREAM.
    let mut stream = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("END_STREAM after the upstream closed")
        .unwrap();
    assert_eq!(got, b"\x81\x02hi");
}

#[tokio::test]
async fn wrong_accept_key_from_upstream_is_a_502() {
    let (addr, _head) = raw_upstream(Some("bm90IHRoZSByaWdodCBrZXk="), b"").await;
    let ca = TestCa::new();
    let (_proxy, proxy_addr) = start_proxy(&ca, &format!("http://{addr}"), "").await;
    let mut c = h2_client(&ca, proxy_addr).await;
    c.ready().await.unwrap();
    let url = format!("https://localhost:{}/notifications/hub?access_token=t", proxy_addr.port());
    let resp = c.send_request(extended_connect(&url, "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn switched_off_http2_websockets_refuse_extended_connect() {
    let h = Harness::start("http2_websockets = false").await;
    let mut c = h2_client(&h.ca, h.addr).await;
    c.ready().await.unwrap();
    let refused =
        c.send_request(extended_connect(&h.url("/notifications/hub?access_token=t"), "websocket")).await;
    assert!(refused.is_err() || refused.unwrap().status() != StatusCode::OK);
    assert_eq!(
        c.send_request(Request::get(h.url("/alive")).body(Empty::new()).unwrap()).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn client_end_stream_becomes_a_fin_to_vaultwarden() {
    let (addr, _head, rest) = raw_upstream_recording(None, b"", false).await;
    let ca = TestCa::new();
    let (_proxy, proxy_addr) = start_proxy(&ca, &format!("http://{addr}"), "").await;
    let mut c = h2_client(&ca, proxy_addr).await;
    c.ready().await.unwrap();
    let url = format!("https://localhost:{}/notifications/hub?access_token=t", proxy_addr.port());
    let mut resp = c.send_request(extended_connect(&url, "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    stream.write_all(b"\x88\x80last").await.unwrap();
    stream.shutdown().await.unwrap(); // END_STREAM
    let got = within("Vaultwarden to see the client's end", rest).await.unwrap();
    assert_eq!(got, b"\x88\x80last");
}
