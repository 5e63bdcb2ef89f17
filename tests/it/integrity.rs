//! Issue #12, "walking around": who the client is, which headers it may set,
//! and which hosts are served, end to end over raw bytes. Each refusal is
//! paired with a legitimate request on another connection that is served, and
//! with the stand-in upstream's count showing the refused one never arrived.

use crate::support::{self, *};
use http::StatusCode;

/// A raw HTTP/1.1 GET with `Host: localhost`, `Connection: close` and `extra`
/// header lines (each ending in CRLF).
fn raw(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

/// The stand-in's echo in a raw answer.
fn echo_of(answer: &str) -> serde_json::Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("no body: {answer}"));
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not an echo: {answer}"))
}

fn seen(h: &Harness) -> usize {
    h.upstream.requests()
}

const TRUSTED_LOCAL_PROXY: &str =
    "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[[access]]\npath = \"/admin\"\nallow = [\"127.0.0.0/8\"]";

#[tokio::test]
async fn junk_in_x_forwarded_for_never_makes_the_client_the_trusted_proxy() {
    let h = Harness::start(TRUSTED_LOCAL_PROXY).await;
    // The attack from the issue: the trusted proxy (127.0.0.1, this test)
    // appended the client's address 203.0.113.5 after the client's junk.
    for xff in ["x, 203.0.113.5", "X-Forwarded-For: x\r\nX-Forwarded-For: 203.0.113.5"] {
        let line =
            if xff.starts_with("X-") { format!("{xff}\r\n") } else { format!("X-Forwarded-For: {xff}\r\n") };
        let answer = raw_exchange(&h, &raw("/admin", &line)).await;
        assert_eq!(raw_status(&answer), 403, "{xff:?}: {answer}");
    }
    // Junk where the trusted proxy wrote: nobody to attribute it to, refused.
    for xff in ["203.0.113.5, x", "unknown", "203.0.113.5, unix:"] {
        let answer = raw_exchange(&h, &raw("/admin", &format!("X-Forwarded-For: {xff}\r\n"))).await;
        assert_eq!(raw_status(&answer), 400, "{xff:?}: {answer}");
        assert!(answer.contains("reported a client address that is not an IP address"), "{answer}");
        let answer = raw_exchange(&h, &raw("/api/sync", &format!("X-Forwarded-For: {xff}\r\n"))).await;
        assert_eq!(raw_status(&answer), 400, "{xff:?} on an open path: {answer}");
    }
    assert_eq!(seen(&h), 0, "no refused request reached Vaultwarden");

    // Legitimate traffic, each on a connection of its own: the real client
    // behind the proxy, with ports, brackets, spaces and split fields...
    for (xff, client, chain) in [
        ("x, 203.0.113.5", "203.0.113.5", "203.0.113.5, 127.0.0.1"),
        (
            "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For:  203.0.113.5:5678 ,",
            "203.0.113.5",
            "203.0.113.5, 127.0.0.1",
        ),
        ("[2001:db8::1]:443", "2001:db8::1", "2001:db8::1, 127.0.0.1"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1, 127.0.0.1"),
    ] {
        let line =
            if xff.starts_with("X-") { format!("{xff}\r\n") } else { format!("X-Forwarded-For: {xff}\r\n") };
        let answer = raw_exchange(&h, &raw("/api/sync", &line)).await;
        assert_eq!(raw_status(&answer), 200, "{xff:?}: {answer}");
        let echo = echo_of(&answer);
        assert_eq!(echoed_header(&echo, "x-real-ip"), [client], "{xff:?}");
        assert_eq!(echoed_header(&echo, "x-forwarded-for"), [chain], "{xff:?}");
    }
    // ...and the trusted host itself, with no header, still reaches /admin.
    let answer = raw_exchange(&h, &raw("/admin", "")).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(echoed_header(&echo_of(&answer), "x-real-ip"), ["127.0.0.1"]);
}

#[tokio::test]
async fn the_configured_client_header_from_an_untrusted_peer_is_overwritten() {
    let h = Harness::start("[client_ip]\ntrusted_proxies = [\"10.0.0.0/8\"]\nheader = \"CF-Connecting-IP\"")
        .await;
    let answer = raw_exchange(
        &h,
        &raw("/api/sync", "CF-Connecting-IP: 198.51.100.7\r\ncf-connecting-ip: 198.51.100.8\r\n"),
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let echo = echo_of(&answer);
    assert_eq!(echoed_header(&echo, "cf-connecting-ip"), ["127.0.0.1"], "{echo}");
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["127.0.0.1"]);
    // A client that sends none gets it too: Vaultwarden reading that header
    // always finds the real address.
    let answer = raw_exchange(&h, &raw("/api/sync", "")).await;
    assert_eq!(raw_status(&answer), 200);
    assert_eq!(echoed_header(&echo_of(&answer), "cf-connecting-ip"), ["127.0.0.1"]);
}

#[tokio::test]
async fn the_configured_client_header_from_a_trusted_proxy_is_used_or_refused() {
    let h = Harness::start(
        "[client_ip]\ntrusted_proxies = [\"127.0.0.1\"]\nheader = \"CF-Connecting-IP\"\n\n\
         [[access]]\npath = \"/admin\"\nallow = [\"127.0.0.0/8\"]",
    )
    .await;
    for junk in
        ["CF-Connecting-IP: nope\r\n", "CF-Connecting-IP: 127.0.0.1\r\nCF-Connecting-IP: 203.0.113.5\r\n"]
    {
        let answer = raw_exchange(&h, &raw("/admin", junk)).await;
        assert_eq!(raw_status(&answer), 400, "{junk:?}: {answer}");
    }
    assert_eq!(seen(&h), 0, "no refused request reached Vaultwarden");
    let answer = raw_exchange(&h, &raw("/admin", "CF-Connecting-IP: 203.0.113.5\r\n")).await;
    assert_eq!(raw_status(&answer), 403, "the reported client is outside");
    let answer = raw_exchange(&h, &raw("/api/sync", "CF-Connecting-IP: 203.0.113.5\r\n")).await;
    assert_eq!(raw_status(&answer), 200);
    let echo = echo_of(&answer);
    assert_eq!(echoed_header(&echo, "cf-connecting-ip"), ["203.0.113.5"]);
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["203.0.113.5"]);
}

#[tokio::test]
async fn underscore_spellings_of_forwarding_headers_never_reach_vaultwarden() {
    let h = Harness::start("[client_ip]\ntrusted_proxies = [\"10.0.0.0/8\"]\nheader = \"CF-Connecting-IP\"")
        .await;
    let forged = "X_Real_IP: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\nx_forwarded_proto: http\r\n\
                  X-Forwarded_Host: evil.example\r\nCF_Connecting_IP: 6.6.6.6\r\nSome_Other: 1\r\n";
    let answer = raw_exchange(&h, &raw("/api/sync", forged)).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let echo = echo_of(&answer);
    let names: Vec<String> =
        echo["headers"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap().to_string()).collect();
    assert!(names.iter().all(|n| !n.contains('_')), "an underscore header reached the upstream: {names:?}");
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["127.0.0.1"]);
    // The headers Bitwarden clients send pass as ever.
    let answer = raw_exchange(
        &h,
        &raw(
            "/api/sync",
            "Bitwarden-Client-Name: web\r\nBitwarden-Client-Version: 2025.1.0\r\nDevice-Type: 9\r\n",
        ),
    )
    .await;
    let echo = echo_of(&answer);
    assert_eq!(echoed_header(&echo, "bitwarden-client-name"), ["web"]);
    assert_eq!(echoed_header(&echo, "device-type"), ["9"]);
}

#[tokio::test]
async fn hosts_outside_server_names_get_421_over_both_protocols() {
    let h = Harness::configured(ProxyToml::new().tls("server_names = [\"localhost\"]")).await;
    for host in ["evil.example", "127.0.0.1", "localhost.evil", "[::1]:443"] {
        let bytes = format!("GET /api/sync HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(&h, bytes.as_bytes()).await;
        assert_eq!(raw_status(&answer), 421, "{host}: {answer}");
    }
    // HTTP/2 :authority (the certificate was shown for localhost: a
    // coalesced connection asking for another name).
    let mut c2 = h.h2().await;
    let resp = c2.send_request(get("https://evil.example/api/sync")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(seen(&h), 0, "no misdirected request reached Vaultwarden");
    // The served name, with any port and case, on the same HTTP/2 connection and on a new one.
    let resp = c2.send_request(get(&h.url("/api/sync"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = "GET /alive HTTP/1.1\r\nHost: LocalHost:1\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&raw_exchange(&h, bytes.as_bytes()).await), 200);
}

/// Raw bytes to the plain-HTTP redirect listener: (status, Location).
async fn redirect_answer(port: u16, host: &str) -> (u16, Option<String>) {
    let bytes = format!("GET /api/x?y=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let text = support::client::plain_exchange(addr, "127.0.0.1", bytes.as_bytes()).await;
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .map(str::to_string);
    (raw_status(&text), location)
}

#[tokio::test]
async fn the_redirect_listener_sends_clients_only_to_names_the_certificate_covers() {
    // The test certificate covers localhost and 127.0.0.1, nothing else.
    let h = Harness::start("[redirect]\nlisten = \"127.0.0.1:0\"").await;
    let port = h.proxy().redirect_addr().unwrap().port();
    let https = h.addr.port();
    for host in ["evil.example", "evil.example:80", "localhost.evil", "[::1]", "10.0.0.1"] {
        let (status, location) = redirect_answer(port, host).await;
        assert_eq!((status, location), (421, None), "{host}");
    }
    assert_eq!(
        redirect_answer(port, "LOCALHOST:80").await,
        (301, Some(format!("https://localhost:{https}/api/x?y=1")))
    );
    assert_eq!(
        redirect_answer(port, "127.0.0.1").await,
        (301, Some(format!("https://127.0.0.1:{https}/api/x?y=1"))),
        "an IP address the certificate covers"
    );
    assert_eq!(seen(&h), 0, "the redirect listener never forwards");
}

#[tokio::test]
async fn the_redirect_listener_with_server_names_redirects_only_those() {
    let h = Harness::configured(
        ProxyToml::new().extra("[redirect]\nlisten = \"127.0.0.1:0\"").tls("server_names = [\"localhost\"]"),
    )
    .await;
    let port = h.proxy().redirect_addr().unwrap().port();
    for host in ["evil.example", "127.0.0.1"] {
        // Not even to the configured name: a scanner asking by IP learns none.
        assert_eq!(redirect_answer(port, host).await, (421, None), "{host}");
    }
    assert_eq!(
        redirect_answer(port, "localhost").await,
        (301, Some(format!("https://localhost:{}/api/x?y=1", h.addr.port())))
    );
}
