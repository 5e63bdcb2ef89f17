//! WebSockets over HTTP/2 (RFC 8441): extended CONNECT from the client,
//! translated to an HTTP/1.1 upgrade to Vaultwarden, spliced both ways.

use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::ext::Protocol;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type H2Client = hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>;

async fn h2_client(h: &Harness) -> H2Client {
    h.client().h2_for().await
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
    let upstream = Upstream::standin().ping_every(Duration::from_millis(200)).start().await;
    let h = Harness::in_front_of(upstream, ProxyToml::new()).await;
    let mut c = h2_client(&h).await;
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
    let mut c = h2_client(&h).await;
    c.ready().await.unwrap();
    let resp = c.send_request(extended_connect(&h.url("/api/sync"), "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c.send_request(extended_connect(&h.url("/notifications/hub"), "h2c")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c.send_request(extended_connect(&h.url("/notifications//hub"), "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.upstream.requests(), 0);
}

#[tokio::test]
async fn refused_upgrade_over_http2_is_relayed() {
    let h = Harness::start("").await;
    let mut c = h2_client(&h).await;
    c.ready().await.unwrap();
    // No token: Vaultwarden says 401.
    let resp = c.send_request(extended_connect(&h.url("/notifications/hub"), "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// A raw upstream that answers every hub upgrade 101 with `accept` (None:
/// the right one) and `Sec-WebSocket-Protocol: chat`, then writes `after`,
/// closes its own side if `close` is set, and records everything else it
/// receives until the proxy's side ends.
async fn switching_upstream(accept: Option<&'static str>, after: &'static [u8], close: bool) -> Upstream {
    Upstream::script(move |mut conn| async move {
        let head = conn.read_head().await;
        let key =
            head.lines().find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap_or("").trim().to_string();
        let accept = accept
            .map(str::to_string)
            .unwrap_or_else(|| tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()));
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        conn.write_all(answer.as_bytes()).await.unwrap();
        conn.write_all(after).await.unwrap();
        if close {
            conn.shutdown().await.unwrap();
        }
        conn.read_rest().await;
    })
    .start()
    .await
}

#[tokio::test]
async fn translation_sends_vaultwarden_a_proper_http1_upgrade() {
    let h = Harness::in_front_of(switching_upstream(None, b"\x81\x02hi", true).await, ProxyToml::new()).await;
    let proxy_addr = h.addr;
    let mut c = h2_client(&h).await;
    c.ready().await.unwrap();
    let url = format!("https://localhost:{}/notifications/hub?access_token=a%2Eb~c", proxy_addr.port());
    let mut resp = c.send_request(extended_connect(&url, "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat", "the chosen subprotocol is passed back");

    until("the upgrade request upstream", || !h.upstream.heads().is_empty()).await;
    let head = h.upstream.heads().remove(0);
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
    let h = Harness::in_front_of(
        switching_upstream(Some("bm90IHRoZSByaWdodCBrZXk="), b"", true).await,
        ProxyToml::new(),
    )
    .await;
    let proxy_addr = h.addr;
    let mut c = h2_client(&h).await;
    c.ready().await.unwrap();
    let url = format!("https://localhost:{}/notifications/hub?access_token=t", proxy_addr.port());
    let resp = c.send_request(extended_connect(&url, "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn switched_off_http2_websockets_refuse_extended_connect() {
    let h = Harness::start("http2_websockets = false").await;
    let mut c = h2_client(&h).await;
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
    let h = Harness::in_front_of(switching_upstream(None, b"", false).await, ProxyToml::new()).await;
    let proxy_addr = h.addr;
    let mut c = h2_client(&h).await;
    c.ready().await.unwrap();
    let url = format!("https://localhost:{}/notifications/hub?access_token=t", proxy_addr.port());
    let mut resp = c.send_request(extended_connect(&url, "websocket")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    stream.write_all(b"\x88\x80last").await.unwrap();
    stream.shutdown().await.unwrap(); // END_STREAM
    until("Vaultwarden to see the client's end", || {
        h.upstream.connections().first().is_some_and(|c| c.ended())
    })
    .await;
    let seen = h.upstream.connections()[0].bytes();
    let head_len = h.upstream.heads()[0].len();
    assert_eq!(&seen[head_len..], b"\x88\x80last");
}

/// A hub holds its HTTP/2 connection busy: with no request in flight beside
/// it, the connection still outlives `keep_alive` (and the grace after it).
#[tokio::test]
async fn an_http2_connection_carrying_a_hub_is_not_idle() {
    let upstream = Upstream::standin().start().await;
    let toml = ProxyToml::new().extra("[timeouts]\nkeep_alive = \"300ms\"\nrequest_header = \"300ms\"");
    let h = Harness::in_front_of(upstream, toml).await;
    let mut c = h2_client(&h).await;
    c.ready().await.unwrap();
    let mut resp = c
        .send_request(extended_connect(&h.url("/notifications/hub?access_token=x.y.z"), "websocket"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let stream = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await;
    // Three times keep_alive plus its grace, with nothing else on the connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let push = standin::notification(0, "ReceiveMessage");
    h.upstream.push(push.clone());
    within("the pushed notification, on the hub still open", async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Binary(b) => break assert_eq!(b.as_ref(), &push[..]),
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let req = Request::get(h.url("/alive")).body(Empty::new()).unwrap();
    assert_eq!(c.send_request(req).await.unwrap().status(), StatusCode::OK, "and the connection too");
}
