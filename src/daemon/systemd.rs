//! Telling systemd (`Type=notify`) where the service stands: READY=1 once
//! every listener accepts, RELOADING=1 and READY=1 around a reload,
//! STOPPING=1 when the drain begins. Nothing is sent when NOTIFY_SOCKET is
//! unset, so running by hand, in a container or under tests is unchanged.

use sd_notify::NotifyState;

/// Every listener is bound and accepting (or a reload has finished, applied
/// or refused: either way a configuration is in force).
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// A reload begins. MONOTONIC_USEC lets systemd ≥ 253 tell this reload from
/// an earlier one; older versions ignore it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The listeners close and the drain begins.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd through NOTIFY_SOCKET: {e}");
    }
}
