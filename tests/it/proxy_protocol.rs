//! `[proxy_protocol] from` (issue #19): a relay in front (HAProxy, nginx
//! stream, rathole, a cloud load balancer) that keeps TLS end to end says
//! whose connection it carries with a PROXY header, v1 or v2. The source it
//! names is the client for everything; a relay that sends no header, a
//! malformed or an endless one is closed; anyone else's header is refused.
//!
//! The relay is Debian's HAProxy (`send-proxy`, `send-proxy-v2`) connecting
//! from 127.0.0.2; clients come from other loopback addresses. Malformed
//! headers are written by hand from 127.0.0.2.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::client::h1_over;
use crate::support::{
    echoed, echoed_header, free_port, get, tool, within, Connector, Harness, ProxyToml, Tool,
};

const RELAY: &str = "127.0.0.2";

/// `[proxy_protocol]` trusting the relay only, and a short header deadline.
fn relayed_toml(extra: &str) -> ProxyToml {
    ProxyToml::new()
        .extra(&format!("[proxy_protocol]\nfrom = [\"{RELAY}\"]"))
        .extra("[timeouts]\ntls_handshake = \"2s\"")
        .extra(extra)
}

/// HAProxy in TCP mode on two ports, both to `target` from [`RELAY`]: the
/// first with `send-proxy` (v1), the second with `send-proxy-v2`. Killed on drop.
struct Haproxy {
    child: std::process::Child,
    v1: SocketAddr,
    v2: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    async fn start(target: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let (v1, v2) = (free_port(), free_port());
        let cfg = format!(
            "global\n  maxconn 200\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             listen relay_v1\n  bind 127.0.0.1:{v1}\n  server vaultgate {target} send-proxy source {RELAY}\n\
             listen relay_v2\n  bind 127.0.0.1:{v2}\n  server vaultgate {target} send-proxy-v2 source {RELAY}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let check =
            std::process::Command::new(tool(Tool::Haproxy)).arg("-c").arg("-f").arg(&path).output().unwrap();
        assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
        // -db: in the foreground, killed with the test.
        let child = std::process::Command::new(tool(Tool::Haproxy))
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let relay = Haproxy {
            child,
            v1: SocketAddr::from(([127, 0, 0, 1], v1)),
            v2: SocketAddr::from(([127, 0, 0, 1], v2)),
            _dir: dir,
        };
        for addr in [relay.v1, relay.v2] {
            within("HAProxy to listen", async {
                while TcpStream::connect(addr).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
        }
        relay
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The X-Real-IP and X-Forwarded-For Vaultwarden's stand-in got for a GET
/// through `via` (a client connecting from `source`).
async fn forwarded_for(h: &Harness, via: SocketAddr, source: &str) -> (Vec<String>, Vec<String>) {
    let mut c = Connector::new(&h.ca, via).from(source).h1().await;
    let resp = c.send_request(get("/api/config")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo = echoed(resp).await;
    (echoed_header(&echo, "x-real-ip"), echoed_header(&echo, "x-forwarded-for"))
}

/// A TCP connection to the proxy from the relay's address.
async fn from_relay(h: &Harness) -> TcpStream {
    from_address(h, RELAY).await
}

async fn from_address(h: &Harness, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
    socket.connect(h.addr).await.unwrap()
}

/// HTTP/1.1 over TLS on `tcp` (after whatever was written on it already).
async fn h1_on(h: &Harness, tcp: TcpStream) -> std::io::Result<crate::support::Http1> {
    let config = h.client().config(&[b"http/1.1"]);
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    h1_over(tls).await.map_err(std::io::Error::other)
}

/// Waits for the proxy to close `tcp` and returns what it sent before: a
/// relay whose header is refused gets nothing, not even a TLS alert.
async fn closed_silently(mut tcp: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    within("the proxy to close the connection", async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// Writes a v2 header naming 192.0.2.44 and the ClientHello behind it in
/// one write on `tcp`, then does a GET over that TLS (blocking I/O).
fn one_segment(mut tcp: std::net::TcpStream, config: Arc<rustls::ClientConfig>) -> String {
    use std::io::{Read, Write};
    let mut conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut first = v2_tcp4([192, 0, 2, 44], 5000);
    conn.write_tls(&mut first).unwrap();
    tcp.write_all(&first).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /api/config HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn v2_tcp4(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[tokio::test]
async fn haproxy_v1_and_v2_hand_on_the_real_client() {
    let h = Harness::configured(relayed_toml("")).await;
    let relay = Haproxy::start(h.addr).await;
    for (via, source) in [(relay.v1, "127.0.0.5"), (relay.v2, "127.0.0.6")] {
        let (real_ip, xff) = forwarded_for(&h, via, source).await;
        assert_eq!(real_ip, [source], "through {via}: the relay's client, not the relay");
        assert_eq!(xff, [source]);
    }
    // Straight to the proxy, from an address that is no relay: as before.
    let (real_ip, _) = forwarded_for(&h, h.addr, "127.0.0.7").await;
    assert_eq!(real_ip, ["127.0.0.7"]);
}

#[tokio::test]
async fn hubs_and_http2_through_the_relay_carry_the_client() {
    let h = Harness::configured(relayed_toml("")).await;
    let relay = Haproxy::start(h.addr).await;
    let mut c = Connector::new(&h.ca, relay.v2).from("127.0.0.8").h2().await;
    let resp =
        c.send_request(get(&format!("https://localhost:{}/api/config", relay.v2.port()))).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(echoed_header(&echoed(resp).await, "x-real-ip"), ["127.0.0.8"]);
    let _ws = Connector::new(&h.ca, relay.v1).from("127.0.0.8").ws("/notifications/hub?access_token=x").await;
}

#[tokio::test]
async fn access_lists_and_per_address_caps_see_the_relayed_client() {
    let h = Harness::configured(relayed_toml(
        "[[access]]\npath = \"/admin\"\nallow = [\"127.0.0.5\"]\n[limits]\nmax_connections_per_ip = 1",
    ))
    .await;
    let relay = Haproxy::start(h.addr).await;
    for (source, want) in [("127.0.0.5", 200), ("127.0.0.6", 403)] {
        let mut c = Connector::new(&h.ca, relay.v1).from(source).h1().await;
        let resp = c.send_request(get("/admin")).await.unwrap();
        assert_eq!(resp.status(), want, "/admin from {source} through the relay");
    }
    // One connection per client address, and the relay's own address is
    // not the one counted: two clients at once through the one relay...
    let _first = Connector::new(&h.ca, relay.v2).from("127.0.0.9").h1().await;
    let _other = Connector::new(&h.ca, relay.v2).from("127.0.0.10").h1().await;
    // ...but the first client's second connection is over its cap.
    let second = Connector::new(&h.ca, relay.v2).from("127.0.0.9").try_h1().await;
    assert!(second.is_err(), "a second connection of 127.0.0.9 through the relay was served");
}

#[tokio::test]
async fn a_header_from_anyone_but_a_relay_is_refused() {
    let h = Harness::configured(relayed_toml("")).await;
    let mut tcp = from_address(&h, "127.0.0.3").await;
    tcp.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 443\r\n").await.unwrap();
    assert!(h1_on(&h, tcp).await.is_err(), "a PROXY header from a non-relay was believed");
    // Without [proxy_protocol], nobody's is.
    let plain = Harness::start("").await;
    let mut tcp = from_address(&plain, RELAY).await;
    tcp.write_all(&v2_tcp4([203, 0, 113, 9], 4000)).await.unwrap();
    assert!(h1_on(&plain, tcp).await.is_err(), "a PROXY header was believed with no [proxy_protocol]");
    assert_eq!(plain.upstream.requests(), 0);
}

#[tokio::test]
async fn a_relay_must_send_the_header_and_a_valid_one() {
    let h = Harness::configured(relayed_toml("[metrics]\nlisten = \"127.0.0.1:0\"")).await;
    // TLS straight away, with no header: refused, not served as the relay.
    assert!(
        h1_on(&h, from_relay(&h).await).await.is_err(),
        "a relay's connection without a header was served"
    );
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("an HTTP request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("a bad address", b"PROXY TCP4 999.1.1.1 127.0.0.1 1 443\r\n".to_vec()),
        ("a v1 line with no end", [b"PROXY TCP4 ".as_slice(), &[b'1'; 300]].concat()),
        ("v2 with a bad version", {
            let mut v = v2_tcp4([192, 0, 2, 1], 1);
            v[12] = 0x31;
            v
        }),
        ("v2 longer than the cap", {
            let mut v = v2_tcp4([192, 0, 2, 1], 1);
            v[14..16].copy_from_slice(&60000u16.to_be_bytes());
            v.resize(4096, 0);
            v
        }),
    ];
    for (what, bytes) in &bad {
        let mut tcp = from_relay(&h).await;
        // The write may fail once the proxy has closed: what counts is its answer.
        let _ = tcp.write_all(bytes).await;
        let _ = tcp.write_all(b"\x16\x03\x01\x00\x05hello").await;
        assert_eq!(closed_silently(tcp).await, b"", "{what}: the proxy answered");
    }
    // A relay that connects and says nothing is closed at the deadline.
    let silent = from_relay(&h).await;
    assert_eq!(closed_silently(silent).await, b"");
    assert_eq!(h.upstream.requests(), 0, "a refused connection reached Vaultwarden");
    let metrics = format!("http://{}/metrics", h.proxy().metrics_addr().unwrap());
    let out = tokio::process::Command::new(tool(Tool::Curl)).args(["-sS", &metrics]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let count = bad.len() + 2;
    assert!(text.contains(&format!("vaultgate_proxy_protocol_refused_total {count}")), "{text}");
}

#[tokio::test]
async fn a_header_in_pieces_and_a_health_check_are_served() {
    let h = Harness::configured(relayed_toml("")).await;
    // One byte at a time, the TLS handshake right behind the last one.
    let mut tcp = from_relay(&h).await;
    for b in b"PROXY TCP6 2001:db8::7 ::1 4000 443\r\n" {
        tcp.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c = h1_on(&h, tcp).await.expect("TLS behind a header sent in pieces");
    let echo = echoed(c.send_request(get("/api/config")).await.unwrap()).await;
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["2001:db8::7"]);
    // The header and the ClientHello in one write: the proxy must take the
    // header's bytes off the socket and not one of TLS's.
    let config = h.client().config(&[b"http/1.1"]);
    let tcp = from_relay(&h).await.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    let answer = tokio::task::spawn_blocking(move || one_segment(tcp, config)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("192.0.2.44"), "the header's client did not reach Vaultwarden: {answer}");
    // v2 LOCAL (HAProxy's own health check): the relay is the client.
    let mut local = v2_tcp4([0, 0, 0, 0], 0);
    local[12] = 0x20;
    let mut tcp = from_relay(&h).await;
    tcp.write_all(&local).await.unwrap();
    let mut c = h1_on(&h, tcp).await.expect("a LOCAL header is served");
    let echo = echoed(c.send_request(get("/api/config")).await.unwrap()).await;
    assert_eq!(echoed_header(&echo, "x-real-ip"), [RELAY]);
}

#[tokio::test]
async fn a_relay_speaking_for_itself_is_never_an_exempt_network() {
    // HAProxy on the LAN, itself in exempt_networks: a header naming a
    // client there is exempt, but LOCAL (its health check) and UNKNOWN
    // (a frontend whose addresses are not IP) name no client, and the
    // relay's own address must not let what it forwards skip the certificate.
    let devices = crate::support::DeviceCa::new();
    let auth = devices.client_auth(&devices.root_path, &format!("exempt_networks = [\"{RELAY}/32\"]"));
    let h = Harness::configured(relayed_toml("").tls(&auth)).await;
    let status = |header: Vec<u8>| {
        let h = &h;
        async move {
            let mut tcp = from_relay(h).await;
            tcp.write_all(&header).await.unwrap();
            let mut c = h1_on(h, tcp).await.expect("TLS after the header");
            c.send_request(get("/api/sync")).await.unwrap().status().as_u16()
        }
    };
    let mut named = b"PROXY TCP4 ".to_vec();
    named.extend_from_slice(format!("{RELAY} 127.0.0.1 4000 443\r\n").as_bytes());
    assert_eq!(status(named).await, 200, "a client named inside the exempt network");
    let mut local = v2_tcp4([0, 0, 0, 0], 0);
    local[12] = 0x20;
    assert_eq!(status(local).await, 403, "v2 LOCAL");
    assert_eq!(status(b"PROXY UNKNOWN\r\n".to_vec()).await, 403, "v1 UNKNOWN");
    assert_eq!(h.upstream.requests(), 1);
}
