//! Graceful shutdown: stop accepting, finish what is in flight, close hubs,
//! and never wait past the drain deadline.

use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_closes_hubs() {
    let mut h = Harness::start("").await;
    let mut ws = h.ws("/notifications/hub?access_token=t").await;

    let mut c = h.h1().await;
    let slow = tokio::spawn(async move {
        let resp = c.send_request(get("/slow?ms=700")).await.unwrap();
        (resp.status(), body_bytes(resp).await)
    });
    tokio::time::sleep(Duration::from_millis(200)).await; // the request is in flight

    let shutdown = tokio::spawn(async move {
        h.shutdown().await;
        h
    });
    let (status, body) = slow.await.unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"slow"[..]), "in-flight request finished");

    // The hub gets a proper WebSocket close (1001, going away), not a cut.
    let close = within("the hub's close on shutdown", async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("the hub ended without a Close frame: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(
        close.map(|f| f.code),
        Some(tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away)
    );

    let h = tokio::time::timeout(Duration::from_secs(20), shutdown).await.expect("shutdown returns").unwrap();
    assert!(tokio::net::TcpStream::connect(h.addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_gives_up_on_stragglers_at_the_drain_deadline() {
    // The straggler: a request to an upstream that reads it and never
    // answers, with no upstream_response timeout to end it first. Only the
    // drain deadline can.
    let silent = Upstream::script(|mut conn| async move {
        conn.read_head().await;
        conn.read_rest().await;
    })
    .start()
    .await;
    let toml = ProxyToml::new().extra("[timeouts]\ndrain = \"500ms\"\nupstream_response = \"1h\"");
    let mut h = Harness::in_front_of(silent, toml).await;
    let mut straggler = h.tls(&[b"http/1.1"]).await;
    straggler.write_all(b"GET /api/sync HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    until("the straggler's request upstream", || h.upstream.requests() == 1).await;
    let mut byte = [0u8; 1];
    let waiting = tokio::time::timeout(Duration::from_millis(300), straggler.read(&mut byte)).await;
    assert!(waiting.is_err(), "the straggler waits for its answer: {waiting:?}");

    let started = Instant::now();
    let shutdown = tokio::spawn(async move {
        h.shutdown().await;
        h
    });
    // Generous, but 20 times the drain deadline and forever short of the
    // straggler's own end: the proxy cut it.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), straggler.read_to_end(&mut answer)).await;
    let cut_after = started.elapsed();
    assert!(read.is_ok(), "the straggler's connection was still open 10 s into a 500 ms drain");
    assert!(answer.is_empty(), "cut, not answered: {:?}", String::from_utf8_lossy(&answer));
    // Drained first: in-flight work gets its time.
    assert!(cut_after >= Duration::from_millis(450), "cut before the drain deadline, after {cut_after:?}");
    let h = tokio::time::timeout(Duration::from_secs(10) - cut_after, shutdown)
        .await
        .expect("shutdown returns once the straggler is cut")
        .unwrap();
    until("the straggler's upstream connection to be closed", || h.upstream.connections()[0].ended()).await;
    assert!(tokio::net::TcpStream::connect(h.addr).await.is_err(), "no longer accepting");
}
