//! Every client connection the tests open to the proxy, from one
//! [`Connector`]: raw TLS bytes, HTTP/1.1 and HTTP/2 (hyper), hub WebSockets
//! (tokio-tungstenite), and raw bytes to the plain-HTTP listeners.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::TestCa;

pub type Http1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
pub type Http2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;
pub type Ws = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How to reach the proxy: its address, the name asked for (SNI and
/// `Host`), the roots trusted, and optionally the local address to connect
/// from and a small receive buffer.
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    name: String,
    roots: Arc<rustls::RootCertStore>,
    source: Option<IpAddr>,
    recv_buffer: Option<u32>,
    /// A client certificate chain and its key, presented when asked.
    identity: Option<Arc<(Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>)>>,
}

impl Connector {
    /// To `addr` as `localhost`, trusting the test CA.
    pub fn new(ca: &TestCa, addr: SocketAddr) -> Connector {
        Connector::trusting(ca.ca_der.clone(), addr, "localhost")
    }

    /// To `addr` as `name`, trusting only `root`.
    pub fn trusting(root: CertificateDer<'static>, addr: SocketAddr, name: &str) -> Connector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).unwrap();
        Connector {
            addr,
            name: name.to_string(),
            roots: Arc::new(roots),
            source: None,
            recv_buffer: None,
            identity: None,
        }
    }

    /// Connects from `source` (another loopback address, `127.0.0.2`).
    pub fn from(mut self, source: &str) -> Connector {
        self.source = Some(source.parse().unwrap());
        self
    }

    /// Presents `chain` (leaf first) with `key` when the server asks for a
    /// client certificate.
    pub fn with_client_cert(
        mut self,
        (chain, key): (Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>),
    ) -> Connector {
        self.identity = Some(Arc::new((chain, key)));
        self
    }

    /// Sets the socket's receive buffer before connecting.
    pub fn recv_buffer(mut self, bytes: u32) -> Connector {
        self.recv_buffer = Some(bytes);
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://NAME:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.name, self.addr.port())
    }

    pub fn config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let builder =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(self.roots.clone());
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder.with_client_auth_cert(id.0.clone(), id.1.clone_key()).unwrap(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TCP connection (not yet TLS).
    pub async fn try_tcp(&self) -> std::io::Result<TcpStream> {
        if self.source.is_none() && self.recv_buffer.is_none() {
            return TcpStream::connect(self.addr).await;
        }
        let socket = if self.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(source) = self.source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        if let Some(bytes) = self.recv_buffer {
            socket.set_recv_buffer_size(bytes)?;
        }
        socket.connect(self.addr).await
    }

    /// A TLS connection offering `alpn`, or the error of TCP or the handshake.
    pub async fn try_tls(&self, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.try_tcp().await?;
        tokio_rustls::TlsConnector::from(self.config(alpn))
            .connect(ServerName::try_from(self.name.clone()).unwrap(), tcp)
            .await
    }

    pub async fn tls(&self, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        self.try_tls(alpn).await.unwrap_or_else(|e| panic!("TLS to {} as {}: {e}", self.addr, self.name))
    }

    /// HTTP/1.1 (ALPN `http/1.1`), upgrades allowed.
    pub async fn h1(&self) -> Http1 {
        self.h1_for().await
    }

    /// HTTP/1.1 with request bodies of type `B` (streamed ones).
    pub async fn h1_for<B>(&self) -> hyper::client::conn::http1::SendRequest<B>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        h1_over(self.tls(&[b"http/1.1"]).await).await.unwrap()
    }

    /// HTTP/1.1, or the error of TCP, TLS or the handshake.
    pub async fn try_h1(&self) -> Result<Http1, BoxError> {
        h1_over(self.try_tls(&[b"http/1.1"]).await?).await
    }

    /// HTTP/2 (ALPN `h2`, checked).
    pub async fn h2(&self) -> Http2 {
        self.h2_with_connection().await.0
    }

    /// HTTP/2 with request bodies of type `B`.
    pub async fn h2_for<B>(&self) -> hyper::client::conn::http2::SendRequest<B>
    where
        B: Body + Unpin + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let tls = self.tls(&[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the proxy negotiates h2");
        h2_over(tls).await.0
    }

    /// HTTP/2, and the task driving the connection (it ends when the
    /// connection does).
    pub async fn h2_with_connection(&self) -> (Http2, JoinHandle<hyper::Result<()>>) {
        let tls = self.tls(&[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the proxy negotiates h2");
        h2_over(tls).await
    }

    /// A WebSocket upgrade to `wss://NAME:PORT{path_and_query}` over HTTP/1.1,
    /// with the answer or tungstenite's error (an HTTP refusal is `Error::Http`).
    pub async fn try_ws(
        &self,
        path_and_query: &str,
    ) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
        ws_over(self.tls(&[b"http/1.1"]).await, &self.ws_url(path_and_query)).await
    }

    /// `wss://NAME:PORT{path_and_query}`.
    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("wss://{}:{}{path_and_query}", self.name, self.addr.port())
    }

    /// As [`Connector::try_ws`]; asserts the upgrade succeeded with a 101.
    pub async fn ws(&self, path_and_query: &str) -> Ws {
        let (ws, resp) = self
            .try_ws(path_and_query)
            .await
            .unwrap_or_else(|e| panic!("hub upgrade to {path_and_query}: {e}"));
        assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
        ws
    }

    /// Sends raw bytes on a fresh HTTP/1.1 TLS connection and returns
    /// everything the proxy answers until it closes (or 10 s pass).
    pub async fn exchange(&self, bytes: &[u8]) -> String {
        let mut tls = self.tls(&[b"http/1.1"]).await;
        let _ = tls.write_all(bytes).await;
        let _ = tls.flush().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends raw bytes on a fresh HTTP/1.1 TLS connection and returns the
    /// status of the answer (0 for none within 10 s), without waiting for the
    /// connection to close.
    pub async fn status_of(&self, bytes: &[u8]) -> u16 {
        let mut tls = self.tls(&[b"http/1.1"]).await;
        tls.write_all(bytes).await.unwrap();
        let mut line = [0u8; 12];
        match tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut line)).await {
            Ok(Ok(_)) => raw_status(&String::from_utf8_lossy(&line)),
            _ => 0,
        }
    }

    /// Sends raw bytes on a fresh HTTP/1.1 TLS connection and returns the
    /// first answer, head and `Content-Length` body, as the bytes arrived
    /// (without waiting for a close).
    pub async fn first_answer(&self, bytes: &[u8]) -> String {
        let mut tls = self.tls(&[b"http/1.1"]).await;
        tls.write_all(bytes).await.unwrap();
        first_answer(&mut tls).await
    }
}

/// HTTP/1.1 over any connection; the connection is driven by a task of its own.
pub async fn h1_over<B, T>(io: T) -> Result<hyper::client::conn::http1::SendRequest<B>, BoxError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn.with_upgrades());
    Ok(sender)
}

/// HTTP/2 over any connection, and the task driving it.
pub async fn h2_over<B, T>(
    io: T,
) -> (hyper::client::conn::http2::SendRequest<B>, JoinHandle<hyper::Result<()>>)
where
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.unwrap();
    (sender, tokio::spawn(conn))
}

/// A WebSocket upgrade to `url` over a connection already open.
pub async fn ws_over<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    url: &str,
) -> Result<
    (tokio_tungstenite::WebSocketStream<S>, tungstenite::handshake::client::Response),
    tungstenite::Error,
> {
    tokio_tungstenite::client_async(url.into_client_request().unwrap(), io).await
}

/// Reads one answer, head and `Content-Length` body, as the bytes arrive
/// (10 s at most, or until the connection ends).
pub async fn first_answer<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                    .and_then(|n| n.trim().parse::<usize>().ok());
                if length.is_some_and(|n| body.len() >= n) {
                    return;
                }
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain TCP connection to `addr` from `source` (a loopback address).
pub async fn plain_connect(addr: SocketAddr, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Raw bytes to a plain-HTTP listener (redirect, metrics) from `source`;
/// everything it answers until it closes (or 10 s pass).
pub async fn plain_exchange(addr: SocketAddr, source: &str, bytes: &[u8]) -> String {
    plain_exchange_within(addr, source, bytes, Duration::from_secs(10)).await
}

/// As [`plain_exchange`], waiting at most `wait` for the close. Empty when
/// the write failed.
pub async fn plain_exchange_within(addr: SocketAddr, source: &str, bytes: &[u8], wait: Duration) -> String {
    let mut tcp = plain_connect(addr, source).await;
    if tcp.write_all(bytes).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 answer (0 when there was none).
pub fn raw_status(answer: &str) -> u16 {
    answer.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|s| s.parse().ok()).unwrap_or(0)
}
