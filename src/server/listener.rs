//! Workers: each a thread that accepts and serves connections of its own,
//! as nginx's worker processes do with `reuseport`. The first worker is the
//! runtime that starts the server; every further one is a runtime with one
//! thread, accepting on a listening socket of its own on the same address.
//! A connection, its HTTP/2 streams, its hub tunnels and the upstream
//! connections it opens all stay on the worker that accepted it, which
//! tells the proxy its number with each connection. (One runtime with
//! several threads moves tasks between them, and every request then wakes
//! the other thread: BENCHMARKS.md.)

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use tokio::runtime::Runtime;

/// The runtimes of the workers beyond the first, shut down without waiting
/// when dropped (the server drains its connections before that).
pub struct Workers(Vec<Runtime>);

impl Workers {
    /// Builds the runtimes for a server of `count` workers in all.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        (1..count).map(runtime).collect::<std::io::Result<Vec<_>>>().map(Workers)
    }

    /// Each further worker's number (from 1) and runtime.
    pub fn runtimes(&self) -> impl Iterator<Item = (usize, &Runtime)> {
        (1..).zip(&self.0)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for runtime in self.0.drain(..) {
            runtime.shutdown_background();
        }
    }
}

fn runtime(index: usize) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("vaultgate-w{index}"))
        .enable_all()
        .build()
}

/// A listening socket for `addr`, set up as tokio's `bind` does, plus
/// SO_REUSEPORT so that each worker can have one: the kernel hashes new
/// connections over them. (One socket shared by all workers goes to whichever
/// wakes first, and one worker ends up with nearly every connection:
/// BENCHMARKS.md.) Only sockets of the same user can join, and a port held by
/// another program without the option is still refused as in use.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // Registered with this runtime by `listen`; each worker registers its own.
    socket.listen(1024)?.into_std()
}

/// Where a listener's socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Bound by vaultgate.
    Bound,
    /// Passed by systemd (socket activation): vaultgate needs no right to
    /// bind a low port, and connections that arrive while it restarts wait
    /// in the socket's queue instead of being refused.
    Inherited,
}

/// The HTTPS listener's socket: the one systemd passed for `addr`, else a
/// new one (see [`bind`]).
pub fn open(addr: SocketAddr) -> std::io::Result<(std::net::TcpListener, Origin)> {
    match take_inherited(addr) {
        Some(socket) => Ok((socket, Origin::Inherited)),
        None => Ok((bind(addr)?, Origin::Bound)),
    }
}

/// A plain listener's socket (`[redirect]`, `[metrics]`): the one systemd
/// passed for `addr`, else one bound as tokio's `bind` does.
pub fn open_plain(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    if let Some(socket) = take_inherited(addr) {
        return Ok(socket);
    }
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// Sockets systemd passed that no listener has taken yet, each logged as
/// unused and closed: a `ListenStream=` that matches no `listen` is a
/// mistake the operator should hear of.
pub fn close_unclaimed() {
    let mut left = inherited().lock().unwrap_or_else(|e| e.into_inner());
    for socket in left.drain(..) {
        let addr = socket.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string());
        tracing::warn!(
            "systemd passed a socket for {addr} that matches no listener (listen, [redirect] listen, \
             [metrics] listen); closing it"
        );
    }
}

/// The passed socket for `addr`, if there is one: the same port, and the
/// same address or either of them the wildcard (`ListenStream=443` is
/// `[::]:443`, which `listen = "0.0.0.0:443"` means as well).
fn take_inherited(addr: SocketAddr) -> Option<std::net::TcpListener> {
    let mut sockets = inherited().lock().unwrap_or_else(|e| e.into_inner());
    let at = sockets.iter().position(|s| s.local_addr().is_ok_and(|a| serves(a, addr)))?;
    let socket = sockets.remove(at);
    // systemd passes it blocking; tokio needs it not to be.
    match socket.set_nonblocking(true) {
        Ok(()) => Some(socket),
        Err(e) => {
            tracing::warn!("cannot use the socket systemd passed for {addr}: {e}; binding a new one");
            None
        }
    }
}

fn serves(passed: SocketAddr, wanted: SocketAddr) -> bool {
    passed.port() == wanted.port()
        && (passed.ip() == wanted.ip() || passed.ip().is_unspecified() || wanted.ip().is_unspecified())
}

/// What systemd passed (LISTEN_FDS, for this process by LISTEN_PID), taken
/// from the environment once per process, the TCP sockets kept.
fn inherited() -> &'static Mutex<Vec<std::net::TcpListener>> {
    static INHERITED: OnceLock<Mutex<Vec<std::net::TcpListener>>> = OnceLock::new();
    INHERITED.get_or_init(|| {
        use std::os::fd::FromRawFd;
        let fds = match sd_notify::listen_fds() {
            Ok(fds) => fds,
            Err(e) => {
                tracing::warn!("ignoring the sockets systemd passed (LISTEN_FDS): {e}");
                return Mutex::new(Vec::new());
            }
        };
        let sockets = fds
            .filter_map(|fd| {
                // SAFETY: LISTEN_PID names this process, so systemd passed
                // these descriptors for it to own, and the OnceLock takes
                // each exactly once.
                let socket = unsafe { std::net::TcpListener::from_raw_fd(fd) };
                match socket.local_addr() {
                    Ok(addr) if addr.is_ipv4() || addr.is_ipv6() => Some(socket),
                    _ => {
                        tracing::warn!("descriptor {fd} passed by systemd is not a TCP socket; closing it");
                        None
                    }
                }
            })
            .collect();
        Mutex::new(sockets)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_socket_serves_its_port_on_the_same_or_any_address() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(serves(at("[::]:443"), at("0.0.0.0:443")));
        assert!(serves(at("0.0.0.0:443"), at("192.0.2.1:443")));
        assert!(serves(at("192.0.2.1:443"), at("0.0.0.0:443")));
        assert!(serves(at("127.0.0.1:8443"), at("127.0.0.1:8443")));
        assert!(!serves(at("127.0.0.1:8443"), at("127.0.0.2:8443")));
        assert!(!serves(at("[::]:80"), at("0.0.0.0:443")));
    }
}
