//! Automatic HTTPS: with `[tls] acme = { domain = "…" }` vaultgate gets its
//! certificate from an ACME CA (Let's Encrypt by default) and renews it when
//! a third of its lifetime remains.
//!
//! The pieces: `tls::store::Live` is what the TLS resolver reads on every handshake
//! (the certificate in force, pending challenge answers); a [`Manager`] task
//! keeps it current; `store` keeps the account and certificate on disk;
//! `client` is the HTTPS client instant-acme talks through; `dns01` answers
//! DNS-01 through `rfc2136` (TSIG-signed updates) or `hook`, over `dns`
//! (one exchange with a DNS server). A renewal only
//! replaces what later handshakes get: open connections and hub WebSockets
//! are untouched.

mod client;
mod dns;
mod dns01;
mod hook;
mod rfc2136;
mod store;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, Order,
    OrderStatus, RetryPolicy,
};
use tokio::task::JoinHandle;

use dns01::Dns01;
use store::Store;

use crate::config::{AcmeConfig, Challenge};
use crate::tls::store::{Installed, Live};
use crate::tls::x509::human;

/// The task that obtains and renews one domain's certificate. Dropping it
/// stops the task.
pub struct Manager {
    task: JoinHandle<()>,
}

impl Manager {
    /// Puts the stored certificate (if any, and still valid) into `live` at
    /// once, so that the first handshake already gets it, then starts the
    /// task that obtains or renews it. Must run inside a tokio runtime.
    ///
    /// Started again on every reload: removing the stored certificate and
    /// sending SIGHUP forces a renewal, and the certificate in force keeps
    /// being served until the new one is there.
    pub fn start(config: AcmeConfig, live: Arc<Live>) -> Manager {
        let store = Store::new(&config);
        live.challenges.clear();
        if live.installed().is_some_and(|i| i.domain != config.domain) {
            live.set(None);
        }
        let found = stored(&config, &store);
        let renew_now = !matches!(found, Ok(Some(_)));
        match found {
            Ok(Some(installed)) => {
                tracing::info!(
                    domain = %config.domain,
                    "ACME: using the stored certificate from {} (expires in {})",
                    store.cert_file().display(),
                    human(installed.not_after.duration_since(SystemTime::now()).unwrap_or_default())
                );
                live.set(Some(installed));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(domain = %config.domain, "ACME: the stored certificate cannot be used ({e}); obtaining a new one")
            }
        }
        Manager { task: tokio::spawn(run(config, live, store, renew_now)) }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the stored certificate and key are, and whether they can serve.
/// For `vaultgate check`.
pub fn describe_stored(config: &AcmeConfig) -> String {
    let store = Store::new(config);
    match stored(config, &store) {
        Ok(Some(i)) => format!(
            "ACME certificate for {} in {} expires in {}",
            i.domain,
            store.cert_file().display(),
            human(i.not_after.duration_since(SystemTime::now()).unwrap_or_default())
        ),
        Ok(None) => format!(
            "no ACME certificate for {} yet in {}; it is requested from {} at start",
            config.domain,
            store.cert_file().display(),
            config.directory
        ),
        Err(e) => {
            format!("the stored ACME certificate cannot be used ({e}); a new one is requested at start")
        }
    }
}

/// With `acme.dns`: how the record will be put in place, or why it cannot
/// be (the secret file unreadable, the hook not executable). For `vaultgate
/// check`, and at start and reload, which refuse a configuration it fails.
pub fn check_dns(config: &AcmeConfig) -> Option<Result<String, String>> {
    config.dns.as_ref().map(|d| Dns01::load(d).map(|dns| dns.describe()))
}

/// The stored certificate, `None` when there is none or it has expired.
fn stored(config: &AcmeConfig, store: &Store) -> Result<Option<Installed>, String> {
    if !store.cert_file().exists() {
        return Ok(None);
    }
    let certified = crate::tls::load_pair(&crate::tls::provider(), &store.cert_file(), &store.key_file())
        .map_err(|e| e.to_string())?;
    let (not_before, not_after) = certified
        .cert
        .first()
        .and_then(|c| crate::tls::x509::validity(c))
        .ok_or_else(|| format!("{}: cannot read the certificate's dates", store.cert_file().display()))?;
    if not_after <= SystemTime::now() {
        return Ok(None);
    }
    Ok(Some(Installed {
        certified: Arc::new(certified),
        domain: config.domain.clone(),
        not_before,
        not_after,
    }))
}

/// How long until a certificate valid from `not_before` to `not_after` is
/// due for renewal: when a third of its lifetime remains (30 days of Let's
/// Encrypt's 90).
pub fn renew_in(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> Duration {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let due = not_after - lifetime / 3;
    due.duration_since(now).unwrap_or_default()
}

/// The pause after the `failures`-th failed attempt in a row: 2 minutes,
/// doubling, at most an hour (Let's Encrypt allows 5 failed validations per
/// name per hour).
pub fn retry_delay(failures: u32) -> Duration {
    let minutes = 2u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    Duration::from_secs(minutes.min(60) * 60)
}

/// Obtains a certificate whenever there is none, none stored (`renew_now`)
/// or the one in force is due; backs off after failures.
///
/// Each attempt tries the configured challenges in turn, each with an order
/// of its own: when the CA could not validate one (443 closed but 80 open,
/// say), the next is tried at once rather than after the backoff, and the
/// backoff only follows when every challenge has failed. The one that last
/// worked goes first next time.
async fn run(config: AcmeConfig, live: Arc<Live>, store: Store, mut renew_now: bool) {
    let mut failures = 0u32;
    let mut first = 0usize;
    loop {
        let why = match live.installed() {
            None => "there is no certificate yet".to_string(),
            Some(_) if renew_now => "no certificate is stored (removed to force a renewal?)".to_string(),
            Some(i) => {
                let wait = renew_in(i.not_before, i.not_after, SystemTime::now());
                if !wait.is_zero() {
                    tracing::info!(domain = %config.domain, "ACME: next renewal in {}", human(wait));
                    tokio::time::sleep(wait).await;
                }
                let left = i.not_after.duration_since(SystemTime::now()).unwrap_or_default();
                format!("a third of the certificate's lifetime remains (it expires in {})", human(left))
            }
        };
        let count = config.challenges.len();
        let mut outcome = Err(Failure::other("no challenge is configured".into()));
        for step in 0..count {
            let at = (first + step) % count;
            let challenge = config.challenges[at];
            tracing::info!(
                domain = %config.domain,
                "ACME: requesting a certificate from {} because {why}; answering {} ({})",
                config.directory,
                challenge.name(),
                reach(challenge)
            );
            outcome = obtain(&config, &live, &store, challenge).await;
            live.challenges.clear();
            match &outcome {
                Ok(_) => {
                    first = at;
                    break;
                }
                Err(f) if f.challenge_failed && step + 1 < count => {
                    let next = config.challenges[(at + 1) % count];
                    tracing::warn!(
                        domain = %config.domain,
                        "ACME: {} failed: {}; trying {} next with a new order ({})",
                        challenge.name(),
                        f.message,
                        next.name(),
                        reach(next)
                    );
                }
                Err(_) => break,
            }
        }
        match outcome {
            Ok(installed) => {
                failures = 0;
                renew_now = false;
                tracing::info!(
                    domain = %config.domain,
                    "ACME: new certificate installed (expires in {}); new connections get it, open ones are kept",
                    human(installed.not_after.duration_since(SystemTime::now()).unwrap_or_default())
                );
                live.set(Some(installed));
                live.set_acme_failure(None);
            }
            Err(f) => {
                live.set_acme_failure(Some(SystemTime::now()));
                failures += 1;
                let delay = retry_delay(failures);
                tracing::error!(
                    domain = %config.domain,
                    "ACME: could not obtain a certificate: {}; retrying in {}",
                    f.message,
                    human(delay)
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// What the CA needs to reach for `challenge`, for the log.
fn reach(challenge: Challenge) -> &'static str {
    match challenge {
        Challenge::TlsAlpn01 => "the CA connects to port 443 of the domain",
        Challenge::Http01 => "the CA connects to port 80 of the domain, the [redirect] listener",
        Challenge::Dns01 => "the CA looks up a TXT record in the domain's zone",
    }
}

/// Why an attempt failed: a sentence for the log, and whether it was the
/// challenge that failed (so that another challenge may succeed) rather
/// than something every challenge would meet (the CA unreachable, the
/// state directory unwritable).
struct Failure {
    message: String,
    challenge_failed: bool,
}

impl Failure {
    fn other(message: String) -> Failure {
        Failure { message, challenge_failed: false }
    }

    fn challenge(message: String) -> Failure {
        Failure { message, challenge_failed: true }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::other(message)
    }
}

/// One order, from account to stored certificate. Errors are sentences for
/// the log: what failed and what to check.
async fn obtain(
    config: &AcmeConfig,
    live: &Live,
    store: &Store,
    challenge: Challenge,
) -> Result<Installed, Failure> {
    let explain = |e: instant_acme::Error| explain(&e, config, challenge);
    // Read first: a missing secret or hook needs no order to find out.
    let dns = match &config.dns {
        Some(d) => Some(Dns01::load(d)?),
        None => None,
    };
    let roots = crate::tls::client_roots(config.ca.as_deref()).map_err(|e| e.to_string())?;
    let http = client::Https::new(roots)?;
    let account = account(config, store, &http).await?;
    let ids = [Identifier::Dns(config.domain.clone())];
    let mut order = match account.new_order(&NewOrder::new(&ids)).await {
        Ok(order) => order,
        Err(e) => {
            if problem_type(&e) == Some("accountDoesNotExist") {
                // The CA forgot us (e.g. a test CA restarted): register again next time.
                let _ = store.forget_account();
            }
            return Err(explain(e).into());
        }
    };
    let mut placed = Vec::new();
    let validated = validate(config, live, &mut order, challenge, dns.as_ref(), &mut placed).await;
    // Removed whatever the CA's verdict: the record is of no use after it.
    if let Some(dns) = &dns {
        for record in placed {
            dns.cleanup(record).await;
        }
    }
    validated?;
    let patience = RetryPolicy::new().timeout(Duration::from_secs(120));
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![config.domain.clone()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    order.finalize_csr(csr.der()).await.map_err(explain)?;
    let chain = order.poll_certificate(&patience).await.map_err(explain)?;
    store
        .write_certificate(&chain, &key.serialize_pem())
        .map_err(|e| format!("cannot store the certificate under {}: {e}", config.state_dir.display()))?;
    Ok(stored(config, store)?
        .ok_or_else(|| "the CA issued a certificate that has already expired".to_string())?)
}

/// Answers every pending authorization of `order` with `challenge` and
/// waits for the CA's verdict. DNS-01 records put in place go into `placed`.
async fn validate(
    config: &AcmeConfig,
    live: &Live,
    order: &mut Order,
    challenge: Challenge,
    dns: Option<&Dns01>,
    placed: &mut Vec<dns01::Placed>,
) -> Result<(), Failure> {
    let explain = |e: instant_acme::Error| explain(&e, config, challenge);
    {
        let mut authorizations = order.authorizations();
        while let Some(next) = authorizations.next().await {
            let mut authz = next.map_err(explain)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                // A failed check of an earlier order the CA still holds
                // against this name: another challenge may fare better.
                other => {
                    return Err(Failure::challenge(format!("the CA reports the authorization as {other:?}")))
                }
            }
            let kind = match challenge {
                Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
                Challenge::Http01 => ChallengeType::Http01,
                Challenge::Dns01 => ChallengeType::Dns01,
            };
            let mut handle = authz.challenge(kind).ok_or_else(|| {
                Failure::challenge(format!(
                    "the CA does not offer {} for {}",
                    challenge.name(),
                    config.domain
                ))
            })?;
            let key_authorization = handle.key_authorization();
            match (challenge, dns) {
                (Challenge::TlsAlpn01, _) => {
                    let digest = key_authorization.digest();
                    let cert = crate::tls::self_signed::alpn_answer(
                        &crate::tls::provider(),
                        &config.domain,
                        digest.as_ref(),
                    )
                    .map_err(|e| e.to_string())?;
                    live.challenges.set_alpn(&config.domain, Arc::new(cert));
                }
                (Challenge::Http01, _) => live.challenges.set_http(&handle.token, key_authorization.as_str()),
                (Challenge::Dns01, Some(dns)) => {
                    let fqdn = dns01::record_name(&config.domain)?;
                    let value = key_authorization.dns_value();
                    placed.push(dns.present(&fqdn, &value).await?);
                    dns.wait_visible(&fqdn, &value).await?;
                }
                (Challenge::Dns01, None) => return Err("dns-01 without acme.dns".to_string().into()),
            }
            handle.set_ready().await.map_err(explain)?;
        }
    }
    let patience = RetryPolicy::new().timeout(Duration::from_secs(120));
    // The order's own error, or no verdict in time, is the CA's word on
    // this challenge; a connection that failed on the way is not.
    let status = order.poll_ready(&patience).await.map_err(|e| match e {
        instant_acme::Error::Api(_) | instant_acme::Error::Timeout(_) => Failure::challenge(explain(e)),
        e => Failure::other(explain(e)),
    })?;
    if status != OrderStatus::Ready {
        return Err(Failure::challenge(why_invalid(order, config, challenge).await));
    }
    Ok(())
}

/// The stored account, or a new one registered (and stored).
async fn account(config: &AcmeConfig, store: &Store, http: &client::Https) -> Result<Account, String> {
    let file = store.account_file();
    let unreachable = |e: instant_acme::Error| explain(&e, config, Challenge::TlsAlpn01);
    match store.read_account() {
        Ok(Some(json)) => match serde_json::from_str::<AccountCredentials>(&json) {
            Ok(credentials) => {
                return Account::builder_with_http(Box::new(http.clone()))
                    .from_credentials(credentials)
                    .await
                    .map_err(unreachable)
            }
            Err(e) => {
                tracing::warn!("ACME: {} is unreadable ({e}); registering a new account", file.display())
            }
        },
        Ok(None) => {}
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    }
    let contact: Vec<String> = config.email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
        .create(&new, config.directory.clone(), None)
        .await
        .map_err(unreachable)?;
    let json = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
    store.write_account(&json).map_err(|e| format!("cannot store the account in {}: {e}", file.display()))?;
    tracing::info!("ACME: registered account {} with {}", account.id(), config.directory);
    Ok(account)
}

/// Why the CA gave up on the order: the first challenge error it reports.
async fn why_invalid(order: &mut Order, config: &AcmeConfig, challenge: Challenge) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await {
            if let Some(problem) = state.challenges.iter().find_map(|c| c.error.clone()) {
                return explain(&instant_acme::Error::Api(problem), config, challenge);
            }
        }
    }
    "the CA marked the order invalid without saying why".to_string()
}

fn problem_type(e: &instant_acme::Error) -> Option<&str> {
    match e {
        instant_acme::Error::Api(p) => p.r#type.as_deref().map(|t| t.rsplit(':').next().unwrap_or(t)),
        _ => None,
    }
}

/// An ACME error as a log sentence: the CA's words, then what to check.
fn explain(e: &instant_acme::Error, config: &AcmeConfig, challenge: Challenge) -> String {
    let instant_acme::Error::Api(problem) = e else {
        return format!(
            "cannot talk to the ACME server at {}: {e} (check the directory URL, that this machine can reach it over HTTPS, and for a private CA set acme.ca to its root certificate)",
            config.directory
        );
    };
    let mut said = problem.detail.clone().unwrap_or_default();
    for sub in &problem.subproblems {
        if let Some(detail) = &sub.detail {
            said.push_str("; ");
            said.push_str(detail);
        }
    }
    let kind = problem_type(e).unwrap_or("unknown");
    format!("the CA answered {kind}: {said} ({})", hint(kind, &config.domain, challenge))
}

/// What to check for an RFC 8555 §6.7 error type.
pub fn hint(kind: &str, domain: &str, challenge: Challenge) -> String {
    let reach = match challenge {
        Challenge::TlsAlpn01 => "port 443 from the internet reaches vaultgate's listen address (a port forward, no other proxy or CDN terminating TLS in front)",
        Challenge::Http01 => "port 80 from the internet reaches vaultgate's [redirect] listener",
        Challenge::Dns01 => {
            let base = domain.strip_prefix("*.").unwrap_or(domain);
            return match kind {
                "dns" | "unauthorized" | "incorrectResponse" | "connection" => format!(
                    "the CA did not find the TXT record _acme-challenge.{base} with the right value: check that the zone's delegation from its parent names the servers updated, and its DNSSEC if signed"
                ),
                "rateLimited" => "a rate limit of the CA: vaultgate backs off and retries; while experimenting use directory = \"letsencrypt-staging\"".into(),
                "rejectedIdentifier" | "caa" => format!("the CA will not issue for {domain} (its policy, or a CAA record of the domain)"),
                "badNonce" | "serverInternal" => "a passing problem at the CA; retried".into(),
                _ => format!("check that _acme-challenge.{base} can be looked up from the internet"),
            };
        }
    };
    match kind {
        "dns" => format!("DNS: {domain} must have an A or AAAA record with this server's public address"),
        "connection" | "tls" | "incorrectResponse" | "unauthorized" => {
            format!("the CA could not check {domain} with {}: make sure {domain} points here and {reach}", challenge.name())
        }
        "rateLimited" => "a rate limit of the CA: vaultgate backs off and retries; while experimenting use directory = \"letsencrypt-staging\"".into(),
        "rejectedIdentifier" | "caa" => format!("the CA will not issue for {domain} (its policy, or a CAA record of the domain)"),
        "accountDoesNotExist" => "the CA does not know the stored account; a new one is registered on the next attempt".into(),
        "invalidContact" | "unsupportedContact" => "the CA refuses the e-mail address: fix or remove acme.email".into(),
        "badNonce" | "serverInternal" => "a passing problem at the CA; retried".into(),
        _ => format!("check that {domain} points here and {reach}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_remains() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        assert_eq!(renew_in(start, end, start), 60 * DAY);
        assert_eq!(renew_in(start, end, start + 59 * DAY), DAY);
        assert_eq!(renew_in(start, end, start + 60 * DAY), Duration::ZERO);
        assert_eq!(renew_in(start, end, end + DAY), Duration::ZERO);
        // Short-lived certificates (6 days) renew after 4.
        assert_eq!(renew_in(start, start + 6 * DAY, start), 4 * DAY);
        // Nonsense dates: due now rather than never.
        assert_eq!(renew_in(end, start, start), Duration::ZERO);
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        let minutes: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(3600));
        assert_eq!(retry_delay(0), Duration::from_secs(120));
    }

    #[test]
    fn hints_name_what_to_check() {
        let d = "vault.example.com";
        assert!(hint("dns", d, Challenge::TlsAlpn01).contains("A or AAAA record"));
        assert!(hint("connection", d, Challenge::TlsAlpn01).contains("port 443"));
        assert!(hint("connection", d, Challenge::Http01).contains("port 80"));
        assert!(hint("rateLimited", d, Challenge::Http01).contains("letsencrypt-staging"));
        assert!(hint("caa", d, Challenge::Http01).contains("CAA"));
        assert!(hint("somethingNew", d, Challenge::TlsAlpn01).contains("port 443"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(310)), "5m 10s");
        assert_eq!(human(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(human(89 * DAY + Duration::from_secs(7200)), "89d 2h");
    }
}
