//! Pure header rewriting: hop-by-hop removal and the forwarding headers that
//! tell Vaultwarden who the client is. No I/O here.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::client_ip::Client;
use super::names::{
    KEEP_ALIVE, PROXY_CONNECTION, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP,
};

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the de-facto ones) that describe one
/// connection and must never be forwarded to the next hop.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Splits every value of a comma-list header into trimmed, non-empty tokens.
fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// True when a comma-list header carries `token`, compared case-insensitively and
/// token by token (`Connection: keep-alive, Upgrade` has `upgrade`;
/// `Connection: upgraded` does not).
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers: first every header named in `Connection`, then
/// the fixed list. Call this before adding any header of the proxy's own, so
/// that `Connection: X-Real-IP` cannot delete what the proxy sets.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = tokens(headers, &header::CONNECTION)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    // Most messages carry none of them: one look at the few names present is
    // cheaper than nine removals that each hash a name.
    if named.is_empty() && !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Joins HTTP/2's split `cookie` fields into the single field HTTP/1.1 expects
/// (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// Removes every header whose name has an underscore, as nginx does by
/// default (`underscores_in_headers off`). `X_Real_IP` is not `X-Real-IP` to
/// vaultgate, but CGI-style readers (`HTTP_X_REAL_IP`) and some frameworks
/// fold `_` and `-` together, so a client's `X_Real_IP` could stand in for
/// ours. No Bitwarden client sends such a header, and Vaultwarden behind
/// nginx's defaults (the most common setup) never receives one.
pub fn strip_underscored(headers: &mut HeaderMap) {
    // Nearly every request has none: one look at each name, nothing else.
    if !headers.keys().any(|name| name.as_str().contains('_')) {
        return;
    }
    let named: Vec<HeaderName> = headers.keys().filter(|n| n.as_str().contains('_')).cloned().collect();
    for name in named {
        headers.remove(name);
    }
}

/// Sets the headers that tell Vaultwarden the real client and the public URL.
/// Whatever the client sent under these names is replaced, never appended to
/// (behind a trusted proxy, `client.forwarded_for` carries the vetted chain):
/// Vaultwarden's fail2ban lines and rate limits key on `X-Real-IP`. `single`
/// is the configured one-address header (`[client_ip] header`, e.g.
/// `CF-Connecting-IP`): Vaultwarden may be set to read exactly that one, so it
/// is overwritten with the client as well, whoever the peer.
pub fn set_forwarding(
    headers: &mut HeaderMap,
    client: &Client,
    host: &HeaderValue,
    single: Option<&HeaderName>,
) {
    headers.remove(header::FORWARDED);
    // Room for these four and `Host` at once, rather than growing the map
    // (and rehashing it) part-way through.
    headers.reserve(5);
    headers.insert(X_REAL_IP, client.real_ip.clone());
    headers.insert(X_FORWARDED_FOR, client.forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    headers.insert(X_FORWARDED_HOST, host.clone());
    if let Some(name) = single.filter(|n| **n != X_FORWARDED_FOR) {
        headers.insert(name.clone(), client.real_ip.clone());
    }
}

/// `[tls.client_auth] subject_header`: whatever the client sent under
/// `name` is removed (every value), then the verified subject, if any, set.
/// A subject that cannot be a header value (`x509::subject` gives printable
/// ASCII, so none should) is left out rather than sent mangled.
pub fn set_client_cert_subject(headers: &mut HeaderMap, name: &HeaderName, subject: Option<&str>) {
    headers.remove(name);
    if let Some(value) = subject.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(name.clone(), value);
    }
}

/// Trailers are headers too: the same hop-by-hop removal, and no client may
/// smuggle forwarding headers in them.
pub fn sanitize_trailers(trailers: &mut HeaderMap) {
    strip_hop_by_hop(trailers);
    strip_underscored(trailers);
    for name in
        [X_REAL_IP, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, header::FORWARDED, header::HOST]
    {
        trailers.remove(name);
    }
}

/// True when the message has more than one `Content-Length` value (repeated
/// fields or a comma list). hyper tolerates identical repeats; a proxy must not
/// pass any such ambiguity on (RFC 9112 §6.3).
pub fn has_repeated_content_length(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    values.next().is_some_and(|first| first.as_bytes().contains(&b',')) || values.next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str) -> Client {
        super::super::client_ip::Policy::default()
            .resolve(ip.parse::<std::net::IpAddr>().unwrap(), &HeaderMap::new())
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn connection_tokens_are_matched_token_wise_and_case_insensitively() {
        let h = map(&[("connection", "keep-alive, Upgrade")]);
        assert!(has_token(&h, &header::CONNECTION, "upgrade"));
        let h = map(&[("connection", "keep-alive"), ("connection", "UPGRADE")]);
        assert!(has_token(&h, &header::CONNECTION, "upgrade"));
        let h = map(&[("connection", "upgraded, notupgrade")]);
        assert!(!has_token(&h, &header::CONNECTION, "upgrade"));
        assert!(!has_token(&HeaderMap::new(), &header::CONNECTION, "upgrade"));
    }

    #[test]
    fn strips_fixed_hop_by_hop_list() {
        let mut h = map(&[
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn strips_headers_named_in_connection_in_any_case() {
        let mut h = map(&[
            ("connection", "X-Secret , x-other"),
            ("connection", "X-Third"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-third", "3"),
            ("x-kept", "4"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_naming_x_real_ip_cannot_remove_the_proxys_header() {
        let mut h = map(&[("connection", "X-Real-IP, X-Forwarded-For"), ("x-real-ip", "6.6.6.6")]);
        strip_hop_by_hop(&mut h);
        set_forwarding(&mut h, &client("192.0.2.7"), &HeaderValue::from_static("vault.example"), None);
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    }

    #[test]
    fn spoofed_forwarding_headers_are_replaced_not_appended() {
        let mut h = map(&[
            ("x-real-ip", "6.6.6.6"),
            ("x-real-ip", "7.7.7.7"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        set_forwarding(&mut h, &client("2001:db8::1"), &HeaderValue::from_static("vault.example:8443"), None);
        assert_eq!(h.get_all("x-real-ip").iter().count(), 1);
        assert_eq!(h["x-real-ip"], "2001:db8::1");
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "vault.example:8443");
        assert!(!h.contains_key("forwarded"));
    }

    #[test]
    fn the_configured_single_header_is_overwritten_like_x_real_ip() {
        let cf = HeaderName::from_static("cf-connecting-ip");
        let mut h = map(&[("cf-connecting-ip", "6.6.6.6"), ("cf-connecting-ip", "7.7.7.7")]);
        set_forwarding(&mut h, &client("192.0.2.7"), &HeaderValue::from_static("v"), Some(&cf));
        assert_eq!(h.get_all("cf-connecting-ip").iter().collect::<Vec<_>>(), ["192.0.2.7"]);
        // Named X-Forwarded-For, it keeps the chain rather than one address.
        let mut h = map(&[]);
        let chain = Client {
            ip: "192.0.2.7".parse().unwrap(),
            real_ip: HeaderValue::from_static("192.0.2.7"),
            forwarded_for: HeaderValue::from_static("192.0.2.7, 10.0.0.1"),
            unresolved: None,
        };
        set_forwarding(&mut h, &chain, &HeaderValue::from_static("v"), Some(&X_FORWARDED_FOR));
        assert_eq!(h["x-forwarded-for"], "192.0.2.7, 10.0.0.1");
    }

    #[test]
    fn underscore_spellings_are_dropped_and_dashed_names_kept() {
        let mut h = map(&[
            ("x_real_ip", "6.6.6.6"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded_proto", "http"),
            ("cf_connecting_ip", "6.6.6.6"),
            ("_", "1"),
            ("x-real-ip", "6.6.6.6"),
            ("bitwarden-client-name", "web"),
            ("device-type", "9"),
        ]);
        strip_underscored(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["bitwarden-client-name", "device-type", "x-real-ip"]);
        let mut t = map(&[("x_real_ip", "6.6.6.6"), ("x-checksum", "abc")]);
        sanitize_trailers(&mut t);
        assert_eq!(t.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["x-checksum"]);
    }

    #[test]
    fn invalid_names_in_connection_are_ignored_not_fatal() {
        let mut h = map(&[("connection", "bad name, (x), ,,"), ("x", "1")]);
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("x"));
    }

    #[test]
    fn cookies_split_by_http2_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2; c=3");
        let mut single = map(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut single);
        assert_eq!(single["cookie"], "a=1; b=2");
    }

    #[test]
    fn trailers_lose_hop_by_hop_and_forwarding_headers() {
        let mut t = map(&[
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("host", "evil"),
            ("x-checksum", "abc"),
        ]);
        sanitize_trailers(&mut t);
        assert_eq!(t.len(), 1);
        assert!(t.contains_key("x-checksum"));
    }

    #[test]
    fn repeated_content_length_is_spotted() {
        assert!(!has_repeated_content_length(&map(&[("content-length", "3")])));
        assert!(!has_repeated_content_length(&HeaderMap::new()));
        assert!(has_repeated_content_length(&map(&[("content-length", "3"), ("content-length", "3")])));
        assert!(has_repeated_content_length(&map(&[("content-length", "3, 3")])));
    }
}
