//! Hostile bytes from clients: each gets an error or a closed connection,
//! nothing panics, and a legitimate client is served afterwards.

use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn malformed_requests_get_4xx_or_close_and_the_proxy_lives_on() {
    let h = Harness::start("").await;
    let long_header = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n", "a".repeat(200_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01\x02garbage\r\n\r\n".to_vec()),
        ("no version", b"GET /\r\n\r\n".to_vec()),
        ("header without colon", b"GET / HTTP/1.1\r\nHost a\r\n\r\n".to_vec()),
        (
            "conflicting content-length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        ),
        ("huge header", long_header.into_bytes()),
        ("nul in header", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let answer = raw_exchange(&h, &bytes).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{name}: expected a 4xx or a closed connection, got {:?}",
            &answer[..answer.len().min(300)]
        );
    }
    // HTTP/2 preface followed by junk frames.
    let mut h2_junk = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_junk.extend_from_slice(&[0xff; 64]);
    let mut tls = h.tls(&[b"h2"]).await;
    let _ = tls.write_all(&h2_junk).await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut sink)).await;

    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/alive")).await.unwrap().status(), 200);
    let mut c = h.h2().await;
    assert_eq!(c.send_request(get(&h.url("/alive"))).await.unwrap().status(), 200);
}
