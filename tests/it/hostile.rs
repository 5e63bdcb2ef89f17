//! Hostile bytes from clients: each gets its definite answer (a 4xx and a
//! close, or HTTP/2's GOAWAY and a close), nothing panics, nothing ambiguous
//! reaches the upstream, and a legitimate client is served afterwards.

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the hostile bytes are refused.
enum Refused {
    /// At the head: no byte of it ever reaches the upstream.
    AtTheHead,
    /// In the body, which only streams after the head was forwarded: the
    /// upstream may have had the head, never a byte of the body nor a whole
    /// request, and its connection is cut.
    InTheBody,
}

/// Sends `bytes` on a fresh HTTP/1.1 connection; everything the proxy
/// answered, which must end with the proxy closing the connection.
async fn answer_and_close(h: &Harness, what: &str, bytes: &[u8]) -> String {
    let mut tls = h.tls(&[b"http/1.1"]).await;
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    let mut out = Vec::new();
    let _ = within(&format!("{what}: the proxy to close the connection"), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A legitimate client over HTTP/1.1 and then HTTP/2 is served; what
/// reached the upstream is theirs alone, but for what `refused` allows.
async fn legit_served_and_nothing_else_upstream(h: &Harness, what: &str, refused: Refused) {
    let mut c = h.h1().await;
    assert_eq!(c.send_request(get("/legit/h1")).await.unwrap().status(), 200, "{what}: HTTP/1.1 after");
    let mut c = h.h2().await;
    assert_eq!(c.send_request(get(&h.url("/legit/h2"))).await.unwrap().status(), 200, "{what}: HTTP/2 after");
    // The upstream accepts in the order the proxy connected: any connection
    // the hostile bytes made came before these.
    let legit = ["GET /legit/h1", "GET /legit/h2"];
    let heads = h.upstream.heads();
    let others: Vec<_> = heads.iter().filter(|head| !legit.contains(&head.as_str())).collect();
    match refused {
        Refused::AtTheHead => {
            assert_eq!(heads, legit, "{what}: only the legitimate requests reached the upstream");
            for conn in h.upstream.connections() {
                let text = conn.text();
                assert!(
                    text.starts_with("GET /legit/"),
                    "{what}: an upstream connection of its own: {text:?}"
                );
            }
        }
        Refused::InTheBody => {
            assert!(others.iter().all(|head| head.starts_with("POST /hostile")), "{what}: {heads:?}");
            assert_eq!(
                h.upstream.complete(),
                ["/legit/h1", "/legit/h2"],
                "{what}: no whole request but theirs"
            );
            for conn in h.upstream.connections() {
                let text = conn.text();
                if !text.starts_with("GET /legit/") {
                    assert!(!text.contains("zz"), "{what}: body bytes reached the upstream: {text:?}");
                    until(&format!("{what}: its upstream connection to be cut"), || conn.ended()).await;
                }
            }
        }
    }
}

#[tokio::test]
async fn malformed_requests_get_4xx_or_close_and_the_proxy_lives_on() {
    let long_header = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n", "a".repeat(200_000));
    let cases: Vec<(&str, Vec<u8>, &str, Refused)> = vec![
        ("garbage", b"\x00\x01\x02garbage\r\n\r\n".to_vec(), "400 Bad Request", Refused::AtTheHead),
        ("no version", b"GET /\r\n\r\n".to_vec(), "400 Bad Request", Refused::AtTheHead),
        (
            "header without colon",
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n".to_vec(),
            "400 Bad Request",
            Refused::AtTheHead,
        ),
        (
            "conflicting content-length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            "400 Bad Request",
            Refused::AtTheHead,
        ),
        (
            "bad chunk size",
            b"POST /hostile HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            "400 Bad Request",
            Refused::InTheBody,
        ),
        ("huge header", long_header.into_bytes(), "431 Request Header Fields Too Large", Refused::AtTheHead),
        (
            "nul in header",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n".to_vec(),
            "400 Bad Request",
            Refused::AtTheHead,
        ),
    ];
    for (what, bytes, status, refused) in cases {
        // A proxy and a recording upstream of its own for each: whatever
        // reaches the upstream came from this case.
        let h = Harness::in_front_of(Upstream::recording().start().await, ProxyToml::new()).await;
        let answer = answer_and_close(&h, what, &bytes).await;
        let (head, body) =
            answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{what}: no answer: {answer:?}"));
        assert!(head.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{what}: {answer:?}");
        assert!(head.to_ascii_lowercase().contains("\r\nconnection: close"), "{what}: {answer:?}");
        if let Refused::InTheBody = refused {
            assert!(body.contains("vaultgate: the request body was malformed"), "{what}: {answer:?}");
        }
        legit_served_and_nothing_else_upstream(&h, what, refused).await;
    }

    // The HTTP/2 preface followed by junk: a frame header announcing 16 MiB
    // (more than SETTINGS_MAX_FRAME_SIZE) is a connection error.
    let h = Harness::in_front_of(Upstream::recording().start().await, ProxyToml::new()).await;
    let mut h2_junk = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_junk.extend_from_slice(&[0xff; 64]);
    let mut tls = h.tls(&[b"h2"]).await;
    let _ = tls.write_all(&h2_junk).await;
    let mut sent = Vec::new();
    let _ = within("the proxy to close the junk HTTP/2 connection", tls.read_to_end(&mut sent)).await;
    let goaway = frames(&sent).into_iter().find(|(kind, _)| *kind == 0x7).map(|(_, payload)| payload);
    let goaway = goaway.unwrap_or_else(|| panic!("a GOAWAY before the close: {sent:02x?}"));
    assert_eq!(goaway.get(..4), Some(&[0u8, 0, 0, 0][..]), "no stream was processed: {goaway:02x?}");
    assert_eq!(goaway.get(4..8), Some(&[0u8, 0, 0, 0x6][..]), "FRAME_SIZE_ERROR: {goaway:02x?}");
    legit_served_and_nothing_else_upstream(&h, "HTTP/2 junk", Refused::AtTheHead).await;
}

/// The (type, payload) of each whole HTTP/2 frame in `bytes`.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        let Some(payload) = bytes.get(9..9 + len) else { break };
        out.push((bytes[3], payload.to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}
