//! A stand-in for Vaultwarden, as far as a proxy can tell: plain HTTP/1.1,
//! a REST side that echoes what it received, and SignalR hubs that behave
//! like Vaultwarden's (handshake, 15 s pings, echo, pushed notifications).
//! Shared by `examples/upstream.rs` and the integration tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Body = BoxBody<Bytes, Infallible>;

/// SignalR's record separator, ending every JSON handshake message.
pub const RS: u8 = 0x1e;

/// A running stand-in upstream.
pub struct StandIn {
    pub addr: SocketAddr,
    notify: broadcast::Sender<Vec<u8>>,
    /// How many request heads have arrived, whatever became of them.
    pub requests: Arc<AtomicUsize>,
    /// How many HTTP connections are open right now (one upgraded to a hub
    /// stops counting at its 101).
    pub open: Arc<AtomicUsize>,
    down: tokio::sync::watch::Sender<bool>,
}

impl StandIn {
    /// Starts on `addr` (port 0 for any). `ping_every` is Vaultwarden's 15 s in real life.
    pub async fn start(addr: SocketAddr, ping_every: Duration) -> std::io::Result<StandIn> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (notify, _) = broadcast::channel(64);
        let requests = Arc::new(AtomicUsize::new(0));
        let (down, _) = tokio::sync::watch::channel(false);
        let hub = Hub { notify: notify.clone(), ping_every, requests: requests.clone(), down: down.clone() };
        let mut stop = down.subscribe();
        let open = Arc::new(AtomicUsize::new(0));
        let counting = open.clone();
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = dead(&mut stop) => return,
                    accepted = listener.accept() => match accepted { Ok((tcp, _)) => tcp, Err(_) => return },
                };
                let hub = hub.clone();
                let mut stop = hub.down.subscribe();
                let open = counting.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let hub = hub.clone();
                        async move { Ok::<_, Infallible>(hub.route(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = dead(&mut stop) => {}
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(StandIn { addr, notify, requests, open, down })
    }

    /// Dies like a restarted Vaultwarden: the listener and every connection,
    /// hubs included, are closed at once.
    pub fn kill(self) {
        self.down.send_replace(true);
    }

    /// Pushes a notification frame to every connected hub client.
    pub fn push(&self, frame: Vec<u8>) {
        let _ = self.notify.send(frame);
    }
}

#[derive(Clone)]
struct Hub {
    notify: broadcast::Sender<Vec<u8>>,
    ping_every: Duration,
    requests: Arc<AtomicUsize>,
    down: tokio::sync::watch::Sender<bool>,
}

impl Hub {
    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (_, "/notifications/hub") | (_, "/notifications/anonymous-hub") => self.upgrade(req),
            (&Method::GET, "/alive") => text(StatusCode::OK, "\"alive\""),
            (&Method::GET, "/hub-test.html") => html(HUB_TEST_PAGE),
            (&Method::GET, "/download") => download(query_u64(&req, "size").unwrap_or(0)),
            (&Method::GET, "/slow") => {
                tokio::time::sleep(Duration::from_millis(query_u64(&req, "ms").unwrap_or(0))).await;
                text(StatusCode::OK, "slow")
            }
            (&Method::POST, "/api/ciphers") => {
                let echoed = echo(req).await;
                let _ = self.notify.send(notification(1, "ReceiveMessage"));
                echoed
            }
            _ => echo(req).await,
        }
    }

    /// Vaultwarden's rules: 400 without the upgrade headers, 401 without a token
    /// on the authenticated hub, else 101 and the SignalR conversation.
    fn upgrade(&self, mut req: Request<Incoming>) -> Response<Body> {
        let h = req.headers();
        let has = |name: header::HeaderName, token: &str| {
            h.get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        let key = h.get(header::SEC_WEBSOCKET_KEY).cloned();
        let ok = has(header::CONNECTION, "upgrade")
            && has(header::UPGRADE, "websocket")
            && h.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
        let Some(key) = key.filter(|_| ok) else {
            return text(StatusCode::BAD_REQUEST, "Can \"Upgrade\" only to \"WebSocket\".");
        };
        let query = req.uri().query().unwrap_or("");
        let anonymous = req.uri().path().ends_with("anonymous-hub");
        let has_token = query.split('&').any(|p| p.starts_with("access_token=") && p.len() > 13)
            || h.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes().starts_with(b"Bearer "));
        if !anonymous && !has_token {
            return text(StatusCode::UNAUTHORIZED, "no token");
        }
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        let hub = self.clone();
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                hub.converse(ws).await;
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            // Vaultwarden 1.37.2 answers its 101 with these four (and
            // `server`, `content-length: 0`, `date`).
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Full::new(Bytes::new()).boxed())
            .unwrap()
    }

    async fn converse<S>(&self, mut ws: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut pushes = self.notify.subscribe();
        let mut ping = tokio::time::interval(self.ping_every);
        ping.tick().await;
        let mut down = self.down.subscribe();
        loop {
            tokio::select! {
                _ = dead(&mut down) => return,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) if t.as_bytes().last() == Some(&RS) => {
                        // SignalR handshake: answer `{}` + RS as a binary frame.
                        if ws.send(Message::binary(b"{}\x1e".to_vec())).await.is_err() { return; }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        if ws.send(Message::Binary(b)).await.is_err() { return; }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
                frame = pushes.recv() => match frame {
                    Ok(frame) => if ws.send(Message::binary(frame)).await.is_err() { return; },
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
                _ = ping.tick() => {
                    if ws.send(Message::Ping(Bytes::from_static(b"vw"))).await.is_err() { return; }
                }
            }
        }
    }
}

fn html(body: &'static str) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .unwrap()
}

/// A page that does in a browser what the web vault does: open the hub
/// WebSocket on the page's own origin, do the SignalR handshake, send a
/// SignalR ping, create a cipher over REST and wait for its notification.
/// Progress goes to `window.hubEvents`; `window.hubDone` is set once both the
/// REST answer and the notification are in. Their order is not fixed: on one
/// HTTP/2 connection the pushed notification may overtake the REST response.
const HUB_TEST_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>vaultgate hub test</title>
<pre id="log"></pre>
<script>
window.hubEvents = [];
function note(e) { window.hubEvents.push(e); document.getElementById("log").textContent += e + "\n";
  if (window.hubEvents.includes("notification") && window.hubEvents.some((x) => x.startsWith("rest "))) window.hubDone = true; }
const ws = new WebSocket(`wss://${location.host}/notifications/hub?access_token=browser-token`);
ws.binaryType = "arraybuffer";
ws.onopen = () => { note("open"); ws.send('{"protocol":"messagepack","version":1}\x1e'); };
ws.onerror = () => note("error");
ws.onclose = (e) => note("close " + e.code);
ws.onmessage = async (m) => {
  const bytes = new Uint8Array(m.data);
  if (bytes.length === 3 && bytes[0] === 0x7b && bytes[1] === 0x7d && bytes[2] === 0x1e) {
    note("handshake");
    ws.send(new Uint8Array([0x02, 0x91, 0x06]));
    return;
  }
  if (bytes.length === 3 && bytes[2] === 0x06) { note("ping-echo");
    const r = await fetch("/api/ciphers", { method: "POST", body: "{}", headers: { "content-type": "application/json" } });
    note("rest " + r.status);
    return;
  }
  const text = new TextDecoder("latin1").decode(bytes);
  if (text.includes("ReceiveMessage")) note("notification");
};
</script>
"#;

/// Resolves once the stand-in has been killed (the guard is dropped at once,
/// so this can sit in a `select!` of a `Send` task).
async fn dead(down: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = down.wait_for(|d| *d).await;
}

fn query_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .unwrap()
}

/// Answers with JSON describing exactly what arrived: method, target, version,
/// headers in order, body length and SHA-256. The body is hashed as it streams.
async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
            ctx.update(data);
        }
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "target": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers_json(&parts.headers),
        "body_len": len,
        "body_sha256": hex(ctx.finish().as_ref()),
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-frame-options", "SAMEORIGIN")
        .header("x-upstream-only", "kept")
        .header(header::CONNECTION, "x-upstream-hop")
        .header("x-upstream-hop", "must be stripped")
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::from(json.to_string())).boxed())
        .unwrap()
}

fn headers_json(h: &HeaderMap) -> serde_json::Value {
    h.iter().map(|(k, v)| serde_json::json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())])).collect()
}

/// The deterministic byte at `offset` of every download (tests recompute it).
pub fn pattern_byte(offset: u64) -> u8 {
    (offset.wrapping_mul(31) ^ (offset >> 8)) as u8
}

/// Streams `size` pattern bytes in 64 KiB chunks without holding them all.
fn download(size: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let chunks = futures_util::stream::iter((0..size.div_ceil(CHUNK)).map(move |i| {
        let start = i * CHUNK;
        let end = (start + CHUNK).min(size);
        let data: Vec<u8> = (start..end).map(pattern_byte).collect();
        Ok::<_, Infallible>(Frame::data(Bytes::from(data)))
    }));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// --- SignalR MessagePack framing: just enough of it for the hub ---

/// A notification as Vaultwarden frames it: VarInt length, then
/// `[1, {}, null, target, [{ContextId, Type, Payload}]]`.
pub fn notification(kind: u8, target: &str) -> Vec<u8> {
    let mut m = vec![0x95, 0x01, 0x80, 0xc0];
    msgpack_str(&mut m, target);
    m.push(0x91);
    m.push(0x83);
    msgpack_str(&mut m, "ContextId");
    m.push(0xc0);
    msgpack_str(&mut m, "Type");
    m.push(kind & 0x7f);
    msgpack_str(&mut m, "Payload");
    m.push(0x81);
    msgpack_str(&mut m, "Id");
    msgpack_str(&mut m, "2b3e5ba1-54c5-4f2a-9b5f-5fb9e1e3d2a4");
    let mut framed = Vec::with_capacity(m.len() + 5);
    let mut len = m.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            framed.push(byte);
            break;
        }
        framed.push(byte | 0x80);
    }
    framed.extend(m);
    framed
}

fn msgpack_str(out: &mut Vec<u8>, s: &str) {
    if s.len() < 32 {
        out.push(0xa0 | s.len() as u8);
    } else {
        out.push(0xd9);
        out.push(s.len() as u8);
    }
    out.extend_from_slice(s.as_bytes());
}

/// For display: the target name and `Type` of a framed notification, if it is one.
pub fn describe(frame: &[u8]) -> Option<(String, u8)> {
    let start = frame.iter().position(|b| b & 0x80 == 0)? + 1;
    let m = frame.get(start..)?;
    if m.get(..4)? != [0x95, 0x01, 0x80, 0xc0] {
        return None;
    }
    let (target, rest) = read_str(&m[4..])?;
    let type_at = rest.windows(5).position(|w| w == b"\xa4Type")? + 5;
    Some((target, *rest.get(type_at)?))
}

fn read_str(m: &[u8]) -> Option<(String, &[u8])> {
    let (len, at) = match *m.first()? {
        b if b & 0xe0 == 0xa0 => ((b & 0x1f) as usize, 1),
        0xd9 => (*m.get(1)? as usize, 2),
        _ => return None,
    };
    let s = std::str::from_utf8(m.get(at..at + len)?).ok()?;
    Some((s.to_string(), &m[at + len..]))
}
