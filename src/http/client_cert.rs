//! Client certificates as requests see them: the verified certificate a
//! connection presented, and which requests may do without one
//! (`[tls.client_auth] exempt_paths`, `exempt_networks`). Pure logic.

use std::net::IpAddr;

use crate::http::client_ip::Cidr;

/// A client certificate that the TLS handshake verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// As `x509::subject` renders it: printable ASCII, `CN=phone,O=Home`.
    pub subject: String,
    /// Lower-case hex.
    pub serial: String,
}

/// Where no certificate is needed (when one is required at all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    /// Normalised path prefixes, compared segment-wise and case-sensitively.
    pub paths: Vec<String>,
    pub networks: Vec<Cidr>,
}

/// Whether a request without a certificate is refused: on `normalized_path`
/// (what Vaultwarden will route, after `path::normalize`), over a
/// connection from `peer`, for the resolved `client`. `peer` is `None`
/// when nobody is known to be at the other end: a relay's connection whose
/// PROXY header named no client (LOCAL, UNKNOWN) is the relay's, and a
/// relay inside an exempt network would otherwise exempt whatever it
/// forwards that way.
///
/// The network exemption is about where the connection comes from: the TCP
/// peer must be in an exempt network, and so must the client it speaks for
/// when the peer is a trusted proxy (`client` is then what that proxy
/// reported). So a LAN proxy (cloudflared, a router's port forward through
/// another proxy) does not exempt the internet behind it, and a client's
/// `X-Forwarded-For` never exempts anything (it is only read from trusted
/// proxies).
///
/// The path exemption is stricter than `[[access]]` matching on purpose: an
/// exemption widens access, so `/ICONS/…` or `/icons;x/…` are not exempt
/// (Vaultwarden's routes are case-sensitive, so they are nothing it serves
/// as icons either).
pub fn refuses_without(
    exempt: &Exemptions,
    normalized_path: &str,
    peer: Option<IpAddr>,
    client: IpAddr,
) -> bool {
    let from_exempt_network = |ip: IpAddr| exempt.networks.iter().any(|c| c.contains(ip));
    if peer.is_some_and(from_exempt_network) && from_exempt_network(client) {
        return false;
    }
    !exempt.paths.iter().any(|prefix| under(normalized_path, prefix))
}

/// `path` is `prefix` or below it, segment by segment: `/icons/` covers
/// `/icons` and `/icons/x`, never `/iconsx`.
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    !prefix.is_empty()
        && (path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::path::normalize;

    fn exempt(paths: &[&str], networks: &[&str]) -> Exemptions {
        Exemptions {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exempt_paths_by_segment_on_the_normalised_path() {
        let e = exempt(&["/icons/", "/alive"], &[]);
        let out = ip("203.0.113.5");
        for p in ["/icons", "/icons/", "/icons/vault.example.com/icon.png", "/alive", "/x/../icons/a"] {
            let n = normalize(p).unwrap();
            assert!(!refuses_without(&e, &n, Some(out), out), "{p} is exempt");
        }
        for p in [
            "/iconsx",
            "/api/sync",
            "/",
            "/icons/../api/sync",
            "/icons/%2e%2e/api",
            "/ICONS/a",
            "/icons;x/a",
            "/aliveness",
            "//icons/../api",
        ] {
            let n = normalize(p).unwrap();
            assert!(refuses_without(&e, &n, Some(out), out), "{p} ({n}) needs a certificate");
        }
    }

    #[test]
    fn an_exempt_network_needs_both_the_peer_and_the_client_in_it() {
        let e = exempt(&[], &["192.168.0.0/16", "::1"]);
        let lan = ip("192.168.1.20");
        let out = ip("203.0.113.5");
        assert!(!refuses_without(&e, "/api", Some(lan), lan));
        assert!(!refuses_without(&e, "/api", Some(ip("::1")), ip("::1")));
        assert!(!refuses_without(&e, "/api", Some(ip("::ffff:192.168.1.20")), lan), "mapped IPv4");
        assert!(refuses_without(&e, "/api", Some(out), out));
        // A LAN proxy forwarding the internet: not exempt.
        assert!(refuses_without(&e, "/api", Some(lan), out));
        // A client reported inside, over a connection from outside: not exempt.
        assert!(refuses_without(&e, "/api", Some(out), lan));
        // A relay's own connection (no client named): never exempt by network.
        assert!(refuses_without(&e, "/api", None, lan));
    }

    #[test]
    fn no_exemptions_refuse_everything() {
        let e = Exemptions::default();
        assert!(refuses_without(&e, "/", Some(ip("127.0.0.1")), ip("127.0.0.1")));
        assert!(refuses_without(&e, "/icons/x", Some(ip("127.0.0.1")), ip("127.0.0.1")));
    }
}
