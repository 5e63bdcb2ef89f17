//! Every upstream the tests put behind the proxy, from one builder:
//!
//! - [`Upstream::standin`]: examples/support/standin.rs, Vaultwarden as far
//!   as a proxy can tell (echo, hubs, downloads, pushes);
//! - [`Upstream::recording`]: hyper's HTTP/1.1 server answering every
//!   request `200 "alive"` once it has read the body;
//! - [`Upstream::numbering`]: raw bytes, answers with the number of the
//!   connection a request came on (`/slow`, `/big`, `/early`);
//! - [`Upstream::script`]: raw bytes, a script of the test's own per
//!   connection (hub handshakes, answers the proxy must not splice).
//!
//! All but the stand-in record every byte each connection sent them, the
//! request heads they read and how many connections they accepted: enough
//! to assert that nothing at all reached them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::standin::StandIn;

type Script = Arc<dyn Fn(RawConn) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

enum Behaviour {
    StandIn { ping_every: Duration },
    Recording,
    Numbering { close_after_first: bool },
    Script(Script),
}

/// What to start; [`UpstreamBuilder::start`] starts it.
pub struct UpstreamBuilder {
    behaviour: Behaviour,
    addr: SocketAddr,
}

/// A running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    kind: Kind,
}

enum Kind {
    StandIn(StandIn),
    Recorded(Arc<Record>),
}

/// What a recorded upstream received.
#[derive(Default)]
struct Record {
    connections: Mutex<Vec<Arc<Connection>>>,
    heads: Mutex<Vec<String>>,
    complete: Mutex<Vec<String>>,
}

/// One connection to a recorded upstream: what it sent, and whether it has ended.
#[derive(Default)]
pub struct Connection {
    bytes: Mutex<Vec<u8>>,
    ended: AtomicBool,
}

impl Connection {
    /// Every byte the proxy sent on this connection so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Whether the upstream is done with it (closed, or its script returned).
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }
}

impl Upstream {
    /// The stand-in Vaultwarden, pinging hubs every 15 s as Vaultwarden does.
    pub fn standin() -> UpstreamBuilder {
        UpstreamBuilder::new(Behaviour::StandIn { ping_every: Duration::from_secs(15) })
    }

    /// hyper's HTTP/1.1 server: reads each request's body to the end (noting
    /// its path as complete if it got all of it) and answers `200 "alive"`.
    pub fn recording() -> UpstreamBuilder {
        UpstreamBuilder::new(Behaviour::Recording)
    }

    /// Raw HTTP/1.1 that answers with the number of the TCP connection a
    /// request came on (0, 1, 2, …), after its head:
    /// - `/slow`: after 300 ms, so that concurrent requests overlap;
    /// - `/big`: followed by 4 MiB of padding, more than any socket buffer holds;
    /// - `/early`: at once, then reads nothing more on that connection (as a
    ///   server answering before it has read the request body).
    pub fn numbering() -> UpstreamBuilder {
        UpstreamBuilder::new(Behaviour::Numbering { close_after_first: false })
    }

    /// `script` runs for every connection, on its bytes (recorded as they are read).
    pub fn script<F, Fut>(script: F) -> UpstreamBuilder
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        UpstreamBuilder::new(Behaviour::Script(Arc::new(move |conn| Box::pin(script(conn)))))
    }

    fn record(&self, what: &str) -> &Record {
        match &self.kind {
            Kind::Recorded(record) => record,
            Kind::StandIn(_) => panic!("the stand-in does not record {what}: use Upstream::recording()"),
        }
    }

    fn standin_only(&self, what: &str) -> &StandIn {
        match &self.kind {
            Kind::StandIn(s) => s,
            Kind::Recorded(_) => panic!("only the stand-in can {what}"),
        }
    }

    /// Request heads that arrived, whatever became of them.
    pub fn requests(&self) -> usize {
        match &self.kind {
            Kind::StandIn(s) => s.requests.load(Ordering::SeqCst),
            Kind::Recorded(r) => r.heads.lock().unwrap().len(),
        }
    }

    /// HTTP connections open right now (the stand-in stops counting one
    /// upgraded to a hub at its 101).
    pub fn open(&self) -> usize {
        match &self.kind {
            Kind::StandIn(s) => s.open.load(Ordering::SeqCst),
            Kind::Recorded(r) => r.connections.lock().unwrap().iter().filter(|c| !c.ended()).count(),
        }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.record("connections").connections.lock().unwrap().len()
    }

    /// Each accepted connection, in the order they came.
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        self.record("connections").connections.lock().unwrap().clone()
    }

    /// Every byte every connection sent, one connection after another.
    pub fn received(&self) -> Vec<u8> {
        self.connections().iter().flat_map(|c| c.bytes()).collect()
    }

    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received()).into_owned()
    }

    /// The request heads read: `METHOD target` for [`Upstream::recording`],
    /// the whole head for the raw ones.
    pub fn heads(&self) -> Vec<String> {
        self.record("heads").heads.lock().unwrap().clone()
    }

    /// Paths of the requests whose body [`Upstream::recording`] read to the end.
    pub fn complete(&self) -> Vec<String> {
        self.record("complete requests").complete.lock().unwrap().clone()
    }

    /// Pushes a notification frame to every hub (stand-in only).
    pub fn push(&self, frame: Vec<u8>) {
        self.standin_only("push to hubs").push(frame)
    }

    /// Dies like a restarted Vaultwarden: the listener and every connection
    /// closed at once (stand-in only).
    pub fn kill(self) {
        match self.kind {
            Kind::StandIn(s) => s.kill(),
            Kind::Recorded(_) => panic!("only the stand-in can be killed"),
        }
    }
}

impl UpstreamBuilder {
    fn new(behaviour: Behaviour) -> UpstreamBuilder {
        UpstreamBuilder { behaviour, addr: "127.0.0.1:0".parse().unwrap() }
    }

    /// Listens on `addr` (a port it had before, say) instead of any port.
    pub fn on(mut self, addr: SocketAddr) -> UpstreamBuilder {
        self.addr = addr;
        self
    }

    /// How often the stand-in pings its hubs.
    pub fn ping_every(mut self, every: Duration) -> UpstreamBuilder {
        match &mut self.behaviour {
            Behaviour::StandIn { ping_every } => *ping_every = every,
            _ => panic!("only the stand-in pings"),
        }
        self
    }

    /// [`Upstream::numbering`] closes each connection shortly after its first
    /// answer without saying so, as a server does when its keep-alive runs out.
    pub fn close_after_first(mut self) -> UpstreamBuilder {
        match &mut self.behaviour {
            Behaviour::Numbering { close_after_first } => *close_after_first = true,
            _ => panic!("close_after_first is for Upstream::numbering"),
        }
        self
    }

    pub async fn start(self) -> Upstream {
        let script = match self.behaviour {
            Behaviour::StandIn { ping_every } => {
                let s = StandIn::start(self.addr, ping_every).await.unwrap();
                return Upstream { addr: s.addr, kind: Kind::StandIn(s) };
            }
            Behaviour::Recording => None,
            Behaviour::Numbering { close_after_first } => {
                let script: Script = Arc::new(move |conn| Box::pin(numbering(conn, close_after_first)));
                Some(script)
            }
            Behaviour::Script(script) => Some(script),
        };
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Record::default());
        let rec = record.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = Arc::new(Connection::default());
                let number = {
                    let mut all = rec.connections.lock().unwrap();
                    all.push(conn.clone());
                    all.len() - 1
                };
                let io = Recorded { tcp, conn: conn.clone() };
                let (rec, script) = (rec.clone(), script.clone());
                tokio::spawn(async move {
                    match script {
                        Some(script) => script(RawConn { io, number, record: rec }).await,
                        None => serve_recording(io, rec).await,
                    }
                    conn.ended.store(true, Ordering::SeqCst);
                });
            }
        });
        Upstream { addr, kind: Kind::Recorded(record) }
    }
}

async fn serve_recording(io: Recorded, record: Arc<Record>) {
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            record.heads.lock().unwrap().push(format!("{} {}", req.method(), req.uri()));
            let path = req.uri().path().to_string();
            if req.into_body().collect().await.is_ok() {
                record.complete.lock().unwrap().push(path);
            }
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                b"\"alive\"",
            ))))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).await;
}

async fn numbering(mut conn: RawConn, close_after_first: bool) {
    let number = conn.number();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
            pending.drain(..end + 4);
            conn.record.heads.lock().unwrap().push(head.clone());
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let mut body = number.to_string().into_bytes();
            match path.as_str() {
                "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
                "/big" => body.resize(4 << 20, b'.'),
                _ => {}
            }
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            if conn.write_all(head.as_bytes()).await.is_err() || conn.write_all(&body).await.is_err() {
                return;
            }
            if path == "/early" {
                std::future::pending::<()>().await;
            }
            if close_after_first {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        }
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// A connection to a raw upstream, as its script sees it: reads are recorded.
pub struct RawConn {
    io: Recorded,
    number: usize,
    record: Arc<Record>,
}

impl RawConn {
    /// Which connection this is (0 for the first accepted).
    pub fn number(&self) -> usize {
        self.number
    }

    /// Reads a request head up to the blank line (byte by byte: nothing past
    /// it is consumed) and notes it; what came before EOF if it ends first.
    pub async fn read_head(&mut self) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if self.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        self.record.heads.lock().unwrap().push(head.clone());
        head
    }

    /// Reads (and records) everything else until the proxy's side ends.
    pub async fn read_rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = self.read_to_end(&mut rest).await;
        rest
    }
}

impl AsyncRead for RawConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for RawConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A TCP stream whose every byte read is appended to its [`Connection`].
struct Recorded {
    tcp: TcpStream,
    conn: Arc<Connection>,
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        self.conn.bytes.lock().unwrap().extend_from_slice(&buf.filled()[before..]);
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
