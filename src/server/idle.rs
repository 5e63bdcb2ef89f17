//! HTTP/2 idleness: a connection with no request in flight for
//! `[timeouts] keep_alive` is closed. (HTTP/1.1's idleness is hyper's header
//! read timeout.) The count is kept by the server and handed to the proxy
//! explicitly with each request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on one connection, and when the last one ended.
pub struct Activity {
    start: Instant,
    /// Requests begun so far (only whether there was one matters).
    begun: AtomicUsize,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` when the connection last became idle.
    idle_since_ms: AtomicU64,
}

/// Marks a request as in flight on its connection until dropped. The
/// server holds it until the response body ends and hands a clone to the
/// proxy, which keeps it in a hub tunnel: an HTTP/2 connection carrying a
/// hub is not idle.
pub struct Busy(Arc<Activity>);

impl Activity {
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            begun: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    pub fn begin(self: &Arc<Self>) -> Busy {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `limit`, or, before
    /// the first request (a peer that sends no preface, or only SETTINGS
    /// and PINGs), once `first` has passed.
    pub async fn idle_for(&self, first: Duration, limit: Duration) {
        loop {
            if self.begun.load(Ordering::Relaxed) == 0 {
                let due = self.start + first;
                if Instant::now() >= due {
                    return;
                }
                // Looked at again within `limit`: the first request may
                // begin meanwhile, and then `limit` is what counts.
                tokio::time::sleep_until(due.min(Instant::now() + limit)).await;
                continue;
            }
            let wake = if self.in_flight.load(Ordering::SeqCst) == 0 {
                let since = self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
                if since.elapsed() >= limit && self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                since + limit
            } else {
                Instant::now() + limit
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(self.0.start.elapsed().as_millis() as u64, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
