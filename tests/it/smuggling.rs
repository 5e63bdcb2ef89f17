//! Request smuggling and malformed framing, byte by byte on raw sockets: every
//! ambiguous shape is refused before anything reaches Vaultwarden, and a
//! legitimate client is served afterwards.

use crate::support::*;

const LEGIT: &[u8] = b"GET /alive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// (what, raw request, expected status)
fn refused_shapes() -> Vec<(&'static str, Vec<u8>, u16)> {
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    vec![
        (
            "Content-Length with Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Transfer-Encoding with Content-Length after a good request",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec(),
            200,
        ),
        ("bare LF line endings", b"GET / HTTP/1.1\nHost: a\n\n".to_vec(), 400),
        ("one bare LF among CRLFs", b"GET / HTTP/1.1\r\nHost: a\nX-Smuggle: 1\r\n\r\n".to_vec(), 400),
        (
            "conflicting Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            400,
        ),
        (
            "Content-Length list",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd".to_vec(),
            400,
        ),
        (
            "signed Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc".to_vec(),
            400,
        ),
        (
            "obfuscated Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunked not last",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "space before colon",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunk size overflow",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n"
                .to_vec(),
            400,
        ),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n".to_vec(), 400),
        ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n".to_vec(), 400),
        ("CR in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n".to_vec(), 400),
        ("invalid header name", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n".to_vec(), 400),
        ("missing Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("duplicate Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400),
        ("userinfo in Host", b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n".to_vec(), 400),
        (
            "absolute-form disagreeing with Host",
            b"GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            400,
        ),
        ("absolute-form of another scheme", b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
        ("authority-form outside CONNECT", b"GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
        ("CONNECT", b"CONNECT a:22 HTTP/1.1\r\nHost: a:22\r\n\r\n".to_vec(), 405),
        ("encoded slash in path", b"GET /admin%2f HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
        ("too many headers", format!("GET / HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n").into_bytes(), 431),
        (
            "huge request line",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100_000)).into_bytes(),
            414,
        ),
    ]
}

#[tokio::test]
async fn every_ambiguous_shape_is_refused_before_the_upstream() {
    let h = Harness::start("").await;
    for (what, bytes, expected) in refused_shapes() {
        let before = h.upstream.requests();
        let status = raw_status_of(&h, &bytes).await;
        // hyper answers a request line past its 64 KiB buffer with 414 when
        // one read brought all of it and 431 when the buffer filled first:
        // which one depends on how the kernel cut the bytes. Both refuse.
        if expected == 414 {
            assert!(status == 414 || status == 431, "{what}: {status}");
        } else {
            assert_eq!(status, expected, "{what}");
        }
        // A bad chunk is found only while the body streams: Vaultwarden may
        // have seen the head, but never a complete request (the upstream
        // connection is aborted). Every other shape is refused at the head;
        // "after a good request" lets exactly the good one through.
        let allowed = usize::from(what.contains("after a good request"));
        if !what.contains("chunk size") {
            assert_eq!(h.upstream.requests() - before, allowed, "{what} reached Vaultwarden");
        }
        // A legitimate client on another connection is still served.
        assert_eq!(raw_status(&raw_exchange(&h, LEGIT).await), 200, "after {what}");
    }
}

#[tokio::test]
async fn pipelined_requests_after_a_refusal_are_not_run() {
    let h = Harness::start("").await;
    let mut bytes =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec();
    bytes.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
    let answer = raw_exchange(&h, &bytes).await;
    assert!(!answer.contains("/smuggled"), "{answer}");
    assert_eq!(h.upstream.requests(), 0);
}

#[tokio::test]
async fn identical_repeated_content_length_is_forwarded_as_one() {
    // RFC 9112 §6.3 lets a recipient treat identical repeats as one value;
    // hyper does, and Vaultwarden must see exactly one.
    let h = Harness::start("").await;
    let answer = raw_exchange(
        &h,
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(answer.matches("\"content-length\"").count(), 1, "{answer}");
}

#[tokio::test]
async fn ambiguous_second_request_is_refused_after_the_first_is_answered() {
    let h = Harness::start("").await;
    let answer = raw_exchange(
        &h,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokPOST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("HTTP/1.1 400 Bad Request\r\n"), "the second is refused: {answer}");
    assert!(!answer.contains("/smuggled"), "{answer}");
    assert_eq!(h.upstream.requests(), 1);
}
