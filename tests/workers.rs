//! Workers: each a thread of its own with its own listening socket, serving
//! its connections start to end. Alone in this test binary, so that the
//! threads it counts are its own server's.

#[path = "it/support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;

/// Threads of this process named like vaultgate's extra workers.
fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with("vaultgate-w"))
        .count()
}

#[tokio::test]
async fn every_worker_serves_and_drains_and_its_thread_ends_with_the_server() {
    let mut h = Harness::start("[limits]\nworkers = 3\n").await;
    // Two workers beside the caller's runtime (their threads start on their own).
    within("two worker threads", async {
        while worker_threads() != 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Twelve connections, spread over the workers' sockets by the kernel,
    // each with a request in flight when shutdown begins.
    let mut slow = Vec::new();
    for _ in 0..12 {
        let mut c = h.h1().await;
        slow.push(tokio::spawn(async move {
            let resp = c.send_request(get("/slow?ms=700")).await.unwrap();
            (resp.status().as_u16(), body_bytes(resp).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn(async move {
        h.shutdown().await;
        h
    });
    for request in slow {
        let (status, body) = within("an in-flight request", request).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"slow"[..]), "finished, whichever worker had it");
    }
    let h = within("the shutdown", shutdown).await.unwrap();
    assert!(tokio::net::TcpStream::connect(h.addr).await.is_err(), "no worker accepts any more");
    within("the worker threads to end", async {
        while worker_threads() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
