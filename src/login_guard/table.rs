//! The guard's memory, pure: failed logins counted per client address, the
//! bans they lead to, and the bounds that keep a flood of addresses from
//! growing it. Time is passed in (milliseconds since the Unix epoch), so
//! every rule here is tested without waiting.
//!
//! Two bounded maps, each evicting its least recently touched entry when
//! full: addresses still being counted, and banned addresses. Apart, so
//! that a flood of addresses failing once each (cheap for an attacker with
//! many addresses) evicts only other counts, never a ban: to push a ban out
//! an attacker must get as many addresses banned.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use crate::config::LoginGuard;
use crate::conn_limit::group;

/// Addresses counted at most (about 150 bytes each: some 15 MB when full).
pub const MAX_COUNTED: usize = 100_000;
/// Bans kept at most.
pub const MAX_BANNED: usize = 100_000;

/// A map that remembers in which order its keys were last touched, and
/// drops the stalest when it would grow past `cap`.
struct Recent<T> {
    cap: usize,
    entries: HashMap<IpAddr, (u64, T)>,
    /// Touch order: sequence number → key.
    order: BTreeMap<u64, IpAddr>,
    seq: u64,
}

impl<T> Recent<T> {
    fn new(cap: usize) -> Self {
        Recent { cap, entries: HashMap::new(), order: BTreeMap::new(), seq: 0 }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, key: &IpAddr) -> Option<&T> {
        self.entries.get(key).map(|(_, v)| v)
    }

    /// The entry, marked as touched now.
    fn touch(&mut self, key: IpAddr) -> Option<&mut T> {
        let (seq, value) = self.entries.get_mut(&key)?;
        self.order.remove(seq);
        self.seq += 1;
        *seq = self.seq;
        self.order.insert(self.seq, key);
        Some(value)
    }

    /// Inserts (or replaces) `key`; evicts the stalest entry first when full.
    fn insert(&mut self, key: IpAddr, value: T) {
        self.remove(&key);
        if self.entries.len() >= self.cap {
            if let Some((_, stalest)) = self.order.pop_first() {
                self.entries.remove(&stalest);
            }
        }
        self.seq += 1;
        self.order.insert(self.seq, key);
        self.entries.insert(key, (self.seq, value));
    }

    fn remove(&mut self, key: &IpAddr) -> Option<T> {
        let (seq, value) = self.entries.remove(key)?;
        self.order.remove(&seq);
        Some(value)
    }

    fn iter(&self) -> impl Iterator<Item = (&IpAddr, &T)> {
        self.entries.iter().map(|(k, (_, v))| (k, v))
    }
}

/// An address not banned now, with failures or a record of past bans.
#[derive(Debug, Clone, Copy)]
struct Counting {
    failures: u32,
    /// When the first failure of this count came.
    first: u64,
    /// When a success last wiped the count (see [`Table::succeeded`]).
    forgiven: Option<u64>,
    /// Bans so far (each one doubles the next).
    strikes: u32,
    /// When the last ban ended: strikes are forgotten `max_ban` later.
    last_ban_end: u64,
}

/// A banned address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// Milliseconds since the Unix epoch when it ends.
    pub until: u64,
    /// Bans of this address so far, this one included.
    pub strikes: u32,
}

/// What a failure did when it banned its address: the log line's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banned {
    /// The address as counted (an IPv6 address cut to its network).
    pub key: IpAddr,
    pub failures: u32,
    /// From the first counted failure to the last.
    pub over: Duration,
    pub ban: Duration,
    pub strikes: u32,
}

/// A ban that has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub key: IpAddr,
    pub strikes: u32,
}

pub struct Table {
    rules: LoginGuard,
    ipv6_prefix: u8,
    counting: Recent<Counting>,
    banned: Recent<Ban>,
    /// Logins sent to Vaultwarden and not yet answered, per address: with
    /// the failures so far they may not exceed `max_failures`, or a burst
    /// of parallel guesses would all be let through before the ban lands.
    /// Bounded by the requests in flight (the upstream caps).
    pending: HashMap<IpAddr, u32>,
}

impl Table {
    pub fn new(rules: LoginGuard, ipv6_prefix: u8) -> Table {
        Table::bounded(rules, ipv6_prefix, MAX_COUNTED, MAX_BANNED)
    }

    pub fn bounded(rules: LoginGuard, ipv6_prefix: u8, counted: usize, banned: usize) -> Table {
        Table {
            rules,
            ipv6_prefix,
            counting: Recent::new(counted),
            banned: Recent::new(banned),
            pending: HashMap::new(),
        }
    }

    /// New rules (a reload); counts and bans stay, but for addresses the
    /// new `allow` covers.
    pub fn set_rules(&mut self, rules: LoginGuard, ipv6_prefix: u8) {
        self.rules = rules;
        self.ipv6_prefix = ipv6_prefix;
        let allowed: Vec<IpAddr> = self.banned.iter().map(|(k, _)| *k).filter(|k| self.allowed(*k)).collect();
        for key in allowed {
            self.banned.remove(&key);
        }
    }

    /// What `ip` is counted and banned as: itself, or its IPv6 network.
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        group(ip, self.ipv6_prefix)
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.rules.allow.iter().any(|net| net.contains(ip))
    }

    /// The ban on `ip`'s address, if one is in force at `now`.
    pub fn ban_of(&self, ip: IpAddr, now: u64) -> Option<Ban> {
        if !self.rules.enabled {
            return None;
        }
        // An allowed host is never banned, also when the IPv6 network it
        // is grouped with is.
        self.banned.get(&self.key(ip)).copied().filter(|b| b.until > now && !self.allowed(ip))
    }

    /// Whether a failed login from `ip` at `now` is counted: not when the
    /// guard is off, the address allowed or already banned.
    pub fn counts(&self, ip: IpAddr, now: u64) -> bool {
        self.rules.enabled && !self.allowed(ip) && self.ban_of(ip, now).is_none()
    }

    /// A login from `ip` about to be sent at `now`: `Err` when the failures
    /// counted in the window and the logins still unanswered already reach
    /// `max_failures` (it must wait for those answers); `Ok(Some(key))`
    /// when it is now unanswered under `key`, to be followed by one
    /// [`Table::answered`] with that key; `Ok(None)` when it is not counted
    /// (the guard off, the address allowed).
    pub fn begin(&mut self, ip: IpAddr, now: u64) -> Result<Option<IpAddr>, ()> {
        if !self.rules.enabled || self.allowed(ip) {
            return Ok(None);
        }
        let key = self.key(ip);
        let window = self.rules.window.as_millis() as u64;
        let failures = self
            .counting
            .get(&key)
            .filter(|c| now.saturating_sub(c.first) <= window)
            .map_or(0, |c| c.failures);
        let pending = self.pending.entry(key).or_insert(0);
        if failures + *pending >= self.rules.max_failures {
            if *pending == 0 {
                self.pending.remove(&key);
            }
            return Err(());
        }
        *pending += 1;
        Ok(Some(key))
    }

    /// The login [`Table::begin`] let through under `key` has its answer (or none).
    pub fn answered(&mut self, key: IpAddr) {
        if let Some(pending) = self.pending.get_mut(&key) {
            *pending -= 1;
            if *pending == 0 {
                self.pending.remove(&key);
            }
        }
    }

    /// A failed login from `ip` at `now`; `Some` when it bans the address.
    pub fn failed(&mut self, ip: IpAddr, now: u64) -> Option<Banned> {
        if !self.rules.enabled || self.allowed(ip) {
            return None;
        }
        let key = self.key(ip);
        if self.ban_of(key, now).is_some() {
            // An answer to a request let through before the ban.
            return None;
        }
        let window = self.rules.window.as_millis() as u64;
        let max_ban = self.rules.max_ban.as_millis() as u64;
        let fresh = Counting { failures: 0, first: now, forgiven: None, strikes: 0, last_ban_end: 0 };
        let mut c = match self.counting.touch(key) {
            Some(c) => *c,
            None => fresh,
        };
        if c.strikes > 0 && now.saturating_sub(c.last_ban_end) > max_ban {
            c.strikes = 0;
        }
        if c.failures == 0 || now.saturating_sub(c.first) > window {
            c.failures = 0;
            c.first = now;
        }
        c.failures += 1;
        if c.failures < self.rules.max_failures {
            self.counting.insert(key, c);
            return None;
        }
        self.counting.remove(&key);
        // 1 h, 2 h, 4 h … up to the cap; the shift is bounded so it cannot overflow.
        let ban = (self.rules.ban.as_millis() as u64).saturating_mul(1u64 << c.strikes.min(40)).min(max_ban);
        let strikes = c.strikes + 1;
        self.banned.insert(key, Ban { until: now.saturating_add(ban), strikes });
        Some(Banned {
            key,
            failures: c.failures,
            over: Duration::from_millis(now.saturating_sub(c.first)),
            ban: Duration::from_millis(ban),
            strikes,
        })
    }

    /// A successful login from `ip` at `now` wipes its count — at most once
    /// per `window`: otherwise a guesser with an account of their own would
    /// log into it after every few guesses and never be banned. So within
    /// any window an address gets fewer than twice `max_failures` tries.
    pub fn succeeded(&mut self, ip: IpAddr, now: u64) {
        let key = self.key(ip);
        let window = self.rules.window.as_millis() as u64;
        if let Some(c) = self.counting.touch(key) {
            if c.failures > 0 && c.forgiven.is_none_or(|at| now.saturating_sub(at) >= window) {
                c.failures = 0;
                c.forgiven = Some(now);
            }
        }
    }

    /// Lifts the ban on `ip`'s address and forgets its record; whether
    /// there was one.
    pub fn unban(&mut self, ip: IpAddr) -> bool {
        let key = self.key(ip);
        self.counting.remove(&key);
        self.banned.remove(&key).is_some()
    }

    /// Ends the bans whose time is up; they keep their strikes (see
    /// [`Counting::last_ban_end`]).
    pub fn sweep(&mut self, now: u64) -> Vec<Ended> {
        let over: Vec<(IpAddr, Ban)> =
            self.banned.iter().filter(|(_, b)| b.until <= now).map(|(k, b)| (*k, *b)).collect();
        over.into_iter()
            .map(|(key, ban)| {
                self.banned.remove(&key);
                let record = Counting {
                    failures: 0,
                    first: now,
                    forgiven: None,
                    strikes: ban.strikes,
                    last_ban_end: ban.until,
                };
                self.counting.insert(key, record);
                Ended { key, strikes: ban.strikes }
            })
            .collect()
    }

    /// The bans in force, soonest ending first.
    pub fn bans(&self, now: u64) -> Vec<(IpAddr, Ban)> {
        let mut all: Vec<(IpAddr, Ban)> =
            self.banned.iter().filter(|(_, b)| b.until > now).map(|(k, b)| (*k, *b)).collect();
        all.sort_by_key(|(k, b)| (b.until, *k));
        all
    }

    /// Puts back a ban read from the state file (unless over, or allowed now).
    pub fn restore(&mut self, key: IpAddr, ban: Ban, now: u64) {
        let key = self.key(key);
        if ban.until > now && !self.allowed(key) {
            self.banned.insert(key, ban);
        }
    }

    pub fn banned_count(&self) -> usize {
        self.banned.len()
    }

    #[cfg(test)]
    pub fn counted_count(&self) -> usize {
        self.counting.len()
    }
}

/// An address as bans name it: IPv4 as it is, an IPv6 network with its
/// length (an address alone when every address counts alone).
pub fn show_key(key: IpAddr, ipv6_prefix: u8) -> String {
    match key {
        IpAddr::V6(v6) if ipv6_prefix < 128 => format!("{v6}/{ipv6_prefix}"),
        other => other.to_string(),
    }
}

/// `4m12s`, `1h`, `2h30m`, `3d`: how the log lines write a span.
pub fn human(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60_000;

    fn rules(extra: impl FnOnce(&mut LoginGuard)) -> LoginGuard {
        let mut r = LoginGuard::default();
        extra(&mut r);
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Fails `n` times from `who`, a second apart from `start`; the last result.
    fn fail_n(t: &mut Table, who: &str, n: u32, start: u64) -> Option<Banned> {
        let mut last = None;
        for i in 0..n {
            last = t.failed(ip(who), start + u64::from(i) * 1000);
        }
        last
    }

    #[test]
    fn spans_and_keys_read_like_the_log_line() {
        assert_eq!(human(Duration::from_secs(252)), "4m12s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(9000)), "2h30m");
        assert_eq!(human(Duration::from_millis(400)), "0s");
        assert_eq!(show_key(ip("203.0.113.7"), 64), "203.0.113.7");
        assert_eq!(show_key(ip("2001:db8:1:2::"), 64), "2001:db8:1:2::/64");
        assert_eq!(show_key(ip("2001:db8::5"), 128), "2001:db8::5");
    }

    #[test]
    fn the_tenth_failure_within_the_window_bans_for_an_hour() {
        let mut t = Table::new(rules(|_| {}), 64);
        assert_eq!(fail_n(&mut t, "203.0.113.7", 9, 0), None);
        assert!(t.ban_of(ip("203.0.113.7"), 9000).is_none());
        let banned = t.failed(ip("203.0.113.7"), 4 * MIN + 12_000).expect("the tenth bans");
        assert_eq!(banned.failures, 10);
        assert_eq!(banned.over, Duration::from_secs(4 * 60 + 12));
        assert_eq!(banned.ban, Duration::from_secs(3600));
        let ban = t.ban_of(ip("203.0.113.7"), 4 * MIN + 12_001).unwrap();
        assert_eq!(ban.until, 4 * MIN + 12_000 + 3_600_000);
        assert!(t.ban_of(ip("203.0.113.8"), 4 * MIN + 12_001).is_none(), "another address is not banned");
        assert!(t.ban_of(ip("203.0.113.7"), ban.until).is_none(), "over when its time is up");
    }

    #[test]
    fn failures_older_than_the_window_start_a_new_count() {
        let mut t = Table::new(rules(|_| {}), 64);
        fail_n(&mut t, "198.51.100.1", 9, 0);
        // The tenth comes 10 min and a second after the first: a new count of one.
        assert_eq!(t.failed(ip("198.51.100.1"), 10 * MIN + 1000), None);
        assert_eq!(fail_n(&mut t, "198.51.100.1", 8, 10 * MIN + 2000), None);
        assert!(t.failed(ip("198.51.100.1"), 10 * MIN + 20_000).is_some(), "ten in the new window");
    }

    #[test]
    fn repeat_offenders_get_doubled_bans_up_to_the_cap() {
        let mut t = Table::new(rules(|r| r.max_ban = Duration::from_secs(4 * 3600)), 64);
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..5 {
            let b = fail_n(&mut t, "192.0.2.9", 10, now).unwrap();
            lengths.push(b.ban.as_secs() / 3600);
            now += 9000 + b.ban.as_millis() as u64;
            let ended = t.sweep(now);
            assert_eq!(ended, vec![Ended { key: ip("192.0.2.9"), strikes: b.strikes }]);
            now += 1000;
        }
        assert_eq!(lengths, [1, 2, 4, 4, 4]);
    }

    #[test]
    fn strikes_are_forgotten_after_a_quiet_spell_as_long_as_the_cap() {
        let mut t = Table::new(rules(|r| r.max_ban = Duration::from_secs(4 * 3600)), 64);
        let b = fail_n(&mut t, "192.0.2.9", 10, 0).unwrap();
        let end = 9000 + b.ban.as_millis() as u64;
        t.sweep(end);
        let again = fail_n(&mut t, "192.0.2.9", 10, end + 4 * 3_600_000 + 1000).unwrap();
        assert_eq!(again.ban, Duration::from_secs(3600), "a first offence again");
    }

    #[test]
    fn a_success_wipes_the_count_but_only_once_per_window() {
        let mut t = Table::new(rules(|_| {}), 64);
        fail_n(&mut t, "192.0.2.1", 9, 0);
        t.succeeded(ip("192.0.2.1"), 9000);
        assert_eq!(fail_n(&mut t, "192.0.2.1", 9, 10_000), None, "the typos before were forgiven");
        // A guesser logging into an account of their own after every nine
        // guesses: the second success within the window forgives nothing.
        t.succeeded(ip("192.0.2.1"), 20_000);
        assert!(t.failed(ip("192.0.2.1"), 21_000).is_some(), "banned at the tenth since the forgiving");
    }

    #[test]
    fn a_guesser_with_an_account_of_their_own_gets_fewer_than_twice_the_tries_per_window() {
        let mut t = Table::new(rules(|_| {}), 64);
        let mut tries = 0;
        let mut now = 0;
        while t.ban_of(ip("192.0.2.2"), now).is_none() {
            now += 1000;
            tries += 1;
            t.failed(ip("192.0.2.2"), now);
            t.succeeded(ip("192.0.2.2"), now + 1);
        }
        assert!(tries < 20, "{tries} tries");
    }

    #[test]
    fn allowed_networks_are_never_banned() {
        let allow = vec!["192.168.0.0/16".parse().unwrap(), "2001:db8:1::/48".parse().unwrap()];
        let mut t = Table::new(rules(|r| r.allow = allow), 64);
        assert_eq!(fail_n(&mut t, "192.168.1.20", 100, 0), None);
        assert_eq!(fail_n(&mut t, "2001:db8:1:2::3", 100, 0), None);
        assert_eq!(t.counted_count(), 0, "not even counted");
        assert!(fail_n(&mut t, "192.169.0.1", 10, 0).is_some());
    }

    #[test]
    fn parallel_logins_wait_once_failures_and_unanswered_ones_reach_the_limit() {
        let allow = vec!["2001:db8:9:9::5/128".parse().unwrap()];
        let mut t = Table::new(rules(|r| r.allow = allow), 64);
        let who = ip("192.0.2.4");
        fail_n(&mut t, "192.0.2.4", 7, 0);
        // 50 guesses sent at once: only three go out before any answer.
        let sent: Vec<_> = (0..50).filter_map(|_| t.begin(who, 10).ok()).collect();
        assert_eq!(sent, vec![Some(t.key(who)); 3]);
        // Their answers: the third failure bans, nothing more was guessed.
        for (i, key) in sent.into_iter().enumerate() {
            t.answered(key.unwrap());
            assert_eq!(t.failed(who, 11 + i as u64).is_some(), i == 2, "answer {i}");
        }
        assert!(t.pending.is_empty(), "every begin answered");
        // Another address is not held back meanwhile; an allowed host is not
        // counted, and its logins never stand for its /64's.
        let neighbour = t.begin(ip("2001:db8:9:9::6"), 14).unwrap().unwrap();
        assert_eq!(t.begin(ip("2001:db8:9:9::5"), 14), Ok(None));
        assert_eq!(t.pending.get(&neighbour), Some(&1));
        t.answered(neighbour);
        assert!(t.pending.is_empty());
    }

    #[test]
    fn an_allowed_host_is_not_banned_with_its_ipv6_network_and_a_reload_lifts_what_it_allows() {
        let monitor = ip("2001:db8:1:2::5");
        let mut t = Table::new(rules(|r| r.allow = vec!["2001:db8:1:2::5/128".parse().unwrap()]), 64);
        assert!(fail_n(&mut t, "2001:db8:1:2::6", 10, 0).is_some(), "its neighbour's /64 is banned");
        assert!(t.ban_of(ip("2001:db8:1:2::7"), 20_000).is_some());
        assert!(t.ban_of(monitor, 20_000).is_none(), "the allowed host is not");
        fail_n(&mut t, "192.0.2.9", 10, 0);
        assert!(t.ban_of(ip("192.0.2.9"), 20_000).is_some());
        t.set_rules(rules(|r| r.allow = vec!["192.0.2.0/24".parse().unwrap()]), 64);
        assert!(t.ban_of(ip("192.0.2.9"), 20_000).is_none(), "allowed now");
        assert_eq!(t.banned_count(), 1, "its ban is gone, not just hidden; the /64's stays");
    }

    #[test]
    fn off_bans_nobody() {
        let mut t = Table::new(rules(|r| r.enabled = false), 64);
        assert_eq!(fail_n(&mut t, "192.0.2.1", 100, 0), None);
    }

    #[test]
    fn ipv6_addresses_of_one_64_are_counted_and_banned_together() {
        let mut t = Table::new(rules(|_| {}), 64);
        for i in 0..9u32 {
            assert_eq!(t.failed(ip(&format!("2001:db8:aa:bb::{:x}", i + 1)), u64::from(i)), None);
        }
        let b = t.failed(ip("2001:db8:aa:bb:ffff::1"), 100).unwrap();
        assert_eq!(b.key, ip("2001:db8:aa:bb::"));
        assert!(t.ban_of(ip("2001:db8:aa:bb:1234::5"), 200).is_some(), "the whole /64");
        assert!(t.ban_of(ip("2001:db8:aa:bc::1"), 200).is_none(), "not the next /64");
        // An IPv4 client written as IPv4-mapped IPv6 is the IPv4 address.
        fail_n(&mut t, "::ffff:192.0.2.77", 10, 0);
        assert!(t.ban_of(ip("192.0.2.77"), 20_000).is_some());
    }

    #[test]
    fn unban_lifts_the_ban_and_forgets_the_record() {
        let mut t = Table::new(rules(|_| {}), 64);
        fail_n(&mut t, "192.0.2.3", 10, 0);
        assert!(t.unban(ip("192.0.2.3")));
        assert!(t.ban_of(ip("192.0.2.3"), 10_000).is_none());
        assert!(!t.unban(ip("192.0.2.3")), "nothing left to lift");
        let again = fail_n(&mut t, "192.0.2.3", 10, 20_000).unwrap();
        assert_eq!(again.strikes, 1, "a first offence again");
    }

    #[test]
    fn failures_answered_after_the_ban_do_not_extend_it() {
        let mut t = Table::new(rules(|_| {}), 64);
        let b = fail_n(&mut t, "192.0.2.4", 10, 0).unwrap();
        let until = t.ban_of(ip("192.0.2.4"), 10_000).unwrap().until;
        assert_eq!(t.failed(ip("192.0.2.4"), 10_000), None);
        assert_eq!(t.ban_of(ip("192.0.2.4"), 10_000).unwrap().until, until);
        assert_eq!(b.strikes, 1);
    }

    #[test]
    fn a_flood_of_distinct_failing_addresses_stays_bounded_and_keeps_the_bans() {
        let mut t = Table::new(rules(|_| {}), 64);
        fail_n(&mut t, "192.0.2.200", 10, 0);
        let mut peak = 0;
        for i in 0..(MAX_COUNTED as u32 + 100_000) {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(addr, 10_000 + u64::from(i));
            peak = peak.max(t.counted_count());
        }
        assert_eq!(peak, MAX_COUNTED, "never more than the bound");
        assert!(t.ban_of(ip("192.0.2.200"), 20_000).is_some(), "a flood of counts evicts no ban");
        // The oldest counts went first: the newest is still counted.
        let newest = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + MAX_COUNTED as u32 + 99_999));
        assert!(t.counting.get(&t.key(newest)).is_some());
        assert!(t.counting.get(&ip("10.0.0.0")).is_none());
    }

    #[test]
    fn bans_are_bounded_too_and_the_oldest_goes_first() {
        let mut t = Table::bounded(rules(|r| r.max_failures = 1), 64, 10, 3);
        for i in 1..=5 {
            t.failed(ip(&format!("192.0.2.{i}")), i);
        }
        assert_eq!(t.banned_count(), 3);
        assert!(t.ban_of(ip("192.0.2.2"), 10).is_none());
        assert!(t.ban_of(ip("192.0.2.3"), 10).is_some());
    }

    #[test]
    fn restored_bans_hold_until_their_end() {
        let mut t = Table::new(rules(|_| {}), 64);
        t.restore(ip("192.0.2.5"), Ban { until: 5000, strikes: 2 }, 1000);
        t.restore(ip("192.0.2.6"), Ban { until: 500, strikes: 1 }, 1000);
        assert_eq!(t.bans(1000), vec![(ip("192.0.2.5"), Ban { until: 5000, strikes: 2 })]);
        // Its strikes carry on: the next ban is the third, four hours.
        t.sweep(5000);
        assert_eq!(fail_n(&mut t, "192.0.2.5", 10, 6000).unwrap().ban, Duration::from_secs(4 * 3600));
    }

    proptest! {
        /// Whatever mix of failures, successes and time: the maps stay
        /// within their bounds, an allowed address is never banned, and a
        /// ban never outlasts the cap.
        #[test]
        fn bounded_and_never_banning_the_allowed(
            events in proptest::collection::vec((0u8..40, any::<bool>(), 0u64..200_000), 1..400)
        ) {
            let allow = vec!["10.0.0.0/30".parse().unwrap()];
            let mut t = Table::bounded(rules(|r| { r.allow = allow; r.max_failures = 3 }), 64, 16, 8);
            let mut now = 0;
            for (who, ok, dt) in events {
                now += dt;
                let addr = IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, who));
                if ok { t.succeeded(addr, now) } else if let Some(b) = t.failed(addr, now) {
                    prop_assert!(who >= 4, "{addr} is allowed");
                    prop_assert!(b.ban <= Duration::from_secs(7 * 86400));
                }
                t.sweep(now);
                prop_assert!(t.counted_count() <= 16 && t.banned_count() <= 8);
            }
        }
    }
}
