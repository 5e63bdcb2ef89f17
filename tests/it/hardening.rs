//! Limits, access lists, client IP and path handling, end to end through the
//! real proxy, each refusal paired with a legitimate request that still works.

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;

type Chunks = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>;

/// An HTTP/1.1 or HTTP/2 request whose body the test feeds chunk by chunk.
async fn streaming_post(
    h: &Harness,
    http2: bool,
) -> (Chunks, tokio::task::JoinHandle<hyper::Result<hyper::Response<hyper::body::Incoming>>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let req = Request::post(h.url("/api/ciphers/x/attachment/v2")).body(body).unwrap();
    let task = if http2 {
        let mut c = h.client().h2_for().await;
        tokio::spawn(async move { c.send_request(req).await })
    } else {
        let mut c = h.client().h1_for().await;
        let (mut parts, body) = req.into_parts();
        parts.uri = "/api/ciphers/x/attachment/v2".parse().unwrap();
        parts.headers.insert("host", http::HeaderValue::from_static("localhost"));
        tokio::spawn(async move { c.send_request(Request::from_parts(parts, body)).await })
    };
    (tx, task)
}

#[tokio::test]
async fn body_over_the_limit_by_content_length_is_413_and_never_forwarded() {
    let h = Harness::start("[limits]\nmax_request_body = \"1KB\"").await;
    let mut c = h.h1().await;
    let req = Request::post("/api/sends/file/v2")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(vec![b'x'; 1001])))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.upstream.requests(), 0, "refused before reaching Vaultwarden");

    // At the limit is fine.
    let mut c = h.h2().await;
    let req =
        Request::post(h.url("/api/sends/file/v2")).body(Full::new(Bytes::from(vec![b'x'; 1000]))).unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(echoed(resp).await["body_len"], 1000);
}

#[tokio::test]
async fn streamed_body_growing_past_the_limit_is_cut_off_with_413() {
    for http2 in [false, true] {
        let h = Harness::start("[limits]\nmax_request_body = \"1KB\"").await;
        let (tx, task) = streaming_post(&h, http2).await;
        let feeder = tokio::spawn(async move {
            for _ in 0..10 {
                if tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 400])))).await.is_err() {
                    break;
                }
            }
        });
        let resp = task.await.unwrap().expect("an answer, not a dropped connection");
        let status = resp.status();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "http2={http2}: {:?}", body_bytes(resp).await);
        feeder.abort();
    }
}

#[tokio::test]
async fn stalled_body_gets_408() {
    let h = Harness::start("[timeouts]\nrequest_body_idle = \"300ms\"").await;
    let (tx, task) = streaming_post(&h, false).await;
    tx.send(Ok(Frame::data(Bytes::from_static(b"first part")))).await.unwrap();
    // ...and then nothing more.
    let resp = task.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    drop(tx);
    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/alive")).await.unwrap().status(), StatusCode::OK);
}

fn raw_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn access_list_refuses_admin_from_outside_in_every_spelling() {
    let h = Harness::start("[[access]]\npath = \"/admin\"\nallow = [\"10.0.0.0/8\"]").await;
    for path in [
        "/admin",
        "/ADMIN",
        "//admin",
        "/x/../admin",
        "/%61dmin",
        "/admin;x=1",
        "/%2e%2e/admin",
        "/admin/diagnostics",
    ] {
        let answer = raw_exchange(&h, &raw_get(path)).await;
        assert_eq!(raw_status(&answer), 403, "{path}: {}", &answer[..answer.len().min(200)]);
    }
    for path in ["/admin%2fx", "/admin%5c", "/%2e%2e%2fadmin"] {
        let answer = raw_exchange(&h, &raw_get(path)).await;
        assert_eq!(raw_status(&answer), 400, "{path}");
    }
    assert_eq!(h.upstream.requests(), 0, "none of them reached Vaultwarden");
    let answer = raw_exchange(&h, &raw_get("/api/sync")).await;
    assert_eq!(raw_status(&answer), 200, "other paths are open");
    let answer = raw_exchange(&h, &raw_get("/administrator")).await;
    assert_eq!(raw_status(&answer), 200, "a prefix is segment-wise");
}

#[tokio::test]
async fn access_list_lets_the_lan_in_and_upstream_receives_the_normalised_path() {
    let h = Harness::start("[[access]]\npath = \"/admin\"\nallow = [\"127.0.0.0/8\"]").await;
    let answer = raw_exchange(&h, &raw_get("/x/..//admin/%7euser?q=%2e%2e/a")).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let echo: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(echo["target"], "/admin/~user?q=%2e%2e/a", "path normalised, query byte for byte");
}

#[tokio::test]
async fn client_ip_from_a_trusted_proxy_is_the_rightmost_untrusted_hop() {
    let h = Harness::start("[client_ip]\ntrusted_proxies = [\"127.0.0.1\"]").await;
    let mut c = h.h1().await;
    let req = Request::get("/api/sync")
        .header("host", "localhost")
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.7")
        .header("x-real-ip", "6.6.6.6")
        .body(Full::default())
        .unwrap();
    let echo = echoed(c.send_request(req).await.unwrap()).await;
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["198.51.100.7"]);
    // The client's own writing left of itself is not passed on.
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["198.51.100.7, 127.0.0.1"]);
}

#[tokio::test]
async fn client_ip_header_from_an_untrusted_peer_is_ignored() {
    let h = Harness::start("[client_ip]\ntrusted_proxies = [\"10.0.0.0/8\"]\nheader = \"CF-Connecting-IP\"")
        .await;
    let mut c = h.h1().await;
    let req = Request::get("/api/sync")
        .header("host", "localhost")
        .header("cf-connecting-ip", "198.51.100.7")
        .body(Full::default())
        .unwrap();
    let echo = echoed(c.send_request(req).await.unwrap()).await;
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["127.0.0.1"]);
}

#[tokio::test]
async fn hub_tunnel_opens_only_for_the_plain_hub_path() {
    let h = Harness::start("").await;
    let upgrade = |path: &str| {
        format!(
            "GET {path}?access_token=t HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .into_bytes()
    };
    for path in [
        "/notifications/hub/../../api",
        "/notifications//hub",
        "/notifications/%68ub",
        "/notifications/hub/",
        "/notifications/hub/x",
        "/Notifications/hub",
        "/notifications/hub;x",
        "/x/../notifications/hub",
    ] {
        let status = raw_status_of(&h, &upgrade(path)).await;
        assert!(status != 101 && status != 0, "{path} opened a tunnel or got no answer: {status}");
    }
    assert_eq!(raw_status_of(&h, &upgrade("/notifications/hub")).await, 101, "the plain spelling does");
}

#[tokio::test]
async fn hsts_when_enabled_but_never_on_a_101() {
    let h = Harness::configured(ProxyToml::new().tls("hsts = true")).await;
    let mut c = h.h1().await;
    let resp = c.send_request(get("/alive")).await.unwrap();
    assert_eq!(resp.headers()["strict-transport-security"], "max-age=63072000");
    let (_ws, resp) = h.client().try_ws("/notifications/hub?access_token=t").await.unwrap();
    assert!(resp.headers().get("strict-transport-security").is_none(), "nothing is added to a 101");

    let plain = Harness::start("").await;
    let mut c = plain.h1().await;
    let resp = c.send_request(get("/alive")).await.unwrap();
    assert!(resp.headers().get("strict-transport-security").is_none(), "off by default");
}

#[tokio::test]
async fn slow_request_head_is_dropped_after_the_header_timeout() {
    let h = Harness::start("[timeouts]\nrequest_header = \"300ms\"").await;
    let mut tls = h.tls(&[b"http/1.1"]).await;
    tokio::io::AsyncWriteExt::write_all(&mut tls, b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut out),
    );
    assert!(read.await.is_ok(), "a dribbled request head is cut off");
    assert_eq!(h.upstream.requests(), 0);
}

#[tokio::test]
async fn silent_connections_from_one_address_do_not_lock_out_others() {
    let h = Harness::start("[limits]\nmax_connections_per_ip = 50").await;
    // A thousand half-open connections from 127.0.0.1 that never say hello.
    let mut silent = Vec::new();
    for _ in 0..1000 {
        silent.push(tokio::net::TcpStream::connect(h.addr).await.unwrap());
    }
    // A real client from another address is served at once.
    let mut c = h.client().from("127.0.0.2").try_h1().await.expect("handshake from another address");
    let resp = c.send_request(get("/alive")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = c.send_request(get("/api/sync")).await.unwrap();
    assert_eq!(echoed_header(&echoed(echo).await, "x-real-ip"), ["127.0.0.2"]);
    drop(silent);
}

#[tokio::test]
async fn strict_sni_refuses_bare_ip_and_unknown_names() {
    let h = Harness::configured(ProxyToml::new().tls("server_names = [\"localhost\"]")).await;
    let openssl = tool(Tool::Openssl);
    // tokio's Command: the proxy runs on this test's runtime and must keep going.
    let s_client = |sni: &str| {
        let arg = if sni.is_empty() { "-noservername".to_string() } else { format!("-servername {sni}") };
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "'{}' s_client -connect 127.0.0.1:{} {arg} </dev/null 2>&1",
                openssl.display(),
                h.addr.port()
            ))
            .output()
    };
    let ok = String::from_utf8_lossy(&s_client("localhost").await.unwrap().stdout).into_owned();
    assert!(ok.contains("BEGIN CERTIFICATE"), "the configured name gets the certificate:\n{ok}");
    for sni in ["", "evil.example", "127.0.0.1.nip.io"] {
        let out = String::from_utf8_lossy(&s_client(sni).await.unwrap().stdout).into_owned();
        assert!(!out.contains("BEGIN CERTIFICATE"), "SNI {sni:?} got a certificate:\n{out}");
    }
    legit_after_sni(&h).await;
}

async fn legit_after_sni(h: &Harness) {
    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/alive")).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn body_dribbled_below_the_minimum_rate_gets_408() {
    let h =
        Harness::start("[timeouts]\nrequest_body_idle = \"1s\"\n[limits]\nmin_upload_rate = \"1KiB\"").await;
    let (tx, task) = streaming_post(&h, false).await;
    let dribble = tokio::spawn(async move {
        // 10 bytes every 200 ms: never silent for a second, but 50 bytes/s.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tx.send(Ok(Frame::data(Bytes::from_static(b"0123456789")))).await.is_err() {
                break;
            }
        }
    });
    let resp = within("the proxy to give up on the dribble", task).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    let text = String::from_utf8_lossy(&body_bytes(resp).await).into_owned();
    assert!(text.contains("slower than 1024 bytes/s"), "{text}");
    dribble.abort();
}
