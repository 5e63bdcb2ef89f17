//! One client connection, as the requests on it see it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use tokio::sync::{watch, Semaphore};

use crate::conn_limit::Slot;
use crate::http::client_cert::ClientCert;
use crate::http::client_ip::Peer;
use crate::io::send_watch::SendWatch;

/// What the server keeps alive for as long as a request lasts, a hub tunnel
/// included: on HTTP/2, the connection's in-flight mark (`server/idle.rs`).
pub type InFlight = Option<Arc<dyn Send + Sync>>;

/// One client connection, as the requests on it see it.
pub struct ClientConn {
    pub peer: SocketAddr,
    /// Its address, written out once for all its requests' forwarding headers.
    pub peer_ip: Peer,
    /// Its place under `max_connections`: a hub tunnel taken over from an
    /// HTTP/1.1 connection keeps it until the tunnel closes.
    pub(super) slot: Arc<Slot>,
    /// Upstream requests this connection may have in flight at once.
    pub(super) upstream: Arc<Semaphore>,
    /// Whether its socket is waiting on the client to read (the send
    /// timeout); a hub tunnel taken over from it is watched with it too.
    pub(super) sending: Arc<SendWatch>,
    /// The worker serving it: its upstream requests use that worker's idle connections.
    pub(super) worker: usize,
    /// The client certificate it presented, verified in the handshake.
    pub cert: Option<ClientCert>,
    /// That certificate's chain, verified again after a reload.
    pub presented: Option<Arc<Presented>>,
    /// A `[proxy_protocol]` relay's own connection (a PROXY LOCAL or
    /// UNKNOWN header): `peer` is the relay, which is no exempt network.
    pub relay_itself: bool,
}

/// The chain a connection's client certificate came with, kept so that a
/// reload (a new CRL, another CA) reaches connections already open: a
/// revoked device must not keep the vault for as long as it holds one open.
pub struct Presented {
    chain: Vec<CertificateDer<'static>>,
    /// The configuration generation whose verifier last accepted the chain.
    verified: AtomicU64,
    /// Turns true, once, when a later generation refuses the chain; its
    /// receivers (the connection, its hub tunnels) close on it.
    revoked: watch::Sender<bool>,
}

impl Presented {
    pub fn new(chain: Vec<CertificateDer<'static>>, generation: u64) -> Presented {
        Presented { chain, verified: AtomicU64::new(generation), revoked: watch::Sender::new(false) }
    }

    /// Verifies the chain again with `verifier` unless it was verified
    /// under `generation` already. `Err` once, when it is first refused;
    /// from then on [`Presented::is_revoked`]. Without a verifier (the
    /// reload turned client certificates off) there is nothing to verify.
    pub fn recheck(
        &self,
        generation: u64,
        verifier: Option<&dyn ClientCertVerifier>,
    ) -> Result<(), rustls::Error> {
        if self.is_revoked() || self.verified.load(Ordering::Acquire) == generation {
            return Ok(());
        }
        // Marked verified only once it is: a request alongside on the same
        // HTTP/2 connection verifies too rather than pass on the old verdict.
        let result = match verifier {
            Some(verifier) => crate::tls::client_auth::verify_again(verifier, &self.chain),
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                self.verified.store(generation, Ordering::Release);
                Ok(())
            }
            Err(e) if self.revoked.send_if_modified(|r| !std::mem::replace(r, true)) => Err(e),
            Err(_) => Ok(()),
        }
    }

    pub fn is_revoked(&self) -> bool {
        *self.revoked.borrow()
    }

    /// Resolves once the chain is refused (never, if it is not).
    pub fn on_revoked(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.revoked.subscribe();
        async move {
            if rx.wait_for(|r| *r).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Changes when the chain is refused, and closes when the connection
    /// and its tunnels are all gone (what a watcher of reloads ends on).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.revoked.subscribe()
    }
}

impl ClientConn {
    pub fn new(
        peer: SocketAddr,
        slot: Arc<Slot>,
        max_upstream: usize,
        sending: Arc<SendWatch>,
        worker: usize,
        cert: Option<ClientCert>,
        presented: Option<Arc<Presented>>,
    ) -> ClientConn {
        ClientConn {
            peer,
            peer_ip: Peer::from(peer.ip()),
            slot,
            upstream: Arc::new(Semaphore::new(max_upstream)),
            sending,
            worker,
            cert,
            presented,
            relay_itself: false,
        }
    }

    /// Marks it a relay's own connection (see [`ClientConn::relay_itself`]).
    pub fn of_relay_itself(mut self, relay_itself: bool) -> ClientConn {
        self.relay_itself = relay_itself;
        self
    }

    /// Its certificate was refused after a reload.
    pub fn revoked(&self) -> bool {
        self.presented.as_ref().is_some_and(|p| p.is_revoked())
    }

    pub fn sending(&self) -> &Arc<SendWatch> {
        &self.sending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::HandshakeSignatureValid;
    use rustls::pki_types::UnixTime;
    use rustls::server::danger::ClientCertVerified;
    use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

    /// A verifier that accepts every chain, or refuses every one as revoked.
    #[derive(Debug)]
    struct Verdict(bool);

    impl ClientCertVerifier for Verdict {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }
        fn verify_client_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            match self.0 {
                true => Ok(ClientCertVerified::assertion()),
                false => Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)),
            }
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            unreachable!()
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            unreachable!()
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            Vec::new()
        }
    }

    #[tokio::test]
    async fn a_chain_is_verified_once_per_generation_and_refused_once() {
        let (accept, refuse) = (Verdict(true), Verdict(false));
        let p = Presented::new(vec![CertificateDer::from(vec![0x30, 0x00])], 1);
        assert!(p.recheck(1, Some(&refuse)).is_ok(), "verified under 1 at the handshake");
        assert!(p.recheck(2, Some(&accept)).is_ok());
        assert!(p.recheck(2, Some(&refuse)).is_ok(), "verified under 2 already");
        assert!(p.recheck(3, None).is_ok(), "client certificates turned off: nothing to verify");
        assert!(!p.is_revoked());
        let revoked = p.on_revoked();
        assert!(p.recheck(4, Some(&refuse)).is_err(), "a newer generation refuses it");
        assert!(p.is_revoked());
        assert!(p.recheck(5, Some(&refuse)).is_ok(), "refused once (counted once), revoked for good");
        assert!(
            p.recheck(6, Some(&accept)).is_ok() && p.is_revoked(),
            "a later reload does not bring it back"
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), revoked)
            .await
            .expect("the connection is told");
    }
}
