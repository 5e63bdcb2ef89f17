//! `[login_guard]`: the front door bans password guessers itself. It counts
//! failed logins as Vaultwarden answers them (`judge.rs` reads the answers),
//! per client address as `[client_ip]` resolves it, and bans an address
//! that fails too often (`table.rs`); bans are kept on disk (`state.rs`).
//!
//! One [`Guard`] per process, shared by every worker and carried over
//! reloads, so neither a reload nor the worker a connection lands on
//! changes what an address has done.

pub mod cli;
pub mod judge;
pub mod state;
pub mod table;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::config::Config;
use crate::observe::metrics::Metrics;
use table::{human, show_key, Banned, Table};

pub struct Guard {
    table: Mutex<Table>,
    /// Bans in force (as of the last change): while none, requests are
    /// let through without taking the lock.
    active: AtomicUsize,
    state_file: Mutex<Option<PathBuf>>,
    /// Bans changed since the state file was last written.
    dirty: AtomicBool,
    metrics: Arc<Metrics>,
    /// Bumped at every ban: open hub tunnels wake and ask whether theirs
    /// is the banned address (one wake per ban, no scan per request).
    bans: watch::Sender<u64>,
    /// `[limits] ipv6_prefix`, for naming IPv6 networks in log lines.
    ipv6_prefix: AtomicU8,
}

/// Milliseconds since the Unix epoch: bans end at wall-clock times, which
/// the state file keeps across restarts.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A login sent and not yet answered (see [`Guard::begin`]).
pub struct Pending<'a> {
    guard: &'a Guard,
    /// What it is counted under; `None`: not counted (allowed, or off).
    key: Option<IpAddr>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.guard.lock().answered(key);
        }
    }
}

impl Guard {
    /// The guard for `config`, with the bans its state file holds and any
    /// unban requests left while no vaultgate ran.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Arc<Guard> {
        let guard = Arc::new(Guard {
            table: Mutex::new(Table::new(config.login_guard.clone(), config.limits.ipv6_prefix)),
            active: AtomicUsize::new(0),
            state_file: Mutex::new(None),
            dirty: AtomicBool::new(false),
            metrics,
            bans: watch::Sender::new(0),
            ipv6_prefix: AtomicU8::new(config.limits.ipv6_prefix),
        });
        guard.configure(config);
        match &config.login_guard.state_file {
            Some(path) if config.login_guard.enabled => {
                tracing::info!("login guard: bans are kept in {}", path.display())
            }
            None if config.login_guard.enabled => tracing::info!(
                "login guard: bans are kept in memory only (set [login_guard] state_file to keep them across restarts)"
            ),
            _ => tracing::info!("login guard: off ([login_guard] enabled = false)"),
        }
        guard
    }

    /// Takes `config`'s rules (a reload): counts and bans stay; a new state
    /// file is read and its bans added.
    pub fn configure(&self, config: &Config) {
        let rules = config.login_guard.clone();
        let path = rules.state_file.clone();
        self.lock().set_rules(rules, config.limits.ipv6_prefix);
        self.ipv6_prefix.store(config.limits.ipv6_prefix, Ordering::Relaxed);
        let changed = {
            let mut current = self.state_file.lock().unwrap_or_else(|e| e.into_inner());
            let changed = *current != path;
            *current = path.clone();
            changed
        };
        if changed {
            if let Some(path) = path {
                match state::load(&path) {
                    Ok(bans) => {
                        let now = now_ms();
                        let mut table = self.lock();
                        for (key, ban) in bans {
                            table.restore(key, ban, now);
                        }
                    }
                    Err(e) => tracing::warn!("login guard: {e}; starting without its bans"),
                }
                self.dirty.store(true, Ordering::Relaxed);
            }
        }
        self.tick();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `ip`'s address stays banned, if it is.
    pub fn banned(&self, ip: IpAddr) -> Option<Duration> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = now_ms();
        self.lock().ban_of(ip, now).map(|b| Duration::from_millis(b.until - now))
    }

    /// Resolves once `ip`'s address is banned (at once if it is).
    pub async fn until_banned(&self, ip: IpAddr) {
        // Subscribed before looking: a ban between the look and the wait
        // still wakes it.
        let mut events = self.bans.subscribe();
        loop {
            if self.banned(ip).is_some() {
                return;
            }
            if events.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Vaultwarden refused a login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let banned = {
            let mut table = self.lock();
            if !table.counts(ip, now_ms()) {
                return;
            }
            self.metrics.login_failed();
            let banned = table.failed(ip, now_ms());
            self.active.store(table.banned_count(), Ordering::Relaxed);
            banned
        };
        if let Some(b) = banned {
            self.on_ban(b);
        }
    }

    /// A login from `ip` about to go to Vaultwarden: `None` when the
    /// failures counted and the logins unanswered already reach the
    /// limit; else the ticket that marks it unanswered until dropped.
    pub fn begin(&self, ip: IpAddr) -> Option<Pending<'_>> {
        // The lock is let go first: a ticket's drop takes it again.
        let sent = self.lock().begin(ip, now_ms());
        sent.ok().map(|key| Pending { guard: self, key })
    }

    /// Vaultwarden accepted a login from `ip`.
    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().succeeded(ip, now_ms());
    }

    fn on_ban(&self, b: Banned) {
        // The one line per ban, in a fixed format that fail2ban could read:
        // README "Login guard" documents it.
        tracing::warn!(
            target: "vaultgate::login_guard",
            "ban {} after {} failed logins in {} for {}",
            self.show(b.key),
            b.failures,
            human(b.over),
            human(b.ban)
        );
        self.metrics.banned();
        self.metrics.set_bans_active(self.active.load(Ordering::Relaxed));
        self.dirty.store(true, Ordering::Relaxed);
        self.bans.send_modify(|n| *n += 1);
    }

    /// Lifts the ban on `ip`'s address (an operator's request).
    pub fn unban(&self, ip: IpAddr) -> bool {
        let (key, lifted) = {
            let mut table = self.lock();
            let key = table.key(ip);
            let lifted = table.unban(ip);
            self.active.store(table.banned_count(), Ordering::Relaxed);
            (key, lifted)
        };
        if lifted {
            tracing::warn!(target: "vaultgate::login_guard", "unban {} by request", self.show(key));
            self.dirty.store(true, Ordering::Relaxed);
        } else {
            tracing::info!(target: "vaultgate::login_guard", "unban request for {}: not banned", self.show(key));
        }
        self.metrics.set_bans_active(self.active.load(Ordering::Relaxed));
        lifted
    }

    /// Once a second: ends the bans whose time is up, applies unban
    /// requests, and writes the state file if anything changed.
    pub fn tick(&self) {
        let path = self.state_file.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(path) = &path {
            for ip in state::take_unban_requests(path) {
                self.unban(ip);
            }
        }
        let now = now_ms();
        let (ended, bans) = {
            let mut table = self.lock();
            let ended = table.sweep(now);
            self.active.store(table.banned_count(), Ordering::Relaxed);
            (ended, table.bans(now))
        };
        for e in &ended {
            tracing::warn!(target: "vaultgate::login_guard", "unban {} after its ban ended", self.show(e.key));
        }
        self.metrics.set_bans_active(bans.len());
        let changed = self.dirty.swap(false, Ordering::Relaxed) || !ended.is_empty();
        if let (true, Some(path)) = (changed, &path) {
            if let Err(e) = state::save(path, &bans) {
                tracing::error!("login guard: cannot write {}: {e}", path.display());
                self.dirty.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Ticks every second until `stop` (and once more at the end, so a ban
    /// of the last second is on disk).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = crate::shutdown::stopped(&mut stop) => break,
            }
            let guard = self.clone();
            // File I/O, off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || guard.tick()).await;
        }
        let guard = self.clone();
        let _ = tokio::task::spawn_blocking(move || guard.tick()).await;
    }
}

impl Guard {
    fn show(&self, key: IpAddr) -> String {
        show_key(key, self.ipv6_prefix.load(Ordering::Relaxed))
    }
}
