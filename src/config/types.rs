//! What a checked configuration holds, section by section, and the defaults.

use std::path::PathBuf;
use std::time::Duration;

use http::uri::Authority;

/// The Vaultwarden server vaultgate forwards to (plain HTTP/1.1).
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` of the upstream, as written (port made explicit).
    pub authority: Authority,
    /// The URL as the user wrote it, for error pages and logs.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub source: TlsSource,
    /// When not empty, only clients asking (by SNI) for one of these names get
    /// a certificate; bare-IP scanners and unknown names get a handshake failure.
    pub server_names: Vec<String>,
    /// Add `Strict-Transport-Security` to responses that lack it (never to a 101).
    pub hsts: bool,
    /// How often the certificate and key files are checked for a renewal.
    pub watch_interval: Duration,
    /// `[tls.client_auth]`: client certificates (mTLS), when configured.
    pub client_auth: Option<ClientAuth>,
}

/// `[tls.client_auth]`: which client certificates are accepted, and where
/// one is not needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM file of trust anchors (roots or intermediates, each an anchor).
    pub ca: PathBuf,
    /// PEM or DER certificate revocation lists, reloaded with `ca`.
    pub crl: Option<PathBuf>,
    /// Without a certificate, requests are refused (except on the exempt
    /// paths and networks); `false`: a certificate is verified when given,
    /// never demanded.
    pub required: bool,
    /// Normalised path prefixes served without a certificate, compared
    /// segment-wise and case-sensitively (as Vaultwarden routes).
    pub exempt_paths: Vec<String>,
    /// Connections from these networks need no certificate.
    pub exempt_networks: Vec<crate::http::client_ip::Cidr>,
    /// The header that carries the verified subject to Vaultwarden (off
    /// when none); whatever a client sends under it is always removed.
    pub subject_header: Option<http::HeaderName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: a full chain and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// `[tls] local_ca`, and the default without `cert`/`key`/`acme`: a
    /// leaf issued by a root CA that vaultgate keeps in its state directory.
    LocalCa(LocalCaConfig),
    /// Obtained and renewed by vaultgate itself from an ACME CA.
    Acme(AcmeConfig),
}

/// `[tls] local_ca = { names = [...] }`: the local CA and the leaf it issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCaConfig {
    /// What the leaf is for: DNS names and IP addresses, lower-case, in order,
    /// without duplicates (the defaults when none are written).
    pub names: Vec<String>,
    /// Where the root, its key and the leaf are kept.
    pub state_dir: PathBuf,
    /// How long a leaf is valid; it is renewed when a third of this remains.
    pub lifetime: Duration,
}

/// The leaf's default lifetime, a year: under the 398 days that Apple,
/// Google and Mozilla allow publicly trusted server certificates (and far
/// under the 825 days iOS allows any trusted one), so no client's rule
/// refuses it; it is renewed by itself, so a longer one would gain nothing.
/// (A year is also the most any duration in proxy.toml may be.)
pub const LOCAL_CA_LIFETIME: Duration = Duration::from_secs(365 * 86400);

/// `[tls] acme = { domain = "…" }`: where and how to get a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The one DNS name the certificate is for.
    pub domain: String,
    /// Contact address given to the CA (optional with Let's Encrypt).
    pub email: Option<String>,
    /// The RFC 8555 directory URL.
    pub directory: String,
    /// An extra root certificate (PEM) to trust for the directory, e.g. a test CA.
    pub ca: Option<PathBuf>,
    /// Where the account key, certificate and key are kept.
    pub state_dir: PathBuf,
    /// The challenge types to try, in order.
    pub challenges: Vec<Challenge>,
    /// `acme.dns`: how the DNS-01 TXT record is put in place (then the
    /// only challenge).
    pub dns: Option<Box<DnsConfig>>,
}

/// `[tls] acme.dns = {…}`: DNS-01, answered by a TXT record at
/// `_acme-challenge.<domain>` that the CA looks up; nothing needs to be
/// reachable from the internet but the zone's name servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub provider: DnsProvider,
    /// The zone the record goes into (lower case, no final dot); `None`:
    /// the zone whose SOA the record's name falls under.
    pub zone: Option<String>,
    /// Where the record must be visible before the CA is told to look;
    /// empty: the zone's name servers (its NS records).
    pub check_servers: Vec<DnsServer>,
    /// How long to wait for that at most.
    pub propagation_timeout: Duration,
}

/// A DNS server by name or address, and port (53 unless written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServer {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsProvider {
    /// RFC 2136 dynamic updates to `server`, signed with a TSIG key.
    Rfc2136 {
        server: DnsServer,
        /// The key's name as the server knows it (lower case, no final dot).
        key_name: String,
        key_algorithm: TsigAlgorithm,
        /// The file holding the key's base64 secret (read when used, so it
        /// never sits in the configuration).
        key_secret_file: PathBuf,
    },
    /// A program called as `PROGRAM present|cleanup FQDN VALUE`.
    Hook { program: PathBuf },
}

/// The TSIG MACs vaultgate signs with (RFC 8945 §6: SHA-256 is the one to use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    pub const ALL: [TsigAlgorithm; 3] =
        [TsigAlgorithm::HmacSha256, TsigAlgorithm::HmacSha384, TsigAlgorithm::HmacSha512];

    pub fn name(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// How the CA checks that this server answers for the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// On the HTTPS listener, during the TLS handshake (only 443 needs to be open).
    TlsAlpn01,
    /// On the `[redirect]` plain-HTTP listener (port 80).
    Http01,
    /// A TXT record in the domain's DNS zone (`acme.dns`).
    Dns01,
}

impl Challenge {
    pub fn name(self) -> &'static str {
        match self {
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Http01 => "http-01",
            Challenge::Dns01 => "dns-01",
        }
    }
}

/// Where access lines go, and in which format (`[log] access`, `access_format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDestination {
    /// Into the process log on stderr, as structured `key=value` fields.
    Log,
    /// Lines of their own on stderr.
    Stderr,
    /// Appended to a file; reopened on reload, so logrotate's `postrotate`
    /// can just `systemctl reload vaultgate`.
    File(std::path::PathBuf),
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    /// Combined-log-like: `client - - [time] "METHOD path VERSION" status bytes "referer" "agent" in=… ms=…`
    Text,
    /// One JSON object per line.
    Json,
}

pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub tls_handshake: Duration,
    pub request_header: Duration,
    /// A request body that sends nothing for this long is cut off.
    pub request_body_idle: Duration,
    /// An HTTP/2 connection with no request in flight for this long is closed.
    pub keep_alive: Duration,
    pub upstream_connect: Duration,
    /// How long the upstream may take to start answering once the request has been sent.
    pub upstream_response: Duration,
    /// A hub WebSocket with no traffic either way for this long is closed.
    pub hub_idle: Duration,
    /// How long shutdown waits for in-flight requests and hubs.
    pub drain: Duration,
    /// A response the client stops taking (a full socket, or an HTTP/2 window
    /// held at zero) for this long is cut off, and its upstream connection
    /// released (nginx: `send_timeout`).
    pub send_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tls_handshake: Duration::from_secs(10),
            request_header: Duration::from_secs(30),
            request_body_idle: Duration::from_secs(60),
            keep_alive: Duration::from_secs(75),
            upstream_connect: Duration::from_secs(5),
            upstream_response: Duration::from_secs(100),
            // Vaultwarden pings every 15 s; nginx's 60 s default is what kills hubs.
            hub_idle: Duration::from_secs(10 * 60),
            drain: Duration::from_secs(30),
            send_idle: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes; Vaultwarden's own limit for attachments and Sends is 525 MB.
    pub max_request_body: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Bytes per second a request body must average while the proxy waits.
    pub min_upload_rate: u64,
    /// Workers serving connections: each a thread that accepts and serves
    /// connections of its own.
    pub workers: usize,
    /// IPv6 clients are grouped by this prefix length for every per-address
    /// limit: a /64 is one subscriber.
    pub ipv6_prefix: u8,
    /// Open hub WebSockets per client address (Vaultwarden caps its anonymous
    /// hub at 25 per address).
    pub max_hubs_per_ip: usize,
    /// Upstream requests in flight for one client connection; more wait.
    pub max_upstream_per_connection: usize,
    /// Upstream requests in flight for one client address; more wait.
    pub max_upstream_per_ip: usize,
    /// Bytes in one request header line (name and value), else 431.
    pub max_header_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body: 525_000_000,
            max_connections: 4096,
            max_connections_per_ip: 256,
            min_upload_rate: 1024,
            // One per core, like nginx's `worker_processes auto`.
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ipv6_prefix: 64,
            max_hubs_per_ip: 32,
            max_upstream_per_connection: 32,
            max_upstream_per_ip: 128,
            // nginx's 8k; Bitwarden's bearer tokens are 1-2 KiB.
            max_header_line: 8 * 1024,
        }
    }
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:443";
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:8000";
pub const DEFAULT_HUB_PATHS: [&str; 2] = ["/notifications/hub", "/notifications/anonymous-hub"];

/// `[login_guard]`: failed logins, as Vaultwarden answers them, counted per
/// client address; too many within `window` and the address is banned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginGuard {
    pub enabled: bool,
    /// Failed logins within `window` that ban an address.
    pub max_failures: u32,
    /// Failures are counted from the first one for this long, then anew.
    pub window: Duration,
    /// The first ban's length; each further ban of the same address doubles it.
    pub ban: Duration,
    /// No ban is longer than this.
    pub max_ban: Duration,
    /// Networks that are never banned (the LAN, a monitoring host).
    pub allow: Vec<crate::http::client_ip::Cidr>,
    /// Where bans are kept across restarts: by default beside the ACME
    /// state; without ACME and without this key, bans live in memory only.
    pub state_file: Option<PathBuf>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard {
            enabled: true,
            max_failures: 10,
            window: Duration::from_secs(10 * 60),
            ban: Duration::from_secs(3600),
            max_ban: Duration::from_secs(7 * 86400),
            allow: Vec::new(),
            state_file: None,
        }
    }
}

/// The state file's name in the ACME state directory.
pub const LOGIN_GUARD_STATE: &str = "login_guard.json";
