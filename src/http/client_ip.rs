//! Who the client is: the peer address, or — only when the peer is a trusted
//! proxy — the address that proxy reports. Pure logic, no I/O.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::names::X_FORWARDED_FOR;

/// An IP network such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a
/// single host. The network is an [`IpNet`]; only the spelling is vaultgate's:
/// the address is read by Rust's own parser (ipnet's accepts `010.0.0.0`,
/// which some tools read as octal), a bare address is a host, whitespace
/// around either part is allowed, and an IPv4-mapped IPv6 address is its
/// IPv4 address, as peers are compared (ipnet has none of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr =
            addr.trim().parse().map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let addr = addr.to_canonical();
        let Some(prefix) = prefix else { return Ok(Cidr(IpNet::from(addr))) };
        prefix.trim().parse::<u8>().ok().and_then(|p| IpNet::new(addr, p).ok()).map(Cidr).ok_or_else(|| {
            format!("`{s}` has a prefix length that is not 0..={}", IpNet::from(addr).max_prefix_len())
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a trusted proxy puts the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `X-Forwarded-For`: the rightmost address that is not itself trusted.
    XForwardedFor,
    /// A header holding one address, e.g. `CF-Connecting-IP` or `X-Real-IP`.
    Single(HeaderName),
}

/// The `[client_ip]` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub trusted_proxies: Vec<Cidr>,
    pub source: Source,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { trusted_proxies: Vec::new(), source: Source::XForwardedFor }
    }
}

/// The client as vaultgate will tell Vaultwarden about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Goes into `X-Real-IP` and the access log.
    pub ip: IpAddr,
    /// `ip` written out, for `X-Real-IP` (and `[client_ip] header`).
    pub real_ip: HeaderValue,
    /// Goes into `X-Forwarded-For`: just the client, or, behind trusted
    /// proxies, the client and the trusted hops after it, peer last.
    /// Whatever stood left of the client (written by the client itself) is
    /// not passed on, so the leftmost entry is always the client.
    pub forwarded_for: HeaderValue,
    /// Set when a trusted proxy reported a client address that is not one
    /// (an entry that does not parse, repeated single-address headers): the
    /// request must be refused. `ip` is then the unspecified address, never
    /// the peer's, so nothing can mistake the client for the trusted proxy.
    pub unresolved: Option<Unresolved>,
}

/// A connection's peer, its address written out once for all the
/// connection's requests (`X-Real-IP` and `X-Forwarded-For` of every request
/// from an untrusted peer are this text).
#[derive(Debug, Clone)]
pub struct Peer {
    ip: IpAddr,
    text: HeaderValue,
}

impl From<IpAddr> for Peer {
    /// An IPv4-mapped IPv6 address is its IPv4 one (fail2ban and access
    /// lists see the plain address).
    fn from(ip: IpAddr) -> Peer {
        let ip = ip.to_canonical();
        Peer { ip, text: ip_value(ip) }
    }
}

/// A trusted proxy's report that does not name a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the trusted proxy {peer} reported a client address that is not an IP address")]
pub struct Unresolved {
    /// The trusted proxy the request came from.
    pub peer: IpAddr,
}

impl Policy {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }

    /// The single-address header this policy reads (`[client_ip] header`),
    /// which vaultgate therefore owns and overwrites like `X-Real-IP`.
    pub fn single_header(&self) -> Option<&HeaderName> {
        match &self.source {
            Source::Single(name) => Some(name),
            Source::XForwardedFor => None,
        }
    }

    /// Decides who the client is. Headers from an untrusted peer are ignored
    /// entirely. Behind a trusted peer, `X-Forwarded-For` is walked from the
    /// right (the end the trusted proxies appended to) and the first
    /// untrusted address is the client; what stands left of it was written by
    /// that client and is never looked at. An entry reached on the way that
    /// does not parse makes the request unresolved: never the peer, which
    /// would make the client the trusted proxy.
    pub fn resolve(&self, peer: impl Into<Peer>, headers: &HeaderMap) -> Client {
        let Peer { ip: peer, text } = peer.into();
        // The peer itself is the client: its text, written once per connection.
        let itself =
            || Client { ip: peer, real_ip: text.clone(), forwarded_for: text.clone(), unresolved: None };
        let alone = |ip: IpAddr| {
            let text = ip_value(ip);
            Client { ip, real_ip: text.clone(), forwarded_for: text, unresolved: None }
        };
        if !self.is_trusted(peer) {
            return itself();
        }
        let unresolved = || {
            let ip = if peer.is_ipv4() {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            };
            Client {
                ip,
                real_ip: ip_value(ip),
                forwarded_for: text.clone(),
                unresolved: Some(Unresolved { peer }),
            }
        };
        match &self.source {
            Source::Single(name) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    // The trusted proxy itself is the client (a health check).
                    (None, _) => itself(),
                    (Some(v), None) => match std::str::from_utf8(v.as_bytes()).ok().and_then(parse_ip) {
                        Some(ip) => alone(ip),
                        None => unresolved(),
                    },
                    // Two answers to one question: neither can be believed.
                    (Some(_), Some(_)) => unresolved(),
                }
            }
            Source::XForwardedFor => {
                // Repeated fields are one list, in order (RFC 9110 §5.3);
                // walked from the right, entries split on bytes so that junk
                // left of the client (even non-UTF-8) is never parsed.
                let fields: Vec<&HeaderValue> = headers.get_all(X_FORWARDED_FOR).iter().collect();
                let entries = fields
                    .iter()
                    .rev()
                    .flat_map(|v| v.as_bytes().rsplit(|b| *b == b','))
                    .map(|e| e.trim_ascii())
                    // Empty list elements are to be ignored (RFC 9110 §5.6.1).
                    .filter(|e| !e.is_empty());
                // From the peer leftwards: the peer, trusted hops, the client.
                let mut hops = vec![peer];
                for entry in entries {
                    let Some(ip) = std::str::from_utf8(entry).ok().and_then(parse_ip) else {
                        return unresolved();
                    };
                    hops.push(ip);
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                // Every hop trusted: the leftmost one sent the request itself.
                let client = *hops.last().expect("the peer is always there");
                if hops.len() == 1 {
                    return itself();
                }
                let joined: Vec<String> = hops.iter().rev().map(IpAddr::to_string).collect();
                let forwarded_for =
                    HeaderValue::from_str(&joined.join(", ")).expect("addresses are valid header values");
                Client { ip: client, real_ip: ip_value(client), forwarded_for, unresolved: None }
            }
        }
    }
}

/// An address as a header value, formatted on the stack: one allocation
/// (the value's own bytes), not three. IPv4, nearly every client, is written
/// digit by digit (`fmt` is far slower per address: BENCHMARKS.md).
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    // The longest textual address, an IPv4-mapped IPv6 one, is 45 bytes.
    let mut text = [0u8; 64];
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                for (digit, shown) in
                    [(octet / 100, octet >= 100), (octet / 10 % 10, octet >= 10), (octet % 10, true)]
                {
                    if shown {
                        text[len] = b'0' + digit;
                        len += 1;
                    }
                }
            }
            len
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut rest = &mut text[..];
            write!(rest, "{v6}").expect("an IPv6 address fits in 64 bytes");
            64 - rest.len()
        }
    };
    HeaderValue::from_bytes(&text[..len]).expect("an IP address is a valid header value")
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:567`. Nothing else (`unknown`, `unix:`,
/// obfuscated `_hidden` names of RFC 7239) is an address.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = s.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    // `[2001:db8::1]` without a port, as some proxies write it.
    let bracketed = s.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<std::net::Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for a in 0..=255u8 {
            for ip in [[a, 0, 9, 255], [10, a, 100, 1], [192, 168, a, 99], [1, 22, 133, a]] {
                let ip = IpAddr::from(ip);
                assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string());
            }
        }
        for ip in ["::1", "2001:db8::1", "::ffff:192.0.2.1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let lan: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(lan.contains(ip("192.168.4.5")));
        assert!(!lan.contains(ip("192.169.0.1")));
        assert!(lan.contains(ip("::ffff:192.168.1.1")), "IPv4-mapped peers on a dual-stack socket");
        let host: Cidr = "10.1.2.3".parse().unwrap();
        assert!(host.contains(ip("10.1.2.3")) && !host.contains(ip("10.1.2.4")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::9")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "lan", "10.0.0.0/-1", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_edges_read_as_they_always_have() {
        // Host bits set: kept as written, matched on the network part.
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert!(c.contains(ip("10.200.0.1")) && !c.contains(ip("11.0.0.1")));
        assert_eq!(c.to_string(), "10.1.2.3/8");
        assert_eq!(
            "2001:db8::1".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::1/128",
            "a bare address is one host"
        );
        // An IPv4-mapped IPv6 address is its IPv4 address, its prefix an IPv4 one.
        let mapped: Cidr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.1/32");
        assert!(mapped.contains(ip("10.0.0.1")) && mapped.contains(ip("::ffff:10.0.0.1")));
        assert!(!mapped.contains(ip("::1")) && !mapped.contains(ip("10.0.0.2")));
        assert_eq!("::ffff:10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert!("::ffff:10.0.0.0/104".parse::<Cidr>().is_err());
        // Whitespace around either part; a prefix as Rust reads a u8.
        for spelled in [" 10.0.0.0/8 ", "10.0.0.0 / 8", "10.0.0.0/08", "10.0.0.0/008", "10.0.0.0/+8"] {
            assert_eq!(spelled.parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8", "{spelled:?}");
        }
        // Rust's address syntax: no leading zeros (octal to some tools), no zone.
        for bad in ["010.0.0.0/8", "10.0.0.010", "fe80::1%eth0", "10.0.0.0/8/8", "/8", "", "10.0.0.0/ "] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        let everything: Cidr = "::/0".parse().unwrap();
        assert!(everything.contains(ip("2001:db8::1")) && !everything.contains(ip("192.0.2.1")));
        assert!(
            everything.contains(ip("::1")) && !everything.contains(ip("::ffff:192.0.2.1")),
            "mapped is IPv4"
        );
        let host6: Cidr = "2001:db8::/128".parse().unwrap();
        assert!(host6.contains(ip("2001:db8::")) && !host6.contains(ip("2001:db8::1")));
        let v6_63: Cidr = "2001:db8:0:1::/63".parse().unwrap();
        assert!(v6_63.contains(ip("2001:db8::ffff")) && !v6_63.contains(ip("2001:db8:0:2::")));
        // The messages the config error shows.
        assert_eq!("lan".parse::<Cidr>().unwrap_err(), "`lan` is not an IP address or network");
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>().unwrap_err(),
            "`10.0.0.0/33` has a prefix length that is not 0..=32"
        );
        assert_eq!("::/200".parse::<Cidr>().unwrap_err(), "`::/200` has a prefix length that is not 0..=128");
        assert_eq!("::/x".parse::<Cidr>().unwrap_err(), "`::/x` has a prefix length that is not 0..=128");
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let policy = Policy::default();
        let c = policy.resolve(
            ip("203.0.113.9"),
            &headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]),
        );
        assert_eq!(c.ip, ip("203.0.113.9"));
        assert_eq!(c.forwarded_for, "203.0.113.9");
    }

    #[test]
    fn mapped_ipv4_peer_is_shown_as_ipv4() {
        let c = Policy::default().resolve(ip("::ffff:203.0.113.9"), &HeaderMap::new());
        assert_eq!(c.ip.to_string(), "203.0.113.9", "fail2ban must see the plain address");
    }

    fn xff_policy() -> Policy {
        Policy { trusted_proxies: cidrs(&["10.0.0.0/8", "127.0.0.1"]), source: Source::XForwardedFor }
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("x-forwarded-for", *v)).collect();
        headers(&pairs)
    }

    #[test]
    fn trusted_peer_rightmost_untrusted_forwarded_for_hop_wins() {
        // The client forged the first entry; the trusted proxy appended the real one.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.0.0.3"]);
        let c = xff_policy().resolve(ip("10.0.0.2"), &h);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(c.unresolved, None);
        // What the client wrote left of itself is not passed on: Vaultwarden
        // configured to read the leftmost X-Forwarded-For entry gets the client.
        assert_eq!(c.forwarded_for, "198.51.100.7, 10.0.0.3, 10.0.0.2");
    }

    #[test]
    fn junk_left_of_the_client_is_never_looked_at() {
        // The reported attack: `x, 203.0.113.5` from a trusted proxy made the
        // client the trusted proxy. `x` is the client's own writing.
        for value in ["x, 203.0.113.5", "unknown,203.0.113.5", ", ,203.0.113.5", "10.0.0.9 junk, 203.0.113.5"]
        {
            let c = xff_policy().resolve(ip("127.0.0.1"), &xff(&[value]));
            assert_eq!(c.ip, ip("203.0.113.5"), "{value}");
            assert_eq!(c.forwarded_for, "203.0.113.5, 127.0.0.1", "{value}");
        }
        // Even bytes that are not UTF-8, in the same field as the real hop.
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.5").unwrap());
        assert_eq!(xff_policy().resolve(ip("127.0.0.1"), &h).ip, ip("203.0.113.5"));
        // In an earlier field of its own.
        let c = xff_policy().resolve(ip("127.0.0.1"), &xff(&["nonsense", "203.0.113.5"]));
        assert_eq!(c.ip, ip("203.0.113.5"));
    }

    #[test]
    fn junk_where_a_trusted_proxy_wrote_is_unresolved_never_the_peer() {
        let policy = xff_policy();
        for value in ["203.0.113.5, x", "x", "203.0.113.5, 10.0.0.4, unknown", "unix:", "1.2.3.4:99999"] {
            let c = policy.resolve(ip("127.0.0.1"), &xff(&[value]));
            assert_eq!(c.unresolved, Some(Unresolved { peer: ip("127.0.0.1") }), "{value}");
            assert!(c.ip.is_unspecified(), "{value}: {c:?}");
            assert!(!policy.is_trusted(c.ip), "{value}");
        }
        // A junk field after (right of) a good one is still where the trusted proxy wrote.
        let c = policy.resolve(ip("10.0.0.2"), &xff(&["203.0.113.5", "bogus"]));
        assert!(c.unresolved.is_some());
        let v6 = Policy { trusted_proxies: cidrs(&["::1"]), source: Source::XForwardedFor };
        let c = v6.resolve(ip("::1"), &xff(&["x"]));
        assert_eq!(c.ip, ip("::"), "an IPv6 peer gets the IPv6 unspecified address");
    }

    #[test]
    fn forwarded_for_shapes_ports_brackets_whitespace_empties_and_fields() {
        let policy = xff_policy();
        let cases = [
            ("1.2.3.4:5678", "1.2.3.4"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("::ffff:198.51.100.1", "198.51.100.1"),
            (" \t198.51.100.2\t ", "198.51.100.2"),
            ("198.51.100.3,,, ", "198.51.100.3"),
            ("6.6.6.6, 198.51.100.4 , 10.1.1.1,", "198.51.100.4"),
        ];
        for (value, client) in cases {
            let c = policy.resolve(ip("10.0.0.2"), &xff(&[value]));
            assert_eq!(c.ip, ip(client), "{value:?}");
            assert_eq!(c.unresolved, None, "{value:?}");
        }
        // Several fields are one list, the last field rightmost.
        let c = policy.resolve(ip("10.0.0.2"), &xff(&["198.51.100.9", "10.0.0.7, 10.0.0.8", ""]));
        assert_eq!(c.ip, ip("198.51.100.9"));
        assert_eq!(c.forwarded_for, "198.51.100.9, 10.0.0.7, 10.0.0.8, 10.0.0.2");
    }

    #[test]
    fn all_trusted_chain_gives_its_leftmost_hop() {
        let policy = xff_policy();
        let c = policy.resolve(ip("10.0.0.2"), &xff(&["10.9.9.9, 10.0.0.3"]));
        assert_eq!((c.ip, c.unresolved), (ip("10.9.9.9"), None));
        assert_eq!(c.forwarded_for, "10.9.9.9, 10.0.0.3, 10.0.0.2");
        // No header at all: the trusted proxy sent the request itself.
        let c = policy.resolve(ip("10.0.0.2"), &HeaderMap::new());
        assert_eq!((c.ip, c.forwarded_for.to_str().unwrap()), (ip("10.0.0.2"), "10.0.0.2"));
        let c = policy.resolve(ip("10.0.0.2"), &xff(&[" , "]));
        assert_eq!((c.ip, c.unresolved), (ip("10.0.0.2"), None), "only empty elements: none");
    }

    #[test]
    fn single_header_source_like_cloudflare() {
        let policy = Policy {
            trusted_proxies: cidrs(&["173.245.48.0/20"]),
            source: Source::Single(HeaderName::from_static("cf-connecting-ip")),
        };
        let c = policy.resolve(ip("173.245.48.1"), &headers(&[("cf-connecting-ip", "198.51.100.20")]));
        assert_eq!((c.ip, c.forwarded_for.to_str().unwrap()), (ip("198.51.100.20"), "198.51.100.20"));
        // None: the trusted proxy is the client itself. Two values, or junk:
        // unresolved, never the peer.
        assert_eq!(policy.resolve(ip("173.245.48.1"), &HeaderMap::new()).ip, ip("173.245.48.1"));
        let two = headers(&[("cf-connecting-ip", "1.1.1.1"), ("cf-connecting-ip", "2.2.2.2")]);
        let c = policy.resolve(ip("173.245.48.1"), &two);
        assert!(c.unresolved.is_some() && c.ip.is_unspecified());
        let junk = headers(&[("cf-connecting-ip", "nope")]);
        let c = policy.resolve(ip("173.245.48.1"), &junk);
        assert!(c.unresolved.is_some() && c.ip.is_unspecified());
        assert_eq!(policy.single_header().map(HeaderName::as_str), Some("cf-connecting-ip"));
        assert_eq!(Policy::default().single_header(), None);
        // The same header from an untrusted peer is ignored.
        let c = policy.resolve(ip("8.8.8.8"), &headers(&[("cf-connecting-ip", "198.51.100.20")]));
        assert_eq!(c.ip, ip("8.8.8.8"));
    }

    #[test]
    fn real_ip_is_the_client_written_out_whichever_way_it_was_found() {
        let cf = Policy {
            trusted_proxies: cidrs(&["173.245.48.0/20"]),
            source: Source::Single(HeaderName::from_static("cf-connecting-ip")),
        };
        let cases = [
            (Policy::default(), "203.0.113.9", xff(&["1.1.1.1"])),
            (Policy::default(), "::ffff:203.0.113.9", HeaderMap::new()),
            (Policy::default(), "2001:db8::7", HeaderMap::new()),
            (xff_policy(), "10.0.0.2", HeaderMap::new()),
            (xff_policy(), "10.0.0.2", xff(&["198.51.100.9, 10.0.0.7"])),
            (xff_policy(), "10.0.0.2", xff(&["10.9.9.9"])),
            (xff_policy(), "10.0.0.2", xff(&["junk"])),
            (xff_policy(), "::1", xff(&["junk"])),
            (cf.clone(), "173.245.48.1", headers(&[("cf-connecting-ip", "198.51.100.20")])),
            (cf.clone(), "173.245.48.1", HeaderMap::new()),
        ];
        for (policy, peer, h) in cases {
            let c = policy.resolve(ip(peer), &h);
            assert_eq!(c.real_ip.to_str().unwrap(), c.ip.to_string(), "{peer} {h:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn nothing_left_of_the_appended_hop_matters(forged in proptest::collection::vec(0u8..=255, 0..60)) {
            // Whatever the client put in front, the hop the trusted proxy
            // appended decides, and the trusted proxy is never the answer.
            let mut value = forged.clone();
            value.extend_from_slice(b", 203.0.113.5");
            let Ok(v) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.append(X_FORWARDED_FOR, v);
            let c = xff_policy().resolve(ip("127.0.0.1"), &h);
            proptest::prop_assert_eq!(c.ip, ip("203.0.113.5"));
            proptest::prop_assert_eq!(c.forwarded_for, "203.0.113.5, 127.0.0.1");
            // Junk the trusted proxy wrote itself: refused, never the peer.
            let mut value = b"203.0.113.5, ".to_vec();
            value.extend_from_slice(&forged);
            let Ok(v) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.append(X_FORWARDED_FOR, v);
            let c = xff_policy().resolve(ip("127.0.0.1"), &h);
            proptest::prop_assert!(!xff_policy().is_trusted(c.ip), "{c:?}");
            proptest::prop_assert!(c.unresolved.is_none() || c.ip.is_unspecified());
        }
    }
}
