//! HTTP/2 abuse on raw frames: malformed requests (RFC 9113 §8.2.2, §8.3),
//! rapid reset (CVE-2023-44487), CONTINUATION floods, idle connections —
//! each with a legitimate client served during and after.

use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK block of literal fields without indexing (no Huffman), so any
/// name — including ones the h2 client crate refuses to send — can be written.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn request_fields(h: &Harness) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "https".into()),
        (":path", "/alive".into()),
        (":authority", format!("localhost:{}", h.addr.port())),
    ]
}

/// A raw HTTP/2 connection: preface and empty SETTINGS sent.
async fn raw_h2(h: &Harness) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = h.tls(&[b"h2"]).await;
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    tls
}

/// Reads frames until one of `kinds` arrives on `stream` (or, for GOAWAY, on
/// the connection), or the connection ends. Returns the frame type and flags.
async fn wait_for(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    stream: u32,
    kinds: &[u8],
) -> Option<(u8, u8)> {
    let read = async {
        loop {
            let mut head = [0u8; 9];
            tls.read_exact(&mut head).await.ok()?;
            let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let id = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
            let mut payload = vec![0u8; len];
            tls.read_exact(&mut payload).await.ok()?;
            if kinds.contains(&head[3]) && (id == stream || head[3] == GOAWAY) {
                return Some((head[3], head[4]));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.ok().flatten()
}

async fn legit_request_works(h: &Harness) {
    let mut c = h.h2().await;
    let resp = c.send_request(get(&h.url("/alive"))).await.expect("a legitimate client is served");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_well_formed_raw_request_is_answered() {
    // Proves the raw-frame helpers themselves work, so the refusals below mean something.
    let h = Harness::start("").await;
    let mut tls = raw_h2(&h).await;
    let fields = request_fields(&h);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tls.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack(&fields))).await.unwrap();
    assert_eq!(wait_for(&mut tls, 1, &[HEADERS, RST_STREAM]).await.map(|f| f.0), Some(HEADERS));
}

#[tokio::test]
async fn malformed_requests_are_reset_and_never_forwarded() {
    let h = Harness::start("").await;
    let base = request_fields(&h);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("connection header", vec![("connection", "keep-alive".into())]),
        ("keep-alive header", vec![("keep-alive", "timeout=5".into())]),
        ("transfer-encoding header", vec![("transfer-encoding", "chunked".into())]),
        ("upgrade header", vec![("upgrade", "websocket".into())]),
        ("te other than trailers", vec![("te", "gzip".into())]),
        ("uppercase name", vec![("X-Upper", "1".into())]),
        ("pseudo-header after a regular one", vec![("x-a", "1".into()), (":method", "GET".into())]),
        ("unknown pseudo-header", vec![(":evil", "1".into())]),
    ];
    for (what, extra) in cases {
        let before = h.upstream.requests();
        let mut fields: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if what == "pseudo-header after a regular one" {
            fields.retain(|(k, _)| *k != ":method");
        }
        fields.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let mut tls = raw_h2(&h).await;
        tls.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack(&fields))).await.unwrap();
        let got = wait_for(&mut tls, 1, &[HEADERS, RST_STREAM, GOAWAY]).await;
        assert!(
            matches!(got, Some((RST_STREAM, _)) | Some((GOAWAY, _)) | None),
            "{what}: expected the stream to be refused, got {got:?}"
        );
        assert_eq!(h.upstream.requests(), before, "{what} reached Vaultwarden");
        legit_request_works(&h).await;
    }
}

#[tokio::test]
async fn rapid_reset_flood_does_not_stop_other_clients() {
    let h = Harness::start("").await;
    let fields = request_fields(&h);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let block = hpack(&fields);
    let mut tls = raw_h2(&h).await;
    let mut burst = Vec::new();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let flood = tokio::spawn(async move {
        let _ = tls.write_all(&burst).await;
        // The server should give up on this connection.
        wait_for(&mut tls, 0, &[GOAWAY]).await
    });
    legit_request_works(&h).await; // during
    let goaway = flood.await.unwrap();
    assert!(goaway.is_some(), "the flooding connection is sent GOAWAY");
    legit_request_works(&h).await; // after
    assert!(
        h.upstream.requests() < 5_000,
        "cancelled streams were not all forwarded: {}",
        h.upstream.requests()
    );
}

#[tokio::test]
async fn continuation_flood_is_cut_off() {
    let h = Harness::start("").await;
    let fields = request_fields(&h);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut tls = raw_h2(&h).await;
    tls.write_all(&frame(HEADERS, 0, 1, &hpack(&fields))).await.unwrap();
    let junk = hpack(&[("x-junk", &"j".repeat(100))]).repeat(150); // ~16 KiB per frame
    let mut sent = 0usize;
    let mut cut_off = false;
    for _ in 0..2_000 {
        if tls.write_all(&frame(CONTINUATION, 0, 1, &junk)).await.is_err() {
            cut_off = true;
            break;
        }
        sent += junk.len();
    }
    if !cut_off {
        // The writes may all have been buffered; the answer must be GOAWAY or a close.
        let got = wait_for(&mut tls, 1, &[HEADERS, GOAWAY, RST_STREAM]).await;
        assert!(!matches!(got, Some((HEADERS, _))), "a {sent}-byte header block was accepted");
    }
    assert_eq!(h.upstream.requests(), 0);
    legit_request_works(&h).await;
}

#[tokio::test]
async fn idle_http2_connection_is_closed_after_keep_alive() {
    let h = Harness::start("[timeouts]\nkeep_alive = \"300ms\"").await;
    let (mut c, conn) = h.client().h2_with_connection().await;
    assert_eq!(c.send_request(get(&h.url("/alive"))).await.unwrap().status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(20), conn).await;
    assert!(ended.is_ok(), "the server closed the idle connection");
}

#[tokio::test]
async fn busy_http2_connection_is_not_closed_as_idle() {
    // A download slower than keep_alive keeps its connection.
    let h = Harness::start("[timeouts]\nkeep_alive = \"300ms\"").await;
    let mut c = h.h2().await;
    let resp = c.send_request(get(&h.url("/slow?ms=1000"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Had the slow request been counted as idle time, GOAWAY would have come.
    let resp = c.send_request(get(&h.url("/alive"))).await.expect("the connection is still open");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn oversized_header_list_is_refused() {
    let h = Harness::start("").await;
    let mut c = h.h2().await;
    let req = http::Request::get(h.url("/alive"))
        .header("x-big", "b".repeat(100 * 1024))
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let refused = c.send_request(req).await;
    assert!(
        refused.as_ref().map_or(true, |r| r.status() == 431),
        "a 100 KiB header list was served: {:?}",
        refused.map(|r| r.status())
    );
    assert_eq!(h.upstream.requests(), 0);
    legit_request_works(&h).await;
}

#[tokio::test]
async fn streams_beyond_the_concurrency_limit_are_refused() {
    let h = Harness::start("").await;
    let mut fields = request_fields(&h);
    fields[2] = (":path", "/slow?ms=3000".into());
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let block = hpack(&fields);
    let mut tls = raw_h2(&h).await;
    // Ignore the server's advertised limit and open 150 streams at once.
    let mut burst = Vec::new();
    for i in 0..150u32 {
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block));
    }
    tls.write_all(&burst).await.unwrap();
    let refused = wait_for(&mut tls, 201, &[RST_STREAM, GOAWAY]).await;
    assert!(refused.is_some(), "stream 201 (the 101st) is refused or the connection told to go away");
    legit_request_works(&h).await;
}

#[tokio::test]
async fn http2_without_alpn_is_refused_as_http1() {
    // Over TLS, HTTP/2 is only ever chosen by ALPN (RFC 9113 §3.2): a client
    // that offers no protocol and sends the HTTP/2 preface anyway is served
    // as HTTP/1.1, where hyper recognises the preface and closes.
    let h = Harness::start("").await;
    let mut tls = h.tls(&[]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let mut answer = Vec::new();
    let _ = within("the refusal", tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 505"),
        "closed or refused as HTTP/1.1, never answered as HTTP/2: {answer:?}"
    );
    legit_request_works(&h).await;
}
