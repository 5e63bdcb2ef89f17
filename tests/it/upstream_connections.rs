//! Which upstream connection a request travels on: idle connections are
//! shared by all client connections and reused, never by two requests at
//! once; a connection goes back only when its exchange is whole, and one
//! Vaultwarden has closed is replaced without the client noticing.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::Request;
use tokio::sync::mpsc;

/// The proxy in front of an [`Upstream::numbering`], and how many
/// connections that upstream has accepted.
struct Setup {
    ca: TestCa,
    proxy: vaultgate::Server,
    addr: std::net::SocketAddr,
    upstream: Upstream,
}

impl Setup {
    /// With one worker unless said otherwise: which worker takes a client
    /// connection is the kernel's choice, and each keeps its own idle ones.
    async fn start(close_after_first: bool) -> Setup {
        Setup::with_workers(close_after_first, 1).await
    }

    async fn with_workers(close_after_first: bool, workers: usize) -> Setup {
        let numbering = Upstream::numbering();
        let numbering = if close_after_first { numbering.close_after_first() } else { numbering };
        let upstream = numbering.start().await;
        let ca = TestCa::new();
        let (proxy, addr) = ProxyToml::new()
            .upstream(upstream.addr)
            .extra(&format!("[limits]\nworkers = {workers}"))
            .certificate(&ca)
            .start(ca.dir.path())
            .await;
        Setup { ca, proxy, addr, upstream }
    }

    async fn h1_client<B>(&self) -> hyper::client::conn::http1::SendRequest<B>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.ca.client(self.addr).h1_for().await
    }

    async fn h2_client(&self) -> Http2 {
        self.ca.client(self.addr).h2().await
    }

    fn accepted(&self) -> usize {
        self.upstream.accepted()
    }
}

/// The number of the upstream connection that answered a GET of `path`.
async fn upstream_connection_of(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    path: &str,
) -> String {
    sender.ready().await.unwrap();
    let resp = sender.send_request(get(path)).await.unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8(body_bytes(resp).await.to_vec()).unwrap()
}

/// A request body sent chunk by chunk as the test pushes them.
struct Chunks(mpsc::Receiver<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn an_idle_upstream_connection_serves_the_next_request_whichever_client_sends_it() {
    let setup = Setup::start(false).await;
    let mut first = setup.h1_client().await;
    let mut second = setup.h1_client().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(upstream_connection_of(&mut first, "/api/sync").await);
        seen.push(upstream_connection_of(&mut second, "/api/sync").await);
    }
    assert_eq!(seen, ["0"; 6], "one after the other, all on one upstream connection");
    assert_eq!(setup.accepted(), 1);
    setup.proxy.shutdown().await;
}

#[tokio::test]
async fn each_worker_reuses_its_own_idle_connections() {
    let setup = Setup::with_workers(false, 2).await;
    let mut seen = std::collections::BTreeSet::new();
    // One request each on sixteen client connections, one after the other:
    // each worker opens at most one upstream connection and reuses it.
    for _ in 0..16 {
        let mut client = setup.h1_client().await;
        seen.insert(upstream_connection_of(&mut client, "/api/sync").await);
    }
    let accepted = setup.accepted();
    assert!((1..=2).contains(&accepted), "at most one upstream connection per worker: {accepted}");
    assert_eq!(seen.len(), accepted, "{seen:?}");
    setup.proxy.shutdown().await;
}

#[tokio::test]
async fn requests_in_flight_together_never_share_an_upstream_connection() {
    let setup = Setup::start(false).await;
    let client = setup.h2_client().await;
    let url = format!("https://localhost:{}/slow", setup.addr.port());
    let wave = || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let requests = (0..8).map(|_| {
                let mut client = client.clone();
                let url = url.clone();
                tokio::spawn(async move {
                    let resp = client.send_request(get(&url)).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    String::from_utf8(body_bytes(resp).await.to_vec()).unwrap()
                })
            });
            let mut numbers = Vec::new();
            for r in requests.collect::<Vec<_>>() {
                numbers.push(r.await.unwrap());
            }
            numbers.sort();
            numbers
        }
    };
    let first = wave().await;
    let mut distinct = first.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "eight requests at once, eight upstream connections: {first:?}");
    let second = wave().await;
    assert_eq!(second, first, "the next eight reuse them");
    assert_eq!(setup.accepted(), 8);
    setup.proxy.shutdown().await;
}

#[tokio::test]
async fn an_upstream_connection_closed_by_vaultwarden_is_replaced_without_an_error() {
    let setup = Setup::start(true).await;
    let mut client = setup.h1_client().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(upstream_connection_of(&mut client, "/api/sync").await);
        // Long enough for the upstream to have closed the connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(seen, ["0", "1", "2"], "a new upstream connection each time, and every answer a 200");
    assert_eq!(setup.accepted(), 3);
    setup.proxy.shutdown().await;
}

#[tokio::test]
async fn a_download_the_client_abandons_is_not_continued_by_the_next_request() {
    let setup = Setup::start(false).await;
    let mut downloader = setup.h1_client().await;
    downloader.ready().await.unwrap();
    let resp = downloader.send_request(get("/big")).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The client reads the head and goes away; most of the 4 MiB is unsent.
    drop((resp, downloader));
    let mut next = setup.h1_client().await;
    assert_eq!(
        upstream_connection_of(&mut next, "/api/sync").await,
        "1",
        "a new upstream connection, not the rest of the abandoned download"
    );
    assert_eq!(upstream_connection_of(&mut next, "/api/sync").await, "1", "which is then kept");
    setup.proxy.shutdown().await;
}

#[tokio::test]
async fn an_answer_before_the_whole_request_body_does_not_hold_up_the_next_request() {
    let setup = Setup::start(false).await;
    let mut uploader = setup.h1_client::<Chunks>().await;
    let (chunks, body) = mpsc::channel(1);
    chunks.send(Bytes::from_static(b"first part")).await.unwrap();
    let req = Request::post("/early")
        .header("host", "localhost")
        .header("content-length", "1000000")
        .body(Chunks(body))
        .unwrap();
    uploader.ready().await.unwrap();
    let resp = uploader.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(body_bytes(resp).await, "0");
    // The upload is still open (`chunks` is alive) when the next request
    // comes: it must not be queued on that connection.
    let mut next = setup.h1_client().await;
    let answer =
        tokio::time::timeout(Duration::from_secs(10), upstream_connection_of(&mut next, "/api/sync"))
            .await
            .expect("the next request is answered, not stuck behind the unfinished upload");
    assert_eq!(answer, "1");
    drop(chunks);
    setup.proxy.shutdown().await;
}
