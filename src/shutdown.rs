//! Shutdown: the stop signal every long-lived task watches, and the
//! tracker that lets the server wait for those tasks to end.

use tokio::sync::{mpsc, watch};

/// Counts live tasks (connections, hub tunnels) so shutdown can wait for them.
/// Each task holds a token; when the last token and the tracker itself are
/// gone, [`Tracker::wait`] returns.
#[derive(Clone)]
pub struct Tracker(mpsc::Sender<()>);

pub struct TrackerToken(#[allow(dead_code)] mpsc::Sender<()>);

impl Tracker {
    pub fn new() -> (Tracker, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel(1);
        (Tracker(tx), rx)
    }

    pub fn token(&self) -> TrackerToken {
        TrackerToken(self.0.clone())
    }
}

/// Resolves once shutdown has begun. (Drops the watch guard before returning,
/// so it can sit in a `select!` of a task that must be `Send`.)
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
