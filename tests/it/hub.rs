//! WebSocket hubs through the real proxy: the upgrade carried through, the
//! splice only after a real 101, bytes and half-closes passed on exactly.

use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const HANDSHAKE: &str = "{\"protocol\":\"messagepack\",\"version\":1}\u{1e}";

/// Next data frame, skipping the upstream's pings.
async fn next_data<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a data frame on the hub", async {
        loop {
            match ws.next().await.expect("hub open").expect("hub frame") {
                Message::Ping(_) | Message::Pong(_) => continue,
                m => return m,
            }
        }
    })
    .await
}

#[tokio::test]
async fn hub_upgrades_and_carries_signalr_both_ways() {
    let upstream = Upstream::standin().ping_every(Duration::from_millis(200)).start().await;
    let h = Harness::in_front_of(upstream, ProxyToml::new()).await;
    let mut ws = h.ws("/notifications/hub?access_token=eyJhbGciOi.x.y").await;

    ws.send(Message::text(HANDSHAKE)).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(b"{}\x1e".to_vec()), "SignalR handshake answered");

    // The client's SignalR ping is echoed, as Vaultwarden does.
    ws.send(Message::binary(vec![0x02, 0x91, 0x06])).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(vec![0x02, 0x91, 0x06]));

    // The upstream's WebSocket pings arrive.
    within("the upstream's ping", async {
        loop {
            if let Message::Ping(p) = ws.next().await.unwrap().unwrap() {
                assert_eq!(&p[..], b"vw");
                break;
            }
        }
    })
    .await;

    // A pushed notification arrives intact.
    let push = standin::notification(1, "ReceiveMessage");
    h.upstream.push(push.clone());
    assert_eq!(next_data(&mut ws).await, Message::binary(push));

    // A cipher created over REST pushes to the open hub, as in Vaultwarden.
    let mut c = h.h2().await;
    let req = http::Request::post(h.url("/api/ciphers")).body(http_body_util::Full::default()).unwrap();
    assert_eq!(c.send_request(req).await.unwrap().status(), StatusCode::OK);
    let Message::Binary(frame) = next_data(&mut ws).await else { panic!("binary notification") };
    assert_eq!(standin::describe(&frame), Some(("ReceiveMessage".to_string(), 1)));
}

#[tokio::test]
async fn anonymous_hub_works_too() {
    let h = Harness::start("").await;
    let mut ws = h.ws("/notifications/anonymous-hub?Token=abc").await;
    ws.send(Message::text(HANDSHAKE)).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(b"{}\x1e".to_vec()));
}

#[tokio::test]
async fn refused_upgrade_is_relayed_not_spliced() {
    // No token: Vaultwarden answers 401, which must reach the client as is.
    let h = Harness::start("").await;
    match h.client().try_ws("/notifications/hub").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn upgrade_request(path_and_query: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: vault.example\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: x-test\r\nX-Real-IP: 6.6.6.6\r\n\r\n"
    )
}

/// Reads a response head from the client side.
async fn read_response_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "response head cut short: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn switching_protocols() -> String {
    format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n")
}

#[tokio::test]
async fn upgrade_reaches_upstream_intact_and_bytes_sent_with_the_101_arrive() {
    let h = Harness::in_front_of(
        Upstream::script(|mut conn| async move {
            conn.read_head().await;
            // The 101 and the first frame in one write, so one packet.
            let mut out = switching_protocols().into_bytes();
            out.extend_from_slice(b"\x81\x05hello");
            conn.write_all(&out).await.unwrap();
            conn.read_rest().await;
        })
        .start()
        .await,
        ProxyToml::new(),
    )
    .await;
    let upstream = &h.upstream;
    let mut tls = h.tls(&[b"http/1.1"]).await;
    let target = "/notifications/hub?access_token=a%2Eb.c~d&x=%zz";
    tls.write_all(upgrade_request(target).as_bytes()).await.unwrap();

    let head = within("the 101", read_response_head(&mut tls)).await;
    assert_eq!(
        head.to_ascii_lowercase(),
        switching_protocols().to_ascii_lowercase(),
        "the 101 is relayed exactly, nothing added"
    );
    let mut first = [0u8; 7];
    within("the frame sent with the 101", tls.read_exact(&mut first)).await.unwrap();
    assert_eq!(&first, b"\x81\x05hello", "bytes that came with the 101 are not lost");

    tls.write_all(b"\x82\x03abc").await.unwrap();
    tls.flush().await.unwrap();
    // Wait for the upstream to have it.
    for _ in 0..200 {
        if upstream.received().ends_with(b"\x82\x03abc") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = upstream.received_text();
    let head = seen.split("\r\n\r\n").next().unwrap();
    assert!(head.starts_with(&format!("GET {target} HTTP/1.1\r\n")), "target byte for byte: {head}");
    let lower = format!("{head}\r\n").to_ascii_lowercase();
    for line in [
        "connection: upgrade",
        "upgrade: websocket",
        "sec-websocket-version: 13",
        &format!("sec-websocket-key: {}", KEY.to_ascii_lowercase()),
        "sec-websocket-protocol: chat",
        "sec-websocket-extensions: x-test",
        "host: vault.example",
        "x-real-ip: 127.0.0.1",
        "x-forwarded-proto: https",
    ] {
        assert!(lower.contains(&format!("\r\n{line}\r\n")), "missing `{line}` in:\n{head}");
    }
    assert!(!lower.contains("6.6.6.6"), "spoofed X-Real-IP reached the upstream");
    assert!(upstream.received().ends_with(b"\x82\x03abc"), "client frame spliced to upstream");
}

#[tokio::test]
async fn non_101_answer_is_not_spliced_and_the_connection_closes() {
    let h = Harness::in_front_of(
        Upstream::script(|mut conn| async move {
            conn.read_head().await;
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
            conn.read_rest().await;
        })
        .start()
        .await,
        ProxyToml::new(),
    )
    .await;
    let upstream = &h.upstream;
    let mut tls = h.tls(&[b"http/1.1"]).await;
    tls.write_all(upgrade_request("/notifications/hub?access_token=t").as_bytes()).await.unwrap();
    let head = within("the refusal", read_response_head(&mut tls)).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    let mut body = [0u8; 2];
    tls.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"ok");

    // Whatever the client sends now must not travel anywhere.
    let _ = tls.write_all(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "nothing more is answered: {}", String::from_utf8_lossy(&rest));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !upstream.received_text().contains("smuggled"),
        "bytes after a refused upgrade reached the upstream"
    );
}

#[tokio::test]
async fn half_close_from_the_client_keeps_the_other_direction_open() {
    let h = Harness::in_front_of(
        Upstream::script(|mut conn| async move {
            conn.read_head().await;
            conn.write_all(switching_protocols().as_bytes()).await.unwrap();
            conn.read_rest().await; // until the proxy passes on the client's FIN
            conn.write_all(b"after-fin").await.unwrap();
            conn.shutdown().await.unwrap();
        })
        .start()
        .await,
        ProxyToml::new(),
    )
    .await;
    let upstream = &h.upstream;
    let mut tls = h.tls(&[b"http/1.1"]).await;
    tls.write_all(upgrade_request("/notifications/hub?access_token=t").as_bytes()).await.unwrap();
    within("the 101", read_response_head(&mut tls)).await;
    tls.write_all(b"last words").await.unwrap();
    tls.shutdown().await.unwrap(); // close_notify + FIN: our direction is done
    let mut rest = Vec::new();
    within("the upstream's answer after our FIN", tls.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"after-fin", "upstream could still answer after the client's FIN");
    assert!(upstream.received().ends_with(b"last words"));
}

#[tokio::test]
async fn websockets_over_http2_can_be_switched_off() {
    let advertised = |extra: &'static str| async move {
        let h = Harness::start(extra).await;
        let tls = h.tls(&[b"h2"]).await;
        let (client, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        // Let the server's SETTINGS arrive.
        let req = http::Request::get(h.url("/alive")).body(()).unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        assert_eq!(resp.await.unwrap().status(), StatusCode::OK);
        client.is_extended_connect_protocol_enabled()
    };
    assert!(advertised("").await, "on by default");
    assert!(!advertised("http2_websockets = false").await);
}
