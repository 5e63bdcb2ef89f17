//! Counters for the `[metrics]` listener, in Prometheus text format, and the
//! `/healthz` answer. Plain atomics: recording is a few relaxed adds on the
//! request path, never a lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

const METHODS: [&str; 8] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other"];
/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Which side a gauge or counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Unreachable,
    Timeout,
    BadUpgrade,
}

#[derive(Default)]
pub struct Metrics {
    /// [method][status class 1xx..5xx]
    requests: [[AtomicU64; 5]; METHODS.len()],
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    connections: [AtomicI64; 2],
    hubs: [AtomicI64; 2],
    upstream_errors: [AtomicU64; 3],
    tls_handshake_failures: AtomicU64,
    proxy_headers_refused: AtomicU64,
    connections_refused: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Unix seconds of the last reload applied / refused (0: none yet).
    last_reload_ok: AtomicU64,
    last_reload_refused: AtomicU64,
    /// Whether the most recent reload was refused.
    last_reload_was_refused: AtomicBool,
    /// Requests refused because a client certificate was needed and none shown.
    client_cert_required: AtomicU64,
    /// Handshakes whose client certificate did not verify, by [`CERT_REASONS`].
    client_cert_rejected: [AtomicU64; CERT_REASONS.len()],
    /// Connections by the verified certificate they presented (subject, serial).
    client_certs: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// `[login_guard]`: failed logins counted, bans begun, bans in force.
    login_failures: AtomicU64,
    bans_total: AtomicU64,
    bans_active: AtomicU64,
}

/// Why a client certificate was refused at the handshake (`tls::client_auth`'s words).
pub const CERT_REASONS: [&str; 6] =
    ["revoked", "expired", "not_yet_valid", "unknown_issuer", "crl", "invalid"];

/// Distinct certificates counted one by one; past this many, the rest are
/// counted together (only certificates the configured CA issued get here,
/// but a CA that issues one per login must not grow the page without end).
const MAX_CERTS: usize = 1000;

fn method_index(m: &Method) -> usize {
    METHODS.iter().position(|x| *x == m.as_str()).unwrap_or(METHODS.len() - 1)
}

impl Metrics {
    pub fn request(
        &self,
        method: &Method,
        status: StatusCode,
        duration: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[method_index(method)][class].fetch_add(1, Ordering::Relaxed);
        let secs = duration.as_secs_f64();
        for (bucket, le) in self.duration_buckets.iter().zip(BUCKETS) {
            if secs <= le {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros.fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        self.bytes_received.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// Counts an open client connection until the guard is dropped.
    pub fn connection(self: &Arc<Self>, protocol: Protocol) -> Open {
        Open::new(self.clone(), false, protocol)
    }

    /// Counts an open hub WebSocket until the guard is dropped.
    pub fn hub(self: &Arc<Self>, protocol: Protocol) -> Open {
        Open::new(self.clone(), true, protocol)
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A relay's connection closed for a missing, malformed or late PROXY header.
    pub fn proxy_header_refused(&self) {
        self.proxy_headers_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A request refused for lack of a client certificate.
    pub fn client_cert_required(&self) {
        self.client_cert_required.fetch_add(1, Ordering::Relaxed);
    }

    /// A handshake refused for its client certificate (`reason` one of [`CERT_REASONS`]).
    pub fn client_cert_rejected(&self, reason: &str) {
        let i = CERT_REASONS.iter().position(|r| *r == reason).unwrap_or(CERT_REASONS.len() - 1);
        self.client_cert_rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection that presented this verified certificate (once per
    /// connection, not per request: a lock, off the request path).
    pub fn client_cert_connection(&self, subject: &str, serial: &str) {
        let mut certs = self.client_certs.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (subject.to_string(), serial.to_string());
        if certs.len() >= MAX_CERTS && !certs.contains_key(&key) {
            key = ("(others)".into(), String::new());
        }
        *certs.entry(key).or_default() += 1;
    }

    /// A failed login the login guard counted.
    pub fn login_failed(&self) {
        self.login_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A ban begun by the login guard.
    pub fn banned(&self) {
        self.bans_total.fetch_add(1, Ordering::Relaxed);
    }

    /// How many bans are in force now.
    pub fn set_bans_active(&self, n: usize) {
        self.bans_active.store(n as u64, Ordering::Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloaded(&self, ok: bool) {
        self.reloaded_at(ok, std::time::SystemTime::now());
    }

    fn reloaded_at(&self, ok: bool, at: std::time::SystemTime) {
        let unix = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (count, last) = if ok {
            (&self.reloads_ok, &self.last_reload_ok)
        } else {
            (&self.reloads_failed, &self.last_reload_refused)
        };
        count.fetch_add(1, Ordering::Relaxed);
        last.store(unix, Ordering::Relaxed);
        self.last_reload_was_refused.store(!ok, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of everything above.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let protocols = ["http1", "http2"];
        let _ =
            writeln!(out, "# HELP vaultgate_requests_total Requests answered, by method and status class.");
        let _ = writeln!(out, "# TYPE vaultgate_requests_total counter");
        for (m, row) in METHODS.iter().zip(&self.requests) {
            for (class, n) in row.iter().enumerate() {
                let n = get(n);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "vaultgate_requests_total{{method=\"{m}\",status=\"{}xx\"}} {n}",
                        class + 1
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP vaultgate_request_duration_seconds Time from request to the end of the response."
        );
        let _ = writeln!(out, "# TYPE vaultgate_request_duration_seconds histogram");
        for (bucket, le) in self.duration_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(out, "vaultgate_request_duration_seconds_bucket{{le=\"{le}\"}} {}", get(bucket));
        }
        let count = get(&self.duration_count);
        let _ = writeln!(out, "vaultgate_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = get(&self.duration_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "vaultgate_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "vaultgate_request_duration_seconds_count {count}");
        let counters = [
            (
                "vaultgate_received_bytes_total",
                "Request body bytes received from clients.",
                get(&self.bytes_received),
            ),
            ("vaultgate_sent_bytes_total", "Response body bytes sent to clients.", get(&self.bytes_sent)),
            (
                "vaultgate_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                get(&self.tls_handshake_failures),
            ),
            (
                "vaultgate_proxy_protocol_refused_total",
                "Relayed connections closed for a missing, malformed or late PROXY header.",
                get(&self.proxy_headers_refused),
            ),
            (
                "vaultgate_connections_refused_total",
                "Connections refused by [limits].",
                get(&self.connections_refused),
            ),
            (
                "vaultgate_login_failures_total",
                "Failed logins the login guard counted (Vaultwarden's answers to logins).",
                get(&self.login_failures),
            ),
            ("vaultgate_bans_total", "Addresses banned by the login guard.", get(&self.bans_total)),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        for (name, help, gauges) in [
            ("vaultgate_open_connections", "Open client connections, by protocol.", &self.connections),
            ("vaultgate_open_hubs", "Open hub WebSockets, by the client's protocol.", &self.hubs),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (p, g) in protocols.iter().zip(gauges) {
                let _ = writeln!(out, "{name}{{protocol=\"{p}\"}} {}", g.load(Ordering::Relaxed));
            }
        }
        let _ = writeln!(out, "# HELP vaultgate_bans_active Addresses the login guard bans now.");
        let _ = writeln!(out, "# TYPE vaultgate_bans_active gauge");
        let _ = writeln!(out, "vaultgate_bans_active {}", get(&self.bans_active));
        let _ = writeln!(out, "# HELP vaultgate_upstream_errors_total Vaultwarden unreachable, too slow, or a bad upgrade answer.");
        let _ = writeln!(out, "# TYPE vaultgate_upstream_errors_total counter");
        for (kind, n) in ["unreachable", "timeout", "bad_upgrade"].iter().zip(&self.upstream_errors) {
            let _ = writeln!(out, "vaultgate_upstream_errors_total{{kind=\"{kind}\"}} {}", get(n));
        }
        let _ = writeln!(out, "# HELP vaultgate_reloads_total Configuration reloads, by result.");
        let _ = writeln!(out, "# TYPE vaultgate_reloads_total counter");
        let _ = writeln!(out, "vaultgate_reloads_total{{result=\"ok\"}} {}", get(&self.reloads_ok));
        let _ = writeln!(out, "vaultgate_reloads_total{{result=\"refused\"}} {}", get(&self.reloads_failed));
        let (ok_at, refused_at) = (get(&self.last_reload_ok), get(&self.last_reload_refused));
        let _ = writeln!(out, "# HELP vaultgate_last_reload_timestamp_seconds When the last reload was applied or refused (0: none since start).");
        let _ = writeln!(out, "# TYPE vaultgate_last_reload_timestamp_seconds gauge");
        let _ = writeln!(out, "vaultgate_last_reload_timestamp_seconds{{result=\"ok\"}} {ok_at}");
        let _ = writeln!(out, "vaultgate_last_reload_timestamp_seconds{{result=\"refused\"}} {refused_at}");
        let _ = writeln!(out, "# HELP vaultgate_last_reload_successful 1 unless the most recent reload was refused (the running configuration then is the one before it).");
        let _ = writeln!(out, "# TYPE vaultgate_last_reload_successful gauge");
        let _ = writeln!(
            out,
            "vaultgate_last_reload_successful {}",
            u8::from(!self.last_reload_was_refused.load(Ordering::Relaxed))
        );
        let _ = writeln!(out, "# HELP vaultgate_client_cert_required_total Requests refused because they needed a client certificate and the connection showed none.");
        let _ = writeln!(out, "# TYPE vaultgate_client_cert_required_total counter");
        let _ = writeln!(out, "vaultgate_client_cert_required_total {}", get(&self.client_cert_required));
        let _ = writeln!(out, "# HELP vaultgate_client_cert_rejected_total TLS handshakes refused for their client certificate, by reason.");
        let _ = writeln!(out, "# TYPE vaultgate_client_cert_rejected_total counter");
        for (reason, n) in CERT_REASONS.iter().zip(&self.client_cert_rejected) {
            let _ = writeln!(out, "vaultgate_client_cert_rejected_total{{reason=\"{reason}\"}} {}", get(n));
        }
        let _ = writeln!(out, "# HELP vaultgate_client_cert_connections_total Connections by the verified client certificate they presented.");
        let _ = writeln!(out, "# TYPE vaultgate_client_cert_connections_total counter");
        for ((subject, serial), n) in self.client_certs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "vaultgate_client_cert_connections_total{{subject=\"{}\",serial=\"{}\"}} {n}",
                label(subject),
                label(serial)
            );
        }
        let _ = writeln!(out, "# HELP vaultgate_build_info The running build; always 1.");
        let _ = writeln!(out, "# TYPE vaultgate_build_info gauge");
        let _ = writeln!(out, "vaultgate_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        out
    }
}

/// A Prometheus label value: `\\`, `"` and line feeds escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A gauge (connections or hubs, by protocol) held up while this lives.
pub struct Open {
    metrics: Arc<Metrics>,
    hub: bool,
    protocol: Protocol,
}

impl Open {
    fn new(metrics: Arc<Metrics>, hub: bool, protocol: Protocol) -> Self {
        let open = Open { metrics, hub, protocol };
        open.gauge().fetch_add(1, Ordering::Relaxed);
        open
    }

    fn gauge(&self) -> &AtomicI64 {
        let gauges = if self.hub { &self.metrics.hubs } else { &self.metrics.connections };
        &gauges[self.protocol as usize]
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge().fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let m = Arc::new(Metrics::default());
        m.request(&Method::GET, StatusCode::OK, Duration::from_millis(7), 0, 100);
        m.request(&Method::POST, StatusCode::BAD_GATEWAY, Duration::from_secs(20), 5, 10);
        m.request(
            &Method::from_bytes(b"PROPFIND").unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            Duration::ZERO,
            0,
            0,
        );
        let hub = m.hub(Protocol::Http2);
        m.upstream_error(UpstreamError::Unreachable);
        let text = m.render();
        for line in [
            "vaultgate_requests_total{method=\"GET\",status=\"2xx\"} 1",
            "vaultgate_requests_total{method=\"POST\",status=\"5xx\"} 1",
            "vaultgate_requests_total{method=\"other\",status=\"4xx\"} 1",
            "vaultgate_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "vaultgate_request_duration_seconds_bucket{le=\"0.01\"} 2",
            "vaultgate_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "vaultgate_request_duration_seconds_count 3",
            "vaultgate_received_bytes_total 5",
            "vaultgate_sent_bytes_total 110",
            "vaultgate_open_hubs{protocol=\"http2\"} 1",
            "vaultgate_upstream_errors_total{kind=\"unreachable\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        drop(hub);
        assert!(m.render().lines().any(|l| l == "vaultgate_open_hubs{protocol=\"http2\"} 0"));
    }

    #[test]
    fn client_certificates_by_subject_and_refusals_by_reason() {
        let m = Metrics::default();
        m.client_cert_required();
        m.client_cert_rejected("revoked");
        m.client_cert_rejected("what");
        m.client_cert_connection("CN=phone,O=Home \"x\"", "0a1b");
        m.client_cert_connection("CN=phone,O=Home \"x\"", "0a1b");
        let text = m.render();
        for line in [
            "vaultgate_client_cert_required_total 1",
            "vaultgate_client_cert_rejected_total{reason=\"revoked\"} 1",
            "vaultgate_client_cert_rejected_total{reason=\"invalid\"} 1",
            "vaultgate_client_cert_connections_total{subject=\"CN=phone,O=Home \\\"x\\\"\",serial=\"0a1b\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        for i in 0..MAX_CERTS + 5 {
            m.client_cert_connection(&format!("CN={i}"), "01");
        }
        let text = m.render();
        assert_eq!(text.matches("vaultgate_client_cert_connections_total{").count(), MAX_CERTS + 1);
        assert!(text.contains("subject=\"(others)\",serial=\"\"} 6"), "{text}");
    }

    #[test]
    fn reloads_and_the_build_are_told() {
        let m = Metrics::default();
        let has = |m: &Metrics, line: &str| m.render().lines().any(|l| l == line);
        assert!(has(&m, "vaultgate_last_reload_successful 1"), "no reload yet is no failure");
        assert!(has(&m, "vaultgate_last_reload_timestamp_seconds{result=\"ok\"} 0"));
        assert!(has(&m, &format!("vaultgate_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
        let at = |s: u64| std::time::UNIX_EPOCH + Duration::from_secs(s);
        m.reloaded_at(true, at(1_000));
        m.reloaded_at(false, at(2_000));
        assert!(has(&m, "vaultgate_last_reload_timestamp_seconds{result=\"ok\"} 1000"));
        assert!(has(&m, "vaultgate_last_reload_timestamp_seconds{result=\"refused\"} 2000"));
        assert!(has(&m, "vaultgate_last_reload_successful 0"), "the latest was refused");
        m.reloaded_at(true, at(2_000));
        assert!(
            has(&m, "vaultgate_last_reload_successful 1"),
            "applied after the refusal, in the same second"
        );
        assert!(has(&m, "vaultgate_reloads_total{result=\"ok\"} 2"));
        assert!(has(&m, "vaultgate_reloads_total{result=\"refused\"} 1"));
    }
}
