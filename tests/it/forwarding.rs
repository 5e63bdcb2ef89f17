//! Ordinary requests through the real proxy: what Vaultwarden receives, what
//! the client gets back, over HTTP/1.1 and HTTP/2.

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

#[tokio::test]
async fn http1_request_reaches_vaultwarden_with_forwarding_headers() {
    let h = Harness::start("").await;
    let mut c = h.h1().await;
    let target = "/api/accounts/prelogin?a=1&b=%2F..%2f&c=%zz";
    let resp = c
        .send_request(
            Request::get(target).header("host", "vault.example:8443").body(Full::default()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Vaultwarden's own response headers pass through; its hop-by-hop ones do not.
    assert_eq!(resp.headers()["x-frame-options"], "SAMEORIGIN");
    assert_eq!(resp.headers()["x-upstream-only"], "kept");
    assert!(!resp.headers().contains_key("x-upstream-hop"), "named in upstream's Connection");
    assert!(!resp.headers().contains_key("keep-alive"));
    let echo = echoed(resp).await;
    assert_eq!(echo["target"], target, "path and query byte for byte");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echoed_header(&echo, "host"), ["vault.example:8443"], "Host preserved");
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-host"), ["vault.example:8443"]);
}

#[tokio::test]
async fn http2_request_is_translated_to_http1() {
    let h = Harness::start("").await;
    let mut c = h.h2().await;
    let req = Request::post(h.url("/identity/connect/token?x=%41"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"grant_type=password")))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-frame-options"], "SAMEORIGIN");
    assert!(!resp.headers().contains_key("keep-alive"));
    let echo = echoed(resp).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["target"], "/identity/connect/token?x=%41");
    assert_eq!(echoed_header(&echo, "host"), [format!("localhost:{}", h.addr.port())], ":authority → Host");
    assert_eq!(echoed_header(&echo, "cookie"), ["a=1; b=2"], "split cookies joined");
    assert_eq!(echo["body_len"], 19);
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["127.0.0.1"]);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_before_ours_are_added() {
    let h = Harness::start("").await;
    let mut c = h.h1().await;
    let req = Request::get("/api/sync")
        .header("host", "localhost")
        .header("connection", "keep-alive, X-Real-IP, X-Forwarded-For, X-Custom-Hop")
        .header("keep-alive", "timeout=100")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("x-custom-hop", "secret")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-for", "6.6.6.6, 7.7.7.7")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=6.6.6.6")
        .header("x-end-to-end", "kept")
        .body(Full::default())
        .unwrap();
    let echo = echoed(c.send_request(req).await.unwrap()).await;
    for gone in ["connection", "keep-alive", "proxy-connection", "te", "x-custom-hop", "forwarded"] {
        assert!(echoed_header(&echo, gone).is_empty(), "{gone} reached the upstream: {echo}");
    }
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["127.0.0.1"], "Connection: X-Real-IP did not remove ours");
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"], "replaced, not appended");
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-host"), ["localhost"]);
    assert_eq!(echoed_header(&echo, "x-end-to-end"), ["kept"]);
}

#[tokio::test]
async fn h2c_upgrade_is_never_honoured() {
    let h = Harness::start("").await;
    let mut c = h.h1().await;
    let req = Request::get("/")
        .header("host", "localhost")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAAQAAP__")
        .body(Full::default())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "forwarded as an ordinary request");
    // A refused upgrade closes the connection (the raw-byte guard does not
    // watch past an upgrade request: SECURITY.md).
    assert_eq!(resp.headers().get("connection").unwrap(), "close");
    let echo = echoed(resp).await;
    for gone in ["upgrade", "connection", "http2-settings"] {
        assert!(echoed_header(&echo, gone).is_empty(), "{gone} reached the upstream");
    }
    // Nothing was spliced: a new connection is plain HTTP/1.1.
    let mut c = h.h1().await;
    let resp = c.send_request(get("/alive")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn websocket_upgrade_outside_hub_paths_is_not_honoured() {
    let h = Harness::start("").await;
    let mut c = h.h1().await;
    let req = Request::get("/api/notifications/hub")
        .header("host", "localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Full::default())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = echoed(resp).await;
    assert!(echoed_header(&echo, "upgrade").is_empty());
}

#[tokio::test]
async fn hundred_mib_download_streams_intact_over_both_protocols() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let expected = {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = Vec::with_capacity(1 << 20);
        for off in 0..SIZE {
            buf.push(standin::pattern_byte(off));
            if buf.len() == 1 << 20 {
                ctx.update(&buf);
                buf.clear();
            }
        }
        standin::hex(ctx.finish().as_ref())
    };
    let h = Harness::start("").await;
    let path = format!("/download?size={SIZE}&token=secret");
    let download = |resp: hyper::Response<hyper::body::Incoming>| async move {
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame.unwrap().data_ref() {
                len += d.len() as u64;
                ctx.update(d);
            }
        }
        (len, standin::hex(ctx.finish().as_ref()))
    };
    let mut c1 = h.h1().await;
    let (len, hash) = download(c1.send_request(get(&path)).await.unwrap()).await;
    assert_eq!((len, hash.as_str()), (SIZE, expected.as_str()));
    let mut c2 = h.h2().await;
    let (len, hash) = download(c2.send_request(get(&h.url(&path))).await.unwrap()).await;
    assert_eq!((len, hash.as_str()), (SIZE, expected.as_str()));
}

#[tokio::test]
async fn hundred_mib_upload_streams_intact_with_curl() {
    let h = Harness::start("").await;
    let file = h.ca.dir.path().join("upload.bin");
    let data: Vec<u8> = (0..100u64 * 1024 * 1024).map(|i| standin::pattern_byte(i * 7)).collect();
    std::fs::write(&file, &data).unwrap();
    let expected = sha256_hex(&data);
    drop(data);
    for proto in ["--http1.1", "--http2"] {
        let out = tokio::process::Command::new(tool(Tool::Curl))
            .args(["-sS", "--fail", proto, "--cacert"])
            .arg(&h.ca.ca_path)
            .args(["-X", "POST", "-H", "content-type: application/octet-stream", "-T"])
            .arg(&file)
            .arg(h.url("/api/ciphers/x/attachment/v2"))
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "curl {proto}: {}", String::from_utf8_lossy(&out.stderr));
        let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(echo["body_len"], 100 * 1024 * 1024, "{proto}");
        assert_eq!(echo["body_sha256"], expected.as_str(), "{proto}");
    }
}

#[tokio::test]
async fn upstream_down_gives_502_without_naming_it() {
    // A port that was just free: nothing listens there.
    let port = free_port();
    let ca = TestCa::new();
    let (_proxy, addr) = ProxyToml::new()
        .upstream_url(format!("http://127.0.0.1:{port}"))
        .certificate(&ca)
        .start(ca.dir.path())
        .await;
    let mut c = ca.client(addr).h1().await;
    let resp = c.send_request(get("/alive")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
    assert!(text.contains("Vaultwarden is not answering"), "{text}");
    assert!(!text.contains(&port.to_string()), "the address is for the log, not the client: {text}");
    // The same holds for a hub upgrade.
    let req = Request::get("/notifications/hub?access_token=x")
        .header("host", "localhost")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Full::default())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn slow_upstream_gives_504() {
    let h = Harness::start("[timeouts]\nupstream_response = \"300ms\"").await;
    let mut c = h.h1().await;
    let resp = c.send_request(get("/slow?ms=5000")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
    assert!(text.contains("did not answer"), "{text}");
    // A fast answer on the same connection is unaffected.
    let resp = c.send_request(get("/slow?ms=0")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn slow_upload_is_not_mistaken_for_a_slow_upstream() {
    // The response clock starts when the body has been sent: a body that takes
    // longer than upstream_response to arrive must still succeed.
    let h = Harness::start("[timeouts]\nupstream_response = \"300ms\"").await;
    let mut c = h.client().h1_for().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    tokio::spawn(async move {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"chunk")))).await.unwrap();
        }
    });
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = Request::post("/api/ciphers/import").header("host", "localhost").body(body).unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(echoed(resp).await["body_len"], 30);
}

fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn missing_host_is_400_and_never_reaches_upstream() {
    let h = Harness::in_front_of(Upstream::recording().start().await, ProxyToml::new()).await;
    let mut c = h.h1().await;
    let resp = c.send_request(Request::get("/alive").body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // A request with its Host on a connection of its own reaches the
    // upstream; the upstream accepts in the order the proxy connected, so a
    // connection the first request made would have come before it.
    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/with-host")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(h.upstream.heads(), ["GET /with-host"], "only the request with a Host reached the upstream");
    assert_eq!(h.upstream.accepted(), 1, "no upstream connection was opened for the refused one");
    assert!(
        h.upstream.received_text().starts_with("GET /with-host HTTP/1.1\r\n"),
        "{}",
        h.upstream.received_text()
    );
}

#[tokio::test]
async fn connect_method_is_refused() {
    let h = Harness::start("").await;
    let mut c = h.h1().await;
    let req = Request::connect("localhost:22").header("host", "localhost:22").body(Full::default()).unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_normalised_path_goes_upstream_with_its_query_byte_for_byte() {
    let h = Harness::start("").await;
    let sent = "/api/x/.././/sync/%7Eme?a=1&b=%2F..%2f&c=%zz";
    let expected = "/api/sync/~me?a=1&b=%2F..%2f&c=%zz";
    let mut c1 = h.h1().await;
    let echo = echoed(c1.send_request(get(sent)).await.unwrap()).await;
    assert_eq!(echo["target"], expected, "HTTP/1.1");
    let mut c2 = h.h2().await;
    let echo = echoed(c2.send_request(get(&h.url(sent))).await.unwrap()).await;
    assert_eq!(echo["target"], expected, "HTTP/2");
    // Unchanged paths go as they came, absolute-form turned to origin-form.
    let echo = echoed(c2.send_request(get(&h.url("/api/sync?x=%41"))).await.unwrap()).await;
    assert_eq!(echo["target"], "/api/sync?x=%41");
    let absolute = format!("https://localhost:{}/api/sync?y=1", h.addr.port());
    let req = Request::get(absolute.as_str())
        .header("host", format!("localhost:{}", h.addr.port()))
        .body(Full::default())
        .unwrap();
    let echo = echoed(c1.send_request(req).await.unwrap()).await;
    assert_eq!(echo["target"], "/api/sync?y=1", "absolute-form to origin-form");
}
