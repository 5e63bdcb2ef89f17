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
