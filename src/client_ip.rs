//! Who the client is: the peer address, or — only when the peer is a trusted
//! proxy — the address that proxy reports. Pure logic, no I/O.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::headers::X_FORWARDED_FOR;

/// An IP network such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a
/// single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr =
            addr.trim().parse().map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a prefix length that is not 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
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
    /// Goes into `X-Forwarded-For`: just the client, or, behind trusted
    /// proxies, the chain they reported plus the peer.
    pub forwarded_for: HeaderValue,
}

impl Policy {
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }

    /// Decides who the client is. Headers from an untrusted peer are ignored
    /// entirely; a trusted peer's report is used only if it parses.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Client {
        let peer = peer.to_canonical();
        let alone = |ip: IpAddr| Client { ip, forwarded_for: ip_value(ip) };
        if !self.is_trusted(peer) {
            return alone(peer);
        }
        match &self.source {
            Source::Single(name) => {
                // One value expected; anything else is not trusted.
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (Some(v), None) => match parse_ip(v.to_str().unwrap_or("")) {
                        Some(ip) => alone(ip),
                        None => alone(peer),
                    },
                    _ => alone(peer),
                }
            }
            Source::XForwardedFor => {
                let mut chain = Vec::new();
                for value in headers.get_all(X_FORWARDED_FOR) {
                    let Ok(text) = value.to_str() else { return alone(peer) };
                    for entry in text.split(',') {
                        match parse_ip(entry) {
                            Some(ip) => chain.push(ip),
                            // A malformed chain is not evidence of anything.
                            None => return alone(peer),
                        }
                    }
                }
                chain.push(peer);
                let client = chain
                    .iter()
                    .rev()
                    .find(|ip| !self.is_trusted(**ip))
                    .or(chain.first())
                    .copied()
                    .unwrap_or(peer);
                let joined: Vec<String> = chain.iter().map(IpAddr::to_string).collect();
                let forwarded_for =
                    HeaderValue::from_str(&joined.join(", ")).unwrap_or_else(|_| ip_value(peer));
                Client { ip: client, forwarded_for }
            }
        }
    }
}

/// An address as a header value, formatted on the stack: one allocation
/// (the value's own bytes), not three. IPv4, nearly every client, is written
/// digit by digit (`fmt` costs a thousand instructions per address).
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
/// `[2001:db8::1]:567`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = s.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    None
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

    #[test]
    fn trusted_peer_rightmost_untrusted_forwarded_for_hop_wins() {
        let policy = Policy { trusted_proxies: cidrs(&["10.0.0.0/8"]), source: Source::XForwardedFor };
        // The client forged the first entry; the trusted proxy appended the real one.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7"), ("x-forwarded-for", "10.0.0.3")]);
        let c = policy.resolve(ip("10.0.0.2"), &h);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(c.forwarded_for, "6.6.6.6, 198.51.100.7, 10.0.0.3, 10.0.0.2");
    }

    #[test]
    fn all_trusted_chain_gives_leftmost_and_garbage_gives_peer() {
        let policy = Policy { trusted_proxies: cidrs(&["10.0.0.0/8"]), source: Source::XForwardedFor };
        let c = policy.resolve(ip("10.0.0.2"), &headers(&[("x-forwarded-for", "10.9.9.9")]));
        assert_eq!(c.ip, ip("10.9.9.9"));
        let c = policy.resolve(ip("10.0.0.2"), &headers(&[("x-forwarded-for", "1.2.3.4, unknown")]));
        assert_eq!(c.ip, ip("10.0.0.2"));
        let c =
            policy.resolve(ip("10.0.0.2"), &headers(&[("x-forwarded-for", "[2001:db8::5]:443, 1.2.3.4:80")]));
        assert_eq!(c.ip, ip("1.2.3.4"));
    }

    #[test]
    fn single_header_source_like_cloudflare() {
        let policy = Policy {
            trusted_proxies: cidrs(&["173.245.48.0/20"]),
            source: Source::Single(HeaderName::from_static("cf-connecting-ip")),
        };
        let c = policy.resolve(ip("173.245.48.1"), &headers(&[("cf-connecting-ip", "198.51.100.20")]));
        assert_eq!((c.ip, c.forwarded_for.to_str().unwrap()), (ip("198.51.100.20"), "198.51.100.20"));
        // Two values, or none, or junk: the peer it is.
        let two = headers(&[("cf-connecting-ip", "1.1.1.1"), ("cf-connecting-ip", "2.2.2.2")]);
        assert_eq!(policy.resolve(ip("173.245.48.1"), &two).ip, ip("173.245.48.1"));
        assert_eq!(policy.resolve(ip("173.245.48.1"), &HeaderMap::new()).ip, ip("173.245.48.1"));
        let junk = headers(&[("cf-connecting-ip", "nope")]);
        assert_eq!(policy.resolve(ip("173.245.48.1"), &junk).ip, ip("173.245.48.1"));
        // The same header from an untrusted peer is ignored.
        let c = policy.resolve(ip("8.8.8.8"), &headers(&[("cf-connecting-ip", "198.51.100.20")]));
        assert_eq!(c.ip, ip("8.8.8.8"));
    }
}
