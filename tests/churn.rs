//! Connection churn leaves nothing behind. Alone in its own test binary, so
//! no other test's sockets blur the descriptor count.

#[path = "it/support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn connection_churn_leaks_no_descriptors() {
    let h = Harness::start("").await;
    // Warm up (the upstream pool, the runtime), then measure.
    for _ in 0..5 {
        let mut c = h.h1().await;
        c.send_request(get("/alive")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = open_descriptors();
    for i in 0..300 {
        if i % 3 == 0 {
            let mut c = h.h2().await;
            assert_eq!(c.send_request(get(&h.url("/alive"))).await.unwrap().status(), 200);
        } else if i % 3 == 1 {
            let mut c = h.h1().await;
            assert_eq!(c.send_request(get("/alive")).await.unwrap().status(), 200);
        } else {
            // A client that goes away mid-handshake.
            drop(tokio::net::TcpStream::connect(h.addr).await.unwrap());
        }
    }
    // Closed connections are reaped; the pool keeps a bounded few.
    let mut after = open_descriptors();
    for _ in 0..50 {
        if after <= before + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = open_descriptors();
    }
    assert!(after <= before + 4, "descriptors grew from {before} to {after} over 300 connections");
}
