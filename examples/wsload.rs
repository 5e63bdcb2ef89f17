//! The load generator of `bench/run.sh` (issue 6) for what wrk and h2load
//! cannot do: full TLS handshakes, hub WebSocket echo, many idle hubs and a
//! fan-out to all of them. For benchmarks on 127.0.0.1 only: certificates
//! are not checked.
//!
//!     wsload handshakes HOST:PORT SECONDS CONCURRENCY [full|resume]
//!     wsload echo URL CONNECTIONS SECONDS
//!     wsload hubs URL CONNECTIONS TRIGGER_URL ROUNDS
//!
//! URL is `ws://…` (straight to the upstream) or `wss://…` (through a proxy),
//! e.g. `wss://localhost:18445/notifications/hub?access_token=x`. `hubs`
//! opens the connections, prints `ready …`, waits for a line on stdin (time
//! for the caller to read the proxy's memory), then POSTs TRIGGER_URL (the
//! upstream's "cipher created", which pushes to every hub) ROUNDS times and
//! reports how long until the last hub had each push.
//!
//! `handshakes` alone closes each connection right after a full handshake.
//! With `full` or `resume` each connection also sends one `GET /alive` and
//! reads the answer (so the client receives the TLS 1.3 session tickets);
//! `resume` lets later connections resume a session from those tickets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use vaultgate::testing::AnyCertificate;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Ws = WebSocketStream<Box<dyn Io>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let result = rt.block_on(async {
        match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["handshakes", addr, secs, conc] => handshakes(addr, secs.parse()?, conc.parse()?, None).await,
            ["handshakes", addr, secs, conc, mode @ ("full" | "resume")] => {
                handshakes(addr, secs.parse()?, conc.parse()?, Some(*mode == "resume")).await
            }
            ["echo", url, conns, secs] => echo(url, conns.parse()?, secs.parse()?).await,
            ["hubs", url, conns, trigger, rounds] => hubs(url, conns.parse()?, trigger, rounds.parse()?).await,
            _ => Err("usage: wsload handshakes HOST:PORT SECONDS CONCURRENCY [full|resume] | echo URL CONNECTIONS SECONDS | hubs URL CONNECTIONS TRIGGER_URL ROUNDS".into()),
        }
    });
    if let Err(e) = result {
        eprintln!("wsload: {e}");
        std::process::exit(1);
    }
}

/// TLS 1.3 only, no session resumption: every connection is a full handshake.
fn client_config() -> Arc<rustls::ClientConfig> {
    client_config_with(false)
}

/// TLS 1.3 only; `resume` keeps the server's session tickets and offers them.
fn client_config_with(resume: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `request`: None closes after the handshake; Some(resume) sends one GET
/// and reads the answer, resuming sessions when `resume`.
async fn handshakes(addr: &str, secs: u64, conc: usize, request: Option<bool>) -> Result<(), Error> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let connector = tokio_rustls::TlsConnector::from(client_config_with(request == Some(true)));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (connector, addr, host) = (connector.clone(), addr.to_string(), host.clone());
        let (done, failed, resumed) = (done.clone(), failed.clone(), resumed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let name = ServerName::try_from(host.clone()).unwrap();
                let ok = match TcpStream::connect(&addr).await {
                    Ok(tcp) if tcp.set_nodelay(true).is_ok() => match connector.connect(name, tcp).await {
                        Ok(mut tls) => {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                                resumed.fetch_add(1, Ordering::Relaxed);
                            }
                            match request {
                                None => tls.shutdown().await.is_ok(),
                                Some(_) => {
                                    let ask = b"GET /alive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
                                    let mut answer = Vec::new();
                                    tls.write_all(ask).await.is_ok()
                                        && tls.read_to_end(&mut answer).await.is_ok()
                                        && answer.starts_with(b"HTTP/1.1 200")
                                }
                            }
                        }
                        Err(_) => false,
                    },
                    _ => false,
                };
                if ok { &done } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "handshakes {n} failed {} resumed {} seconds {elapsed:.2} rate {:.0}",
        failed.load(Ordering::Relaxed),
        resumed.load(Ordering::Relaxed),
        n as f64 / elapsed
    );
    Ok(())
}

/// Opens one hub WebSocket (TLS for wss://, certificate unchecked).
async fn open(url: &str, tls: &tokio_rustls::TlsConnector) -> Result<Ws, Error> {
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or("no host")?.to_string();
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let io: Box<dyn Io> =
        if secure { Box::new(tls.connect(ServerName::try_from(host)?, tcp).await?) } else { Box::new(tcp) };
    let (ws, resp) = tokio_tungstenite::client_async(url, io).await?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("upgrade answered {}", resp.status()).into());
    }
    Ok(ws)
}

/// The next binary frame (pings are answered by tungstenite on the way).
async fn next_binary(ws: &mut Ws) -> Result<bytes::Bytes, Error> {
    loop {
        match ws.next().await.ok_or("hub closed")?? {
            Message::Binary(b) => return Ok(b),
            Message::Close(_) => return Err("hub closed".into()),
            _ => continue,
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn echo(url: &str, conns: usize, secs: u64) -> Result<(), Error> {
    let tls = tokio_rustls::TlsConnector::from(client_config());
    let mut sockets = Vec::new();
    for _ in 0..conns {
        sockets.push(open(url, &tls).await?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for mut ws in sockets {
        tasks.push(tokio::spawn(async move {
            let mut rtts = Vec::new();
            // A SignalR-sized message: a MessagePack ping plus a counter.
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let mut msg = vec![0x02, 0x91, 0x06];
                msg.extend_from_slice(&n.to_be_bytes());
                let sent = Instant::now();
                if ws.send(Message::binary(msg.clone())).await.is_err() {
                    break;
                }
                match next_binary(&mut ws).await {
                    Ok(b) if b[..] == msg[..] => rtts.push(sent.elapsed().as_micros() as u64),
                    _ => break,
                }
            }
            let _ = ws.close(None).await;
            rtts
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "echo messages {} seconds {elapsed:.2} rate {:.0} p50_us {} p99_us {}",
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
    Ok(())
}

async fn hubs(url: &str, conns: usize, trigger: &str, rounds: usize) -> Result<(), Error> {
    let tls = tokio_rustls::TlsConnector::from(client_config());
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<Instant>();
    let opening = Arc::new(Semaphore::new(128));
    let start = Instant::now();
    let mut opened = Vec::new();
    for _ in 0..conns {
        let (url, tls, arrived_tx, opening) =
            (url.to_string(), tls.clone(), arrived_tx.clone(), opening.clone());
        opened.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await.unwrap();
            // A proxy out of descriptors may leave a connection unanswered.
            let mut ws = tokio::time::timeout(Duration::from_secs(20), open(&url, &tls))
                .await
                .map_err(|_| "no upgrade within 20 s")??;
            drop(permit);
            tokio::spawn(async move {
                while next_binary(&mut ws).await.is_ok() {
                    let _ = arrived_tx.send(Instant::now());
                }
            });
            Ok::<(), Error>(())
        }));
    }
    let mut failures = 0;
    for t in opened {
        if t.await?.is_err() {
            failures += 1;
        }
    }
    let open = conns - failures;
    println!("ready hubs {open} failed {failures} open_seconds {:.2}", start.elapsed().as_secs_f64());
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;

    let mut worst = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        post(trigger).await?;
        let mut lat = Vec::with_capacity(open);
        while lat.len() < open {
            match tokio::time::timeout(Duration::from_secs(30), arrived.recv()).await {
                Ok(Some(at)) => lat.push(at.saturating_duration_since(t0).as_micros() as u64),
                _ => return Err(format!("only {} of {open} hubs got the push", lat.len()).into()),
            }
        }
        lat.sort_unstable();
        p50s.push(percentile(&lat, 0.5));
        p99s.push(percentile(&lat, 0.99));
        worst.push(*lat.last().unwrap());
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        percentile(v, 0.5)
    };
    println!(
        "fanout hubs {open} rounds {rounds} p50_us {} p99_us {} max_us {}",
        median(&mut p50s),
        median(&mut p99s),
        median(&mut worst)
    );
    Ok(())
}

/// POST with an empty JSON body over plain HTTP/1.1 (the upstream, directly).
async fn post(url: &str) -> Result<(), Error> {
    let uri: http::Uri = url.parse()?;
    let tcp = TcpStream::connect((uri.host().ok_or("no host")?, uri.port_u16().unwrap_or(80))).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = http::Request::post(uri.path())
        .header(http::header::HOST, uri.authority().map_or("localhost", |a| a.as_str()))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        return Err(format!("trigger answered {}", resp.status()).into());
    }
    Ok(())
}
