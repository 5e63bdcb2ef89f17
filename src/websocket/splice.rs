//! The splice: once both sides have switched protocols, bytes are copied
//! both ways until the tunnel closes, idles, lingers half-closed or the
//! proxy shuts down.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::frames::{Frames, CLOSE_GRACE, CLOSE_TO_CLIENT, CLOSE_TO_UPSTREAM};

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceEnd {
    /// Both sides closed their direction.
    Closed,
    /// No bytes either way for the idle timeout.
    Idle,
    /// One side closed and the other did not follow within the linger bound.
    HalfClosedTooLong,
    /// A read or write failed (reset, broken pipe).
    Error,
    /// The proxy is shutting down.
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
pub struct SpliceStats {
    pub end: SpliceEnd,
    /// Bytes from the client to the upstream.
    pub up: u64,
    /// Bytes from the upstream to the client.
    pub down: u64,
}

/// How long a tunnel may stay half-closed after the client's FIN while
/// Vaultwarden keeps sending. Vaultwarden pings every 15 s, so traffic alone
/// would keep such a tunnel alive forever; this bound ends it.
const HALF_CLOSE_LINGER: Duration = Duration::from_secs(30);

/// After Vaultwarden's FIN (it closed the hub, or restarted), how long the
/// client gets to finish its side: a WebSocket has nothing to say to a peer
/// that is gone, and a hub left open would hide the outage from the client.
const UPSTREAM_GONE_LINGER: Duration = Duration::from_secs(2);

/// Each direction of a tunnel starts with a buffer this small (hub messages
/// are a few hundred bytes, and an idle hub should cost little memory) and
/// doubles it, up to `MAX_BUF`, whenever a read fills it.
const FIRST_BUF: usize = 1024;
const MAX_BUF: usize = 16 * 1024;

/// Copies bytes between `client` and `upstream` until both directions are
/// closed, the tunnel is idle for `idle`, it stays half-closed too long, an
/// error occurs, or `shutdown` resolves. A FIN from one side is passed on as a
/// write shutdown to the other while the opposite direction keeps flowing.
pub async fn splice<C, U>(
    client: C,
    upstream: U,
    idle: Duration,
    shutdown: impl Future<Output = ()>,
) -> SpliceStats
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    // Milliseconds since `start` of the last byte moved either way.
    let activity = AtomicU64::new(0);
    let (up_bytes, down_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut upstream_r, mut upstream_w) = tokio::io::split(upstream);

    let end = {
        // Set when stopping; the pumps look at it each time this loop polls
        // them (at once after it is set), so it needs no waking of its own.
        let closing = AtomicBool::new(false);
        let up =
            pump(&mut client_r, &mut upstream_w, start, &activity, &up_bytes, &closing, CLOSE_TO_UPSTREAM);
        let down =
            pump(&mut upstream_r, &mut client_w, start, &activity, &down_bytes, &closing, CLOSE_TO_CLIENT);
        // One wait for the stop, made once: a wait made afresh per wake-up
        // would register with the stop signal each time (BENCHMARKS.md).
        let stop_wait = shutdown;
        tokio::pin!(up, down, stop_wait);
        let (mut up_done, mut down_done) = (false, false);
        let mut linger_until: Option<Instant> = None;
        let mut stopping = false;
        loop {
            if up_done && down_done {
                break if stopping { SpliceEnd::Shutdown } else { SpliceEnd::Closed };
            }
            let idle_deadline = start + Duration::from_millis(activity.load(Ordering::Relaxed)) + idle;
            let deadline = linger_until.map_or(idle_deadline, |l| l.min(idle_deadline));
            tokio::select! {
                r = &mut up, if !up_done => {
                    if r.is_err() { break SpliceEnd::Error; }
                    up_done = true;
                    linger_until.get_or_insert(Instant::now() + HALF_CLOSE_LINGER);
                }
                r = &mut down, if !down_done => {
                    if r.is_err() { break SpliceEnd::Error; }
                    down_done = true;
                    let gone = Instant::now() + UPSTREAM_GONE_LINGER;
                    linger_until = Some(linger_until.map_or(gone, |l| l.min(gone)));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    // Traffic may have moved the idle deadline while we slept.
                    let now = Instant::now();
                    if linger_until.is_some_and(|l| now >= l) {
                        break if stopping { SpliceEnd::Shutdown } else { SpliceEnd::HalfClosedTooLong };
                    }
                    if now >= start + Duration::from_millis(activity.load(Ordering::Relaxed)) + idle {
                        break SpliceEnd::Idle;
                    }
                }
                _ = &mut stop_wait, if !stopping => {
                    // Each pump sends a WebSocket Close at its next frame
                    // boundary and ends; they get a moment to get there.
                    stopping = true;
                    closing.store(true, Ordering::Relaxed);
                    linger_until = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    };
    if end != SpliceEnd::Closed {
        // Best effort: send FIN (and TLS close_notify) both ways rather than vanish.
        let close = async {
            let _ = client_w.shutdown().await;
            let _ = upstream_w.shutdown().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    }
    SpliceStats { end, up: up_bytes.into_inner(), down: down_bytes.into_inner() }
}

/// Copies one direction until EOF, then shuts the writer down (half-close).
/// Every chunk is written and flushed at once: hub frames are tiny and must
/// never be held back. When `closing` is set it sends `close_frame` at the
/// next WebSocket frame boundary, so the peer sees a proper close, and ends.
async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    start: Instant,
    activity: &AtomicU64,
    bytes: &AtomicU64,
    closing: &AtomicBool,
    close_frame: &[u8],
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = Frames::default();
    let mut buf = vec![0u8; FIRST_BUF];
    loop {
        let n = tokio::select! {
            n = reader.read(&mut buf) => n?,
            _ = poll_fn(|_| if closing.load(Ordering::Relaxed) { Poll::Ready(()) } else { Poll::Pending }),
                if frames.at_boundary() => {
                writer.write_all(close_frame).await?;
                writer.flush().await?;
                return Ok(());
            }
        };
        if n == 0 {
            writer.shutdown().await?;
            return Ok(());
        }
        writer.write_all(&buf[..n]).await?;
        writer.flush().await?;
        frames.advance(&buf[..n]);
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        if n == buf.len() && buf.len() < MAX_BUF {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::watch;

    /// The shutdown future a caller passes: resolves once `stop` turns true.
    async fn stopping(mut stop: watch::Receiver<bool>) {
        crate::shutdown::stopped(&mut stop).await
    }

    #[tokio::test]
    async fn large_messages_pass_intact_as_the_buffers_grow() {
        let (client, mut client_peer) = tokio::io::duplex(256 * 1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(256 * 1024);
        let (_stop_tx, stop) = watch::channel(false);
        let stop = stopping(stop);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(60), stop));
        // 300 KiB that no shifted or repeated chunk could reproduce.
        let data: Vec<u8> = (0..300 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client_peer.write_all(&sent).await.unwrap();
            client_peer.shutdown().await.unwrap();
            client_peer
        });
        let mut got = Vec::new();
        upstream_peer.read_to_end(&mut got).await.unwrap();
        assert!(got == data, "byte for byte ({} of {} bytes)", got.len(), data.len());
        drop(writer.await.unwrap());
        upstream_peer.shutdown().await.unwrap();
        assert_eq!(task.await.unwrap().up, data.len() as u64);
    }

    #[tokio::test]
    async fn splice_passes_half_close_and_keeps_the_other_direction() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let (_stop_tx, stop) = watch::channel(false);
        let stop = stopping(stop);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(60), stop));

        client_peer.write_all(b"ping").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping", "upstream sees the bytes, then EOF");

        upstream_peer.write_all(b"still here").await.unwrap();
        let mut buf = [0u8; 10];
        client_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still here", "the other direction keeps flowing");
        upstream_peer.shutdown().await.unwrap();

        let stats = task.await.unwrap();
        assert_eq!((stats.end, stats.up, stats.down), (SpliceEnd::Closed, 4, 10));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_is_closed_but_traffic_resets_the_clock() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let (_stop_tx, stop) = watch::channel(false);
        let stop = stopping(stop);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(60), stop));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(40)).await;
            upstream_peer.write_all(b"p").await.unwrap();
            let mut b = [0u8; 1];
            client_peer.read_exact(&mut b).await.unwrap();
        }
        assert!(!task.is_finished(), "200 s of 40 s pings is not idle");
        let stats = task.await.unwrap();
        assert_eq!(stats.end, SpliceEnd::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn half_closed_tunnel_does_not_linger_forever() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let (_stop_tx, stop) = watch::channel(false);
        let stop = stopping(stop);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(600), stop));
        client_peer.shutdown().await.unwrap();
        // The upstream keeps pinging but never closes its side.
        let pinger = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                if upstream_peer.write_all(b"p").await.is_err() {
                    break;
                }
            }
        });
        let stats = task.await.unwrap();
        assert_eq!(stats.end, SpliceEnd::HalfClosedTooLong);
        pinger.abort();
        drop(client_peer);
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_gone_ends_the_tunnel_promptly() {
        let (client, _client_peer) = tokio::io::duplex(64);
        let (upstream, upstream_peer) = tokio::io::duplex(64);
        let (_stop_tx, stop) = watch::channel(false);
        let stop = stopping(stop);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(600), stop));
        drop(upstream_peer); // Vaultwarden restarts; the client says nothing.
        let started = Instant::now();
        let stats = task.await.unwrap();
        assert_eq!(stats.end, SpliceEnd::HalfClosedTooLong);
        assert!(started.elapsed() <= UPSTREAM_GONE_LINGER + Duration::from_millis(10));
    }

    #[tokio::test]
    async fn stop_sends_a_proper_close_both_ways() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let (stop_tx, stop) = watch::channel(false);
        let stop = stopping(stop);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(600), stop));
        // Half a frame from Vaultwarden is in flight when shutdown begins.
        upstream_peer.write_all(&[0x82, 0x03, b'a']).await.unwrap();
        let mut got = [0u8; 3];
        client_peer.read_exact(&mut got).await.unwrap();
        stop_tx.send_replace(true);
        tokio::time::sleep(Duration::from_millis(50)).await;
        upstream_peer.write_all(b"bc").await.unwrap(); // the frame completes
        let mut rest = Vec::new();
        client_peer.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            rest,
            [b'b', b'c', 0x88, 0x02, 0x03, 0xe9],
            "the Close comes after the frame, not inside it"
        );
        let mut to_upstream = Vec::new();
        upstream_peer.read_to_end(&mut to_upstream).await.unwrap();
        assert_eq!(to_upstream, CLOSE_TO_UPSTREAM, "a masked Close 1001 to Vaultwarden");
        assert_eq!(task.await.unwrap().end, SpliceEnd::Shutdown);
    }
}
