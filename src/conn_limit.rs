//! Caps on what clients hold open (connections, hub tunnels, upstream
//! requests): in total, and per client address, so that one address opening
//! thousands of silent connections cannot crowd out others. IPv6 clients are
//! counted by network (a /64 by default): one subscriber gets a whole /64 and
//! can pick a new address from it for every connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The caps that outlive a reload: what is open stays counted when a new
/// configuration takes over.
pub struct Caps {
    /// Client connections, and HTTP/2 hub tunnels beside them.
    pub connections: Arc<ConnLimit>,
    /// Open hub tunnels per client address.
    pub hubs: Arc<ConnLimit>,
    /// Requests waiting on or streaming from Vaultwarden, per client address.
    pub upstream: Arc<ConnLimit>,
}

impl Caps {
    pub fn new(limits: &crate::config::Limits) -> Arc<Caps> {
        let prefix = limits.ipv6_prefix;
        Arc::new(Caps {
            connections: ConnLimit::new(limits.max_connections, limits.max_connections_per_ip, prefix),
            hubs: ConnLimit::new(usize::MAX, limits.max_hubs_per_ip, prefix),
            upstream: ConnLimit::new(usize::MAX, limits.max_upstream_per_ip, prefix),
        })
    }
}

pub struct ConnLimit {
    max_total: usize,
    max_per_ip: usize,
    /// IPv6 addresses are counted by their first this-many bits.
    ipv6_prefix: u8,
    open: Mutex<Open>,
    /// Unix second of the last "limit reached" log line, to keep a flood from
    /// becoming a log flood.
    last_warned: AtomicU64,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total(usize),
    PerIp(usize),
}

impl Refused {
    /// The cap that was reached.
    pub fn limit(self) -> usize {
        match self {
            Refused::Total(n) | Refused::PerIp(n) => n,
        }
    }
}

/// One open connection; dropping it frees the place.
pub struct Slot {
    limit: Arc<ConnLimit>,
    /// The address counted under the per-address cap, if any.
    ip: Option<IpAddr>,
}

impl ConnLimit {
    pub fn new(max_total: usize, max_per_ip: usize, ipv6_prefix: u8) -> Arc<ConnLimit> {
        Arc::new(ConnLimit {
            max_total,
            max_per_ip,
            ipv6_prefix,
            open: Mutex::default(),
            last_warned: AtomicU64::new(0),
        })
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let ip = group(ip, self.ipv6_prefix);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        let mine = open.per_ip.entry(ip).or_insert(0);
        if *mine >= self.max_per_ip {
            return Err(Refused::PerIp(self.max_per_ip));
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot { limit: self.clone(), ip: Some(ip) })
    }

    /// A place under the total cap only: for a trusted proxy, whose one
    /// address carries many clients (each counted by the caps keyed on the
    /// resolved client: hubs, upstream requests).
    pub fn acquire_total(self: &Arc<Self>) -> Result<Slot, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        open.total += 1;
        Ok(Slot { limit: self.clone(), ip: None })
    }

    /// True at most once a second: whether to log a refusal now.
    pub fn should_warn(&self) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.last_warned.swap(now, Ordering::Relaxed) != now
    }
}

/// The key a client address is counted under: IPv4 (also when written as
/// IPv4-mapped IPv6) as it is, IPv6 cut to its first `ipv6_prefix` bits.
pub fn group(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

impl Slot {
    /// Counts a place taken under the total cap only (a relay's connection)
    /// under `ip`'s per-address cap too, once the relay has said whose it is.
    pub fn count_as(&mut self, ip: IpAddr) -> Result<(), Refused> {
        if self.ip.is_some() {
            return Ok(());
        }
        let limit = &self.limit;
        let ip = group(ip, limit.ipv6_prefix);
        let mut open = limit.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.per_ip.get(&ip).copied().unwrap_or(0);
        if mine >= limit.max_per_ip {
            return Err(Refused::PerIp(limit.max_per_ip));
        }
        open.per_ip.insert(ip, mine + 1);
        drop(open);
        self.ip = Some(ip);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        let Some(ip) = self.ip else { return };
        if let Some(n) = open.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_caps_and_release() {
        let limit = ConnLimit::new(3, 2, 64);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limit.acquire(a).unwrap();
        let _a2 = limit.acquire(a).unwrap();
        assert_eq!(limit.acquire(a).err(), Some(Refused::PerIp(2)));
        assert_eq!(
            limit.acquire("::ffff:192.0.2.1".parse().unwrap()).err(),
            Some(Refused::PerIp(2)),
            "the mapped form is the same client"
        );
        let _b1 = limit.acquire(b).unwrap();
        assert_eq!(limit.acquire(b).err(), Some(Refused::Total(3)));
        drop(a1);
        assert!(limit.acquire(b).is_ok(), "a freed place is reusable");
    }

    #[test]
    fn no_entry_is_left_behind() {
        let limit = ConnLimit::new(10, 10, 64);
        for i in 0..100u8 {
            let _slot = limit.acquire(IpAddr::from([10, 0, 0, i])).unwrap();
        }
        let open = limit.open.lock().unwrap();
        assert_eq!((open.total, open.per_ip.len()), (0, 0));
    }

    #[test]
    fn a_trusted_proxys_places_count_only_in_the_total() {
        let limit = ConnLimit::new(3, 1, 64);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let _own = limit.acquire(ip).unwrap();
        let _a = limit.acquire_total().unwrap();
        let b = limit.acquire_total().unwrap();
        assert_eq!(limit.acquire_total().err(), Some(Refused::Total(3)));
        drop(b);
        assert_eq!(limit.acquire(ip).err(), Some(Refused::PerIp(1)), "the per-address count is untouched");
    }

    #[test]
    fn a_relayed_place_counts_under_the_address_the_relay_names() {
        let limit = ConnLimit::new(10, 1, 64);
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let mut first = limit.acquire_total().unwrap();
        first.count_as(client).unwrap();
        let mut second = limit.acquire_total().unwrap();
        assert_eq!(second.count_as(client).err(), Some(Refused::PerIp(1)));
        assert_eq!(limit.acquire(client).err(), Some(Refused::PerIp(1)), "the same client, relayed or not");
        drop((first, second));
        let open = limit.open.lock().unwrap();
        assert_eq!((open.total, open.per_ip.len()), (0, 0), "a refusal leaves no entry behind");
    }

    #[test]
    fn ipv6_addresses_count_by_network() {
        let limit = ConnLimit::new(100, 2, 64);
        let _a = limit.acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _b = limit.acquire("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap()).unwrap();
        assert_eq!(
            limit.acquire("2001:db8:1:2:1234::9".parse().unwrap()).err(),
            Some(Refused::PerIp(2)),
            "a third address of the same /64 is the same subscriber"
        );
        assert!(limit.acquire("2001:db8:1:3::1".parse().unwrap()).is_ok(), "the next /64 is someone else");
    }

    #[test]
    fn group_masks_only_ipv6() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(group(v4, 64), v4);
        assert_eq!(group("::ffff:192.0.2.7".parse().unwrap(), 64), v4);
        assert_eq!(
            group("2001:db8:aa:bb:cc::1".parse().unwrap(), 48),
            "2001:db8:aa::".parse::<IpAddr>().unwrap()
        );
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(group(one, 128), one);
    }
}
