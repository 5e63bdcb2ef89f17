//! Which upstream connection a request travels on: an HTTP/1.1 client
//! connection keeps one of its own, never shared with another client, and a
//! connection Vaultwarden has closed is replaced without the client noticing.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A minimal HTTP/1.1 upstream that answers every GET with the number of the
/// TCP connection it came on (0, 1, 2, …). With `close_after_first`, it
/// closes each connection shortly after its first answer, without saying so
/// in the answer — as a server does when its keep-alive timeout runs out.
async fn numbering_upstream(close_after_first: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            let number = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let body = number.to_string();
                        let answer =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        if tcp.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if close_after_first {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            return;
                        }
                    }
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// The proxy in front of a [`numbering_upstream`], and how many connections
/// that upstream has accepted.
struct Setup {
    ca: TestCa,
    proxy: vaultgate::Server,
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Setup {
    async fn start(close_after_first: bool) -> Setup {
        let (upstream, accepted) = numbering_upstream(close_after_first).await;
        let ca = TestCa::new();
        let (proxy, addr) = start_proxy(&ca, &format!("http://{upstream}"), "").await;
        Setup { ca, proxy, addr, accepted }
    }

    async fn h1_client(&self) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
        let tls = tls_connect(&self.ca, self.addr, &[b"http/1.1"]).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        sender
    }
}

async fn upstream_connection_of(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
) -> String {
    sender.ready().await.unwrap();
    let resp = sender.send_request(get("/api/sync")).await.unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8(body_bytes(resp).await.to_vec()).unwrap()
}

#[tokio::test]
async fn each_http1_client_connection_keeps_one_upstream_connection_of_its_own() {
    let setup = Setup::start(false).await;
    let mut first = setup.h1_client().await;
    let mut second = setup.h1_client().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push((upstream_connection_of(&mut first).await, upstream_connection_of(&mut second).await));
    }
    assert!(seen.iter().all(|pair| *pair == seen[0]), "each client stays on its connection: {seen:?}");
    assert_ne!(seen[0].0, seen[0].1, "two clients never share one");
    assert_eq!(setup.accepted.load(Ordering::SeqCst), 2, "six requests, two upstream connections");
    setup.proxy.shutdown().await;
}

#[tokio::test]
async fn an_upstream_connection_closed_by_vaultwarden_is_replaced_without_an_error() {
    let setup = Setup::start(true).await;
    let mut client = setup.h1_client().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(upstream_connection_of(&mut client).await);
        // Long enough for the upstream to have closed the connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(seen, ["0", "1", "2"], "a new upstream connection each time, and every answer a 200");
    assert_eq!(setup.accepted.load(Ordering::SeqCst), 3);
    setup.proxy.shutdown().await;
}
