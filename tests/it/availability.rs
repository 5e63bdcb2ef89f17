//! Nobody can hold every slot: silent HTTP/2 connections, hub tunnels,
//! clients that stop reading and the small listeners are all bounded, and a
//! legitimate client on another connection is served while the attack runs.
//! Timeouts are configured short; nothing here measures speed.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::client::plain_exchange_within;
use crate::support::{self, *};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::ext::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Reads (and throws away) whatever the server sends until it closes the
/// connection; panics if it is still open after `secs`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, secs: u64, what: &str) {
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {secs} s");
}

/// A legitimate client from another address gets its answer meanwhile.
async fn other_client_is_served(h: &Harness) {
    let mut c = within("a TLS handshake from 127.0.0.2", h.client().from("127.0.0.2").try_h1())
        .await
        .expect("another client connects");
    let resp = within("an answer for 127.0.0.2", c.send_request(get("/alive"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Whether a new connection from 127.0.0.1 gets an answer at all.
async fn new_connection_is_served(h: &Harness) -> bool {
    let Ok(Ok(mut c)) =
        tokio::time::timeout(Duration::from_secs(5), h.client().from("127.0.0.1").try_h1()).await
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), c.send_request(get("/alive"))).await,
        Ok(Ok(resp)) if resp.status() == StatusCode::OK
    )
}

#[tokio::test]
async fn a_silent_http2_connection_is_closed_and_frees_its_slot() {
    let h = Harness::start(
        "[timeouts]\nrequest_header = \"1s\"\nkeep_alive = \"75s\"\n[limits]\nmax_connections_per_ip = 2\nworkers = 1",
    )
    .await;
    // ALPN h2 and then nothing: no preface, no request.
    let mut silent = h.tls(&[b"h2"]).await;
    let mut preface_only = h.tls(&[b"h2"]).await;
    preface_only.write_all(PREFACE).await.unwrap();
    assert!(!new_connection_is_served(&h).await, "both places of 127.0.0.1 are held");
    other_client_is_served(&h).await;
    closed_within(&mut silent, 10, "an h2 connection that never sent its preface").await;
    closed_within(&mut preface_only, 10, "an h2 connection that never sent a request").await;
    assert!(new_connection_is_served(&h).await, "the places are free again");
}

#[tokio::test]
async fn an_idle_http2_peer_that_never_answers_the_close_is_cut() {
    let h = Harness::start("[timeouts]\nrequest_header = \"1s\"\nkeep_alive = \"1s\"\n[limits]\nworkers = 1")
        .await;
    let mut tls = h.tls(&[b"h2"]).await;
    // One request (HPACK, static table: GET, https, /, then :authority
    // localhost), after which the peer reads but never writes again: it
    // acknowledges neither SETTINGS nor the PING sent with GOAWAY.
    let mut frames = PREFACE.to_vec();
    let block: &[u8] = b"\x82\x87\x84\x41\x09localhost";
    frames.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, 1]);
    frames.extend_from_slice(block);
    tls.write_all(&frames).await.unwrap();
    closed_within(&mut tls, 15, "an idle h2 connection whose peer ignores GOAWAY and PING").await;
    other_client_is_served(&h).await;
}

async fn hub_http1(h: &Harness) -> Result<impl Sized, tokio_tungstenite::tungstenite::Error> {
    h.client().try_ws("/notifications/hub?access_token=x").await.map(|(ws, _)| ws)
}

#[tokio::test]
async fn http1_hub_tunnels_hold_their_connection_slots() {
    let h = Harness::start("[limits]\nmax_connections_per_ip = 3\nmax_hubs_per_ip = 10\nworkers = 1").await;
    let mut hubs = Vec::new();
    for _ in 0..3 {
        hubs.push(within("a hub upgrade", hub_http1(&h)).await.expect("a hub opens"));
    }
    // hyper has handed all three connections over to their tunnels; the
    // tunnels still count.
    assert!(!new_connection_is_served(&h).await, "three open tunnels fill the three places");
    other_client_is_served(&h).await;
    hubs.pop();
    let freed = async {
        while !new_connection_is_served(&h).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    within("a place freed by a closed hub", freed).await;
}

#[tokio::test]
async fn hubs_beyond_the_per_address_cap_get_429_and_never_reach_vaultwarden() {
    let h = Harness::start("[limits]\nmax_hubs_per_ip = 2\nworkers = 1").await;
    let _a = within("hub 1", hub_http1(&h)).await.expect("hub 1 opens");
    let _b = within("hub 2", hub_http1(&h)).await.expect("hub 2 opens");
    let before = h.upstream.requests();
    match within("hub 3", hub_http1(&h)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(resp.headers().contains_key("retry-after"));
        }
        Err(e) => panic!("hub 3: {e}"),
        Ok(_) => panic!("a third hub opened"),
    }
    // Also over HTTP/2: the cap is the address's, whatever the protocol.
    let mut c = h2_connect_client(&h).await;
    let resp = c.send_request(extended_connect(&h.url("/notifications/hub?access_token=x"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h.upstream.requests(), before, "nothing was opened upstream");
    // Another address has hubs of its own.
    within("a hub from 127.0.0.2", h.client().from("127.0.0.2").try_ws("/notifications/hub?access_token=x"))
        .await
        .expect("its hub opens");
}

async fn h2_connect_client(h: &Harness) -> hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>> {
    let mut c = h.client().h2_for().await;
    c.ready().await.unwrap();
    c
}

fn extended_connect(url: &str) -> Request<Empty<bytes::Bytes>> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(url)
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut().insert(Protocol::from_static("websocket"));
    req
}

#[tokio::test]
async fn http2_hub_tunnels_count_against_the_connection_caps() {
    let h = Harness::start("[limits]\nmax_connections_per_ip = 3\nmax_hubs_per_ip = 10\nworkers = 1").await;
    let mut c = h2_connect_client(&h).await;
    let mut tunnels = Vec::new();
    for _ in 0..2 {
        let mut resp =
            c.send_request(extended_connect(&h.url("/notifications/hub?access_token=x"))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        tunnels.push(hyper::upgrade::on(&mut resp).await.unwrap());
    }
    // The connection and its two tunnels: three places.
    let resp = c.send_request(extended_connect(&h.url("/notifications/hub?access_token=x"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "a third tunnel is refused");
    assert!(!new_connection_is_served(&h).await, "no place is left for a new connection");
    other_client_is_served(&h).await;
}

#[tokio::test]
async fn an_http1_download_nobody_reads_is_cut_and_its_upstream_released() {
    let h = Harness::start("[timeouts]\nsend_idle = \"1s\"\n[limits]\nworkers = 1").await;
    const SIZE: u64 = 64 * 1024 * 1024;
    let mut tls = h.tls(&[b"http/1.1"]).await;
    tls.write_all(format!("GET /download?size={SIZE} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).await.unwrap();
    assert_eq!(raw_status(&String::from_utf8_lossy(&head)), 200);
    // Never read again: the socket fills, the proxy cannot write.
    let released = async {
        while h.upstream.open() != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within("the upstream connection of the unread download to close", released).await;
    let mut received = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n as u64,
        }
    }
    assert!(received < SIZE, "the download was cut, not finished ({received} bytes)");
    other_client_is_served(&h).await;
}

#[tokio::test]
async fn a_slow_reader_is_not_cut() {
    // Reads a little every half second: never stalled for the whole send_idle.
    let h = Harness::start("[timeouts]\nsend_idle = \"2s\"\n[limits]\nworkers = 1").await;
    const SIZE: u64 = 4 * 1024 * 1024;
    let mut tls = h.tls(&[b"http/1.1"]).await;
    tls.write_all(format!("GET /download?size={SIZE} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 512 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&all[..all.len().min(4096)]).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            if (all.len() - end - 4) as u64 == SIZE {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&all[..4096.min(all.len())]).into_owned();
    let body_at = text.find("\r\n\r\n").expect("a response head") + 4;
    assert_eq!((all.len() - body_at) as u64, SIZE, "the whole download arrived");
}

#[tokio::test]
async fn a_keep_alive_connection_idle_after_its_answer_is_not_cut_for_sending() {
    let h = Harness::start("[timeouts]\nsend_idle = \"1s\"\nrequest_header = \"10s\"\n[limits]\nworkers = 1")
        .await;
    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/download?size=1000")).await.unwrap().status(), 200);
    let resp = c.send_request(get("/alive")).await.unwrap();
    body_bytes(resp).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resp = c.send_request(get("/alive")).await.expect("the connection is still open");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn http2_streams_held_at_window_zero_are_reset_and_release_the_upstream() {
    let h = Harness::start(
        "[timeouts]\nsend_idle = \"1s\"\n[limits]\nmax_upstream_per_connection = 4\nworkers = 1",
    )
    .await;
    let tls = h.tls(&[b"h2"]).await;
    let (client, conn) =
        h2::client::Builder::new().initial_window_size(0).handshake::<_, bytes::Bytes>(tls).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..6 {
        let req = Request::get(h.url("/download?size=1048576")).body(()).unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        client = client.ready().await.unwrap();
        streams.push(resp);
    }
    // At most four reach Vaultwarden at once: the other two wait for a place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.upstream.open() <= 4, "upstream connections beyond the cap");
    for resp in streams {
        // Headers need no window; the body never gets any: reset.
        let outcome = within("a stream held at window 0 to end", async {
            match resp.await {
                Err(e) => Err(e),
                Ok(resp) => {
                    let mut body = resp.into_body();
                    loop {
                        match body.data().await {
                            None => return Ok(()),
                            Some(Err(e)) => return Err(e),
                            Some(Ok(_)) => {}
                        }
                    }
                }
            }
        })
        .await;
        assert!(outcome.is_err(), "a stream whose client never opened its window was reset");
    }
    let released = async {
        while h.upstream.open() != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within("every upstream connection of the held streams to close", released).await;
    other_client_is_served(&h).await;
}

#[tokio::test]
async fn upstream_requests_beyond_the_per_address_cap_get_429() {
    let h = Harness::start("[limits]\nmax_upstream_per_ip = 2\nworkers = 1").await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut c = h.h2().await;
        let req = get(&h.url("/slow?ms=3000"));
        slow.push(tokio::spawn(async move { c.send_request(req).await }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = h.h1().await;
    let resp = c.send_request(get("/alive")).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a third request from 127.0.0.1 waits on nothing"
    );
    other_client_is_served(&h).await;
    drop(slow);
}

/// Whether a plain-HTTP listener answers a request on a new connection.
async fn plain_answers(addr: SocketAddr, source: &str, path: &str) -> bool {
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    plain_exchange_within(addr, source, req.as_bytes(), Duration::from_secs(5)).await.starts_with("HTTP/1.1 ")
}

#[tokio::test]
async fn the_redirect_listener_has_a_per_address_cap() {
    let h = Harness::start(
        "[redirect]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_connections_per_ip = 2\nworkers = 1",
    )
    .await;
    let addr = h.proxy().redirect_addr().unwrap();
    let _held = [
        support::client::plain_connect(addr, "127.0.0.1").await,
        support::client::plain_connect(addr, "127.0.0.1").await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!plain_answers(addr, "127.0.0.1", "/").await, "a third connection from 127.0.0.1 is refused");
    // The listener only accepts 127.0.0.1 as destination, from any source on lo.
    assert!(plain_answers(addr, "127.0.0.2", "/").await, "another address is redirected");
}

#[tokio::test]
async fn the_metrics_listener_has_a_cap() {
    let h = Harness::start("[metrics]\nlisten = \"127.0.0.1:0\"\n[limits]\nworkers = 1").await;
    let addr = h.proxy().metrics_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(support::client::plain_connect(addr, "127.0.0.1").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!plain_answers(addr, "127.0.0.2", "/metrics").await, "a 65th connection is refused");
    held.truncate(10);
    let freed = async {
        while !plain_answers(addr, "127.0.0.2", "/metrics").await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    within("metrics to answer once connections close", freed).await;
}

#[tokio::test]
async fn pipelined_requests_from_a_client_that_never_reads_are_cut() {
    // Small answers pipelined until hyper's write buffer and the socket are
    // full: no response body is waiting (the next request is never run),
    // only the socket shows that the client takes nothing.
    let h = Harness::start("[timeouts]\nsend_idle = \"1s\"\nrequest_header = \"30s\"\n[limits]\nmax_connections_per_ip = 2\nworkers = 1")
        .await;
    let tls = h.client().recv_buffer(4096).tls(&[b"http/1.1"]).await;
    let one = b"GET /download?size=2000 HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let many: Vec<u8> = one.iter().copied().cycle().take(one.len() * 4000).collect();
    // Written without reading; the proxy stops reading too once it cannot
    // answer, so the write may block: it runs beside the check.
    let (mut reader, mut writer) = tokio::io::split(tls);
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&many).await;
        writer
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(new_connection_is_served(&h).await, "one place of two is held");
    // The kernel takes megabytes of answers before the socket is full, as
    // fast as the proxy makes them: waiting until the upstream has seen no
    // request for longer than send_idle makes sure the stall was that long.
    let stalled = async {
        loop {
            let before = h.upstream.requests();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            if h.upstream.requests() == before {
                return;
            }
        }
    };
    within("the proxy to stop answering a client that never reads", stalled).await;
    // Now read: everything until the proxy closes, which it must do.
    closed_within(&mut reader, 10, "a connection whose client never read its pipelined answers").await;
    drop(writing);
    other_client_is_served(&h).await;
}

#[tokio::test]
async fn a_steady_slow_reader_of_a_large_download_is_not_cut() {
    // 4 KiB every 50 ms (80 KB/s) with a 1 s send timeout: the socket takes
    // bytes all the time, however large the pieces hyper hands it.
    let h = Harness::start("[timeouts]\nsend_idle = \"1s\"\n[limits]\nworkers = 1").await;
    const SIZE: u64 = 1024 * 1024;
    let mut tls = h.client().recv_buffer(4096).tls(&[b"http/1.1"]).await;
    tls.write_all(
        format!("GET /download?size={SIZE} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match tokio::time::timeout(Duration::from_secs(30), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&all[..4096.min(all.len())]).into_owned();
    let body_at = text.find("\r\n\r\n").expect("a response head") + 4;
    assert_eq!((all.len() - body_at) as u64, SIZE, "the whole download arrived");
}
