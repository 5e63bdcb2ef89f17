//! Caps on open client connections: in total, and per client IP, so that one
//! address opening thousands of silent connections cannot crowd out others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct ConnLimit {
    max_total: usize,
    max_per_ip: usize,
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

/// One open connection; dropping it frees the place.
pub struct Slot {
    limit: Arc<ConnLimit>,
    ip: IpAddr,
}

impl ConnLimit {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimit> {
        Arc::new(ConnLimit { max_total, max_per_ip, open: Mutex::default(), last_warned: AtomicU64::new(0) })
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let ip = ip.to_canonical();
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
        Ok(Slot { limit: self.clone(), ip })
    }

    /// True at most once a second: whether to log a refusal now.
    pub fn should_warn(&self) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.last_warned.swap(now, Ordering::Relaxed) != now
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_caps_and_release() {
        let limit = ConnLimit::new(3, 2);
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
        let limit = ConnLimit::new(10, 10);
        for i in 0..100u8 {
            let _slot = limit.acquire(IpAddr::from([10, 0, 0, i])).unwrap();
        }
        let open = limit.open.lock().unwrap();
        assert_eq!((open.total, open.per_ip.len()), (0, 0));
    }
}
