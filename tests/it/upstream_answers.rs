//! What Vaultwarden answers, as vaultgate's own HTTP/1.1 client reads it
//! (`src/proxy/exchange.rs`): every way an answer's body can be delimited,
//! informational answers, and the answers a strict reader must refuse. After
//! each answer, whether its connection was kept tells whether the reader
//! stayed in step: a connection with bytes it could not place must never
//! carry the next request.

use crate::support::logs::LogCapture;
use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

/// Answers each request by its path; every answer names its connection in
/// `x-conn`. Request bodies are read as their head says (length or chunked).
async fn scripted() -> Upstream {
    Upstream::script(|mut conn| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let head = conn.read_head().await;
            if head.is_empty() {
                return;
            }
            let lower = head.to_ascii_lowercase();
            if let Some(len) = lower.lines().find_map(|l| l.strip_prefix("content-length: ")) {
                let mut body = vec![0u8; len.trim().parse().unwrap()];
                if conn.read_exact(&mut body).await.is_err() {
                    return;
                }
            } else if lower.contains("transfer-encoding: chunked") {
                let mut body = Vec::new();
                let mut byte = [0u8; 1];
                while !body.ends_with(b"0\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    body.push(byte[0]);
                }
            }
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let n = conn.number();
            let answer = match path.as_str() {
                "/chunked" => format!(
                    "HTTP/1.1 200 OK\r\nx-conn: {n}\r\ntransfer-encoding: chunked\r\n\r\n\
                     5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-digest: abc\r\nx-real-ip: 6.6.6.6\r\n\r\n"
                ),
                "/until-close" => format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\n\r\nto the end"),
                "/both" => format!(
                    "HTTP/1.1 200 OK\r\nx-conn: {n}\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
                     5\r\nhello\r\n0\r\n\r\n"
                ),
                "/two-lengths" => format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc"),
                "/gzip-coded" => format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
                "/bad-chunk" => format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"),
                "/continue" => format!(
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
                     HTTP/1.1 200 OK\r\nx-conn: {n}\r\ncontent-length: 2\r\n\r\nok"
                ),
                "/endless-continue" => "HTTP/1.1 100 Continue\r\n\r\n".repeat(50),
                "/extra" => format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"),
                "/short" => format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\ncontent-length: 10\r\n\r\nfour"),
                "/close" => format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"),
                "/huge-head" => format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\nx-big: {}\r\n\r\n", "a".repeat(70 * 1024)),
                "/upgrade" => "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n".to_string(),
                "/nothing" => return,
                // HEAD, and everything else: the length GET's body would have.
                _ => {
                    let body = if head.starts_with("HEAD ") { "" } else { "plain" };
                    format!("HTTP/1.1 200 OK\r\nx-conn: {n}\r\ncontent-length: 5\r\n\r\n{body}")
                }
            };
            if conn.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            if matches!(path.as_str(), "/until-close" | "/short" | "/close" | "/bad-chunk") {
                return;
            }
        }
    })
    .start()
    .await
}

async fn harness() -> Harness {
    Harness::in_front_of(scripted().await, ProxyToml::new().extra("[limits]\nworkers = 1")).await
}

/// Status, `x-conn` and the body (or the error that ended it) of a request
/// for `path` on `client`.
async fn ask(client: &mut Http1, method: &str, path: &str) -> (u16, String, Result<Bytes, String>) {
    within("the client is ready", client.ready()).await.unwrap();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::default())
        .unwrap();
    let resp = within("the answer", client.send_request(req)).await.unwrap();
    let status = resp.status().as_u16();
    let conn = resp.headers().get("x-conn").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body =
        within("the body", resp.into_body().collect()).await.map(|b| b.to_bytes()).map_err(|e| e.to_string());
    (status, conn, body)
}

#[tokio::test]
async fn a_chunked_answer_arrives_whole_with_its_trailers_sanitised_and_its_connection_is_kept() {
    let h = harness().await;
    let mut h2 = h.h2().await;
    let resp = within("the answer", h2.send_request(get(&h.url("/chunked")))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let conn = resp.headers()["x-conn"].to_str().unwrap().to_string();
    let collected = within("the body", resp.into_body().collect()).await.unwrap();
    let trailers = collected.trailers().cloned().expect("the trailers reach an HTTP/2 client");
    assert_eq!(collected.to_bytes(), "hello world");
    assert_eq!(trailers["x-digest"], "abc");
    assert!(trailers.get("x-real-ip").is_none(), "no forwarding header from a trailer: {trailers:?}");
    let mut h1 = h.h1().await;
    let (status, next, body) = ask(&mut h1, "GET", "/plain").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"plain"[..]));
    assert_eq!(next, conn, "the connection was in step after the last chunk, and kept");
}

#[tokio::test]
async fn an_answer_delimited_by_the_close_arrives_whole_and_its_connection_is_not_reused() {
    let h = harness().await;
    let mut h1 = h.h1().await;
    let (status, conn, body) = ask(&mut h1, "GET", "/until-close").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"to the end"[..]));
    let (_, next, _) = ask(&mut h1, "GET", "/plain").await;
    assert_ne!(next, conn);
}

#[tokio::test]
async fn a_head_answer_has_no_body_and_the_connection_stays_in_step() {
    let h = harness().await;
    let mut h1 = h.h1().await;
    let (status, conn, body) = ask(&mut h1, "HEAD", "/plain").await;
    assert_eq!((status, body.unwrap().len()), (200, 0));
    // Had the proxy waited for HEAD's five bytes, this would hang or be misread.
    let (status, next, body) = ask(&mut h1, "GET", "/plain").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"plain"[..]));
    assert_eq!(next, conn);
}

#[tokio::test]
async fn informational_answers_are_skipped_but_not_forever() {
    let h = harness().await;
    let mut h1 = h.h1().await;
    let (status, _, body) = ask(&mut h1, "GET", "/continue").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"ok"[..]));
    let (status, _, _) = ask(&mut h1, "GET", "/endless-continue").await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn bytes_after_an_answer_never_become_the_next_answer() {
    let h = harness().await;
    let mut h1 = h.h1().await;
    let (status, conn, body) = ask(&mut h1, "GET", "/extra").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"ok"[..]));
    let (status, next, body) = ask(&mut h1, "GET", "/plain").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"plain"[..]), "not the forged answer");
    assert_ne!(next, conn, "the connection with unasked bytes was let go");
}

#[tokio::test]
async fn a_coding_with_a_length_is_read_as_chunked_and_the_connection_let_go() {
    let h = harness().await;
    let mut h1 = h.h1().await;
    let (status, conn, body) = ask(&mut h1, "GET", "/both").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"hello"[..]));
    let (_, next, _) = ask(&mut h1, "GET", "/plain").await;
    assert_ne!(next, conn);
}

#[test]
fn ambiguous_or_undecodable_answers_are_502_and_say_why_in_the_log() {
    let logs = LogCapture::new();
    logs.run(async {
        let h = harness().await;
        for (path, why) in [
            ("/two-lengths", "Content-Length is not one number"),
            ("/gzip-coded", "Transfer-Encoding other than chunked"),
            ("/huge-head", "response head is longer than"),
            ("/upgrade", "101 answer to a request that asked for no upgrade"),
            ("/nothing", "closed the connection before answering"),
        ] {
            let mut h1 = h.h1().await;
            let (status, _, body) = ask(&mut h1, "GET", path).await;
            assert_eq!(status, 502, "{path}");
            let body = String::from_utf8(body.unwrap().to_vec()).unwrap();
            assert!(!body.contains(why), "{path}: the detail is for the log, not the client: {body}");
            until(why, || logs.text().contains(why)).await;
        }
    });
}

#[tokio::test]
async fn an_answer_cut_short_or_malformed_mid_body_fails_the_clients_body() {
    let h = harness().await;
    for path in ["/short", "/bad-chunk"] {
        // The head may or may not have gone out before the body failed;
        // what must never happen is a whole, ended answer.
        let mut h1 = h.h1().await;
        let req = Request::get(path).header("host", "localhost").body(Full::default()).unwrap();
        let whole = match within("the answer", h1.send_request(req)).await {
            Ok(resp) => within("the body", resp.into_body().collect()).await.ok().map(|b| b.to_bytes()),
            Err(_) => None,
        };
        assert_eq!(whole, None, "{path}: the client must not take a cut answer for a whole one");
        // And over HTTP/2, the stream is reset rather than ended.
        let mut h2 = h.h2().await;
        let whole = match within("the answer", h2.send_request(get(&h.url(path)))).await {
            Ok(resp) => within("the body", resp.into_body().collect()).await.ok().map(|b| b.to_bytes()),
            Err(_) => None,
        };
        assert_eq!(whole, None, "{path} over HTTP/2");
    }
}

#[tokio::test]
async fn a_connection_that_said_close_is_not_kept() {
    let h = harness().await;
    let mut h1 = h.h1().await;
    let (status, conn, _) = ask(&mut h1, "GET", "/close").await;
    assert_eq!(status, 200);
    let (status, next, _) = ask(&mut h1, "GET", "/plain").await;
    assert_eq!(status, 200);
    assert_ne!(next, conn);
}

/// A body that does not say how long it is (as a browser's streamed upload).
struct Unsized(Full<Bytes>);

impl http_body::Body for Unsized {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }
}

#[tokio::test]
async fn http2_bodies_go_chunked_or_with_their_length_and_an_empty_post_says_zero() {
    let upstream = Upstream::recording().start().await;
    let h = Harness::in_front_of(upstream, ProxyToml::new()).await;
    let mut h2 = h.client().h2_for::<Unsized>().await;
    let post = |body: &'static str, length: Option<usize>| {
        let mut req = Request::post(h.url("/api/ciphers"));
        if let Some(n) = length {
            req = req.header("content-length", n);
        }
        req.body(Unsized(Full::new(Bytes::from_static(body.as_bytes())))).unwrap()
    };
    for (req, want) in [
        // No length said: chunked.
        (post("hello", None), "transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        (post("hello", Some(5)), "content-length: 5\r\n\r\nhello"),
    ] {
        let before = h.upstream.received().len();
        within("the client is ready", h2.ready()).await.unwrap();
        let resp = within("the answer", h2.send_request(req)).await.unwrap();
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
        let seen = String::from_utf8_lossy(&h.upstream.received()[before..]).into_owned();
        assert!(seen.ends_with(want), "{want:?} in {seen:?}");
        assert_eq!(
            seen.matches("content-length").count() + seen.matches("transfer-encoding").count(),
            1,
            "{seen}"
        );
    }
    // A POST whose HEADERS end the stream: a length of zero.
    let mut h2 = h.h2().await;
    let before = h.upstream.received().len();
    let req = Request::post(h.url("/api/ciphers")).body(Full::default()).unwrap();
    let resp = within("the answer", h2.send_request(req)).await.unwrap();
    body_bytes(resp).await;
    let seen = String::from_utf8_lossy(&h.upstream.received()[before..]).into_owned();
    assert!(seen.ends_with("content-length: 0\r\n\r\n"), "{seen:?}");
}

#[tokio::test]
async fn a_request_body_vaultwarden_stops_reading_ends_in_504_not_a_hang() {
    // Reads the head, then nothing: the upload fills the socket buffers and stops.
    let silent = Upstream::script(|mut conn| async move {
        conn.read_head().await;
        std::future::pending::<()>().await;
    })
    .start()
    .await;
    let toml = ProxyToml::new().extra("[timeouts]\nupstream_response = \"500ms\"");
    let h = Harness::in_front_of(silent, toml).await;
    let mut h1 = h.h1().await;
    let body = Bytes::from(vec![b'x'; 64 << 20]);
    let req = Request::post("/api/ciphers/1/attachment/2")
        .header("host", "localhost")
        .body(Full::new(body))
        .unwrap();
    let resp = within("an answer to an upload nobody reads", h1.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 504);
}

/// Every connection answers its first request and closes on reading its
/// second, unanswered: a kept connection that Vaultwarden ends just as a
/// request goes out on it.
async fn one_answer_per_connection() -> Upstream {
    Upstream::script(|mut conn| async move {
        use tokio::io::AsyncWriteExt;
        let head = conn.read_head().await;
        if head.is_empty() {
            return;
        }
        let answer = format!("HTTP/1.1 200 OK\r\nx-conn: {}\r\ncontent-length: 2\r\n\r\nok", conn.number());
        if conn.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        conn.read_head().await;
    })
    .start()
    .await
}

#[tokio::test]
async fn a_kept_connection_that_closes_unanswered_retries_a_get_but_never_a_post() {
    let h = Harness::in_front_of(
        one_answer_per_connection().await,
        ProxyToml::new().extra("[limits]\nworkers = 1"),
    )
    .await;
    let mut h1 = h.h1().await;
    assert_eq!(ask(&mut h1, "GET", "/api/sync").await.0, 200);
    // Vaultwarden may have acted on a POST it did not answer: never sent twice.
    let (status, _, _) = ask(&mut h1, "POST", "/api/ciphers").await;
    assert_eq!(status, 502);
    let posts = h.upstream.heads().iter().filter(|head| head.starts_with("POST /api/ciphers ")).count();
    assert_eq!(posts, 1, "{:?}", h.upstream.heads());
    assert_eq!(ask(&mut h1, "GET", "/api/sync").await.0, 200);
    // A GET is safe to send again, on a new connection.
    let (status, conn, body) = ask(&mut h1, "GET", "/api/accounts/revision-date").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"ok"[..]));
    let gets =
        h.upstream.heads().iter().filter(|head| head.starts_with("GET /api/accounts/revision-date ")).count();
    assert_eq!(gets, 2, "sent, unanswered, sent again: {:?}", h.upstream.heads());
    assert_eq!(conn, "2");
}

/// Sockets in CLOSE_WAIT (the peer closed, we have not) whose peer is `port`.
fn half_closed_to(port: u16) -> usize {
    tcp_sockets(End::Remote, port, "08")
}

#[tokio::test]
async fn an_idle_connection_vaultwarden_closes_is_let_go_without_waiting_for_a_request() {
    // Closes each connection 50 ms after its first answer, as Vaultwarden's
    // keep-alive ends an idle one.
    let upstream = Upstream::numbering().close_after_first().start().await;
    let port = upstream.addr.port();
    let h = Harness::in_front_of(upstream, ProxyToml::new()).await;
    let mut h1 = h.h1().await;
    let (status, _, _) = ask(&mut h1, "GET", "/api/sync").await;
    assert_eq!(status, 200);
    until("Vaultwarden's close to be seen", || half_closed_to(port) == 1).await;
    // No request comes: the proxy's sweep closes its side all the same.
    until("the half-closed connection to be let go", || half_closed_to(port) == 0).await;
}
