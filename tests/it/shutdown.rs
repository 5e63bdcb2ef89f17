//! Graceful shutdown: stop accepting, finish what is in flight, close hubs,
//! and never wait past the drain deadline.

use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;

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
    let mut h = Harness::start("[timeouts]\ndrain = \"500ms\"").await;
    let mut c = h.h1().await;
    let straggler = tokio::spawn(async move { c.send_request(get("/slow?ms=60000")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(20), h.shutdown()).await.expect("drain deadline honoured");
    straggler.abort();
}
