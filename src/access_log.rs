//! One access-log line per request, with tokens in query strings redacted.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode, Version};

use crate::metrics::Metrics;

/// Query parameters that carry credentials: `access_token` on the hubs,
/// `token` on attachment downloads, `t` on Send downloads, `Token` on the
/// anonymous hub. Compared case-insensitively, redacted on every path.
const SECRET_PARAMS: [&str; 3] = ["access_token", "token", "t"];

/// `path?query` with the values of credential parameters replaced by `REDACTED`.
pub fn redact(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let is_secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
    };
    if !query.split('&').any(is_secret) {
        return Cow::Borrowed(path_and_query);
    }
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(pair) => format!("{name}=REDACTED"),
            _ => pair.to_string(),
        })
        .collect();
    Cow::Owned(format!("{path}?{}", redacted.join("&")))
}

/// Where access lines go, and in which format (`[log] access`, `access_format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
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
pub enum Format {
    /// Combined-log-like: `client - - [time] "METHOD path VERSION" status bytes "referer" "agent" in=… ms=…`
    Text,
    /// One JSON object per line.
    Json,
}

/// The access log of one configuration generation.
pub struct Sink {
    destination: Destination,
    format: Format,
    file: Option<std::sync::Mutex<std::fs::File>>,
    metrics: Arc<Metrics>,
}

impl Sink {
    pub fn open(destination: Destination, format: Format, metrics: Arc<Metrics>) -> std::io::Result<Sink> {
        let file = match &destination {
            Destination::File(path) => {
                Some(std::sync::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?))
            }
            _ => None,
        };
        Ok(Sink { destination, format, file, metrics })
    }

    /// The counters requests are recorded in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn write(&self, e: &Entry, status: u16, bytes_in: u64, bytes_out: u64, event: &str) {
        let ms = e.start.elapsed().as_millis() as u64;
        let upstream = e.upstream_time();
        let line = match (&self.destination, self.format) {
            (Destination::Off, _) => return,
            (Destination::Log, Format::Text) => {
                tracing::info!(
                    target: "vaultgate::access",
                    client = %e.client,
                    method = %e.method,
                    path = %e.path,
                    version = ?e.version,
                    status,
                    bytes_in,
                    bytes_out,
                    duration_ms = ms,
                    upstream_ms = upstream,
                    "{event}"
                );
                return;
            }
            (_, Format::Text) => format!(
                "{} - - [{}] \"{} {} {:?}\" {status} {bytes_out} \"{}\" \"{}\" in={bytes_in} ms={ms} upstream_ms={}{}\n",
                e.client,
                clf_time(std::time::SystemTime::now()),
                e.method,
                e.path,
                e.version,
                e.referer.as_deref().unwrap_or("-"),
                e.user_agent.as_deref().unwrap_or("-"),
                upstream.map_or("-".into(), |u| u.to_string()),
                if event.is_empty() { String::new() } else { format!(" event=\"{event}\"") },
            ),
            (_, Format::Json) => format!(
                "{{\"time\":{},\"client\":\"{}\",\"method\":{},\"path\":{},\"version\":\"{:?}\",\"status\":{status},\"bytes_in\":{bytes_in},\"bytes_out\":{bytes_out},\"duration_ms\":{ms},\"upstream_ms\":{},\"referer\":{},\"user_agent\":{},\"event\":{}}}\n",
                json_str(&clf_time(std::time::SystemTime::now())),
                e.client,
                json_str(e.method.as_str()),
                json_str(&e.path),
                e.version,
                upstream.map_or("null".into(), |u| u.to_string()),
                e.referer.as_deref().map_or("null".into(), json_str),
                e.user_agent.as_deref().map_or("null".into(), json_str),
                json_str(if event.is_empty() { "request" } else { event }),
            ),
        };
        match &self.file {
            Some(file) => {
                use std::io::Write;
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                let _ = f.write_all(line.as_bytes());
            }
            None => eprint!("{line}"),
        }
    }
}

/// `28/Nov/2026:10:00:00 +0000`, the Common Log Format's time.
fn clf_time(t: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What is known about a request when it arrives; logged when its response ends.
pub struct Entry {
    pub client: IpAddr,
    pub method: Method,
    /// Already redacted.
    pub path: String,
    pub version: Version,
    pub start: Instant,
    pub bytes_in: Arc<AtomicU64>,
    /// Milliseconds until Vaultwarden's response head (u64::MAX: no answer).
    upstream_ms: AtomicU64,
    /// Redacted like the path.
    referer: Option<String>,
    user_agent: Option<String>,
    sink: Arc<Sink>,
}

impl Entry {
    pub fn new(
        client: IpAddr,
        method: Method,
        path_and_query: &str,
        req: &http::HeaderMap,
        version: Version,
        sink: Arc<Sink>,
    ) -> Self {
        // Only the stand-alone formats print the agent and referer; the process
        // log line and "off" need neither, so nothing is copied for them.
        let wanted = matches!(sink.destination, Destination::Stderr | Destination::File(_));
        let header = |name: http::header::HeaderName| {
            req.get(name)
                .filter(|_| wanted)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).replace(['"', '\\'], "'"))
        };
        Entry {
            client,
            method,
            path: redact(path_and_query).into_owned(),
            version,
            start: Instant::now(),
            bytes_in: Arc::default(),
            upstream_ms: AtomicU64::new(u64::MAX),
            referer: header(http::header::REFERER).map(|r| redact(&r).into_owned()),
            user_agent: header(http::header::USER_AGENT),
            sink,
        }
    }

    /// Notes that Vaultwarden's response head has arrived.
    pub fn upstream_answered(&self) {
        self.upstream_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn upstream_time(&self) -> Option<u64> {
        Some(self.upstream_ms.load(Ordering::Relaxed)).filter(|ms| *ms != u64::MAX)
    }

    /// Writes the access line and counts the request.
    pub fn finish(&self, status: StatusCode, bytes_out: u64) {
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        self.sink.metrics.request(&self.method, status, self.start.elapsed(), bytes_in, bytes_out);
        self.sink.write(self, status.as_u16(), bytes_in, bytes_out, "");
    }

    /// Writes the line for a hub tunnel that has ended (status 101; the bytes
    /// are what crossed the tunnel, the duration its whole life).
    pub fn hub_closed(&self, end: &str, up: u64, down: u64) {
        self.sink.write(self, 101, up, down, &format!("hub closed: {end}"));
    }

    /// A copy for a tunnel task, timed from now.
    pub fn for_tunnel(&self) -> Entry {
        Entry {
            client: self.client,
            method: self.method.clone(),
            path: self.path.clone(),
            version: self.version,
            start: Instant::now(),
            bytes_in: Arc::default(),
            upstream_ms: AtomicU64::new(u64::MAX),
            referer: self.referer.clone(),
            user_agent: self.user_agent.clone(),
            sink: self.sink.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens_in_every_spelling() {
        assert_eq!(
            redact("/notifications/hub?access_token=eyJ.x.y"),
            "/notifications/hub?access_token=REDACTED"
        );
        assert_eq!(
            redact("/notifications/anonymous-hub?Token=abc"),
            "/notifications/anonymous-hub?Token=REDACTED"
        );
        assert_eq!(redact("/attachments/c/f?token=abc&x=1"), "/attachments/c/f?token=REDACTED&x=1");
        assert_eq!(redact("/api/sends/id/file?t=abc"), "/api/sends/id/file?t=REDACTED");
        assert_eq!(
            redact("/x?ACCESS_TOKEN=a&access_token=b"),
            "/x?ACCESS_TOKEN=REDACTED&access_token=REDACTED"
        );
    }

    #[test]
    fn common_log_time_and_json_strings() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_860_000);
        assert_eq!(clf_time(t), "28/Nov/2026:10:00:00 +0000");
        assert_eq!(clf_time(std::time::UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn leaves_other_queries_alone() {
        assert_eq!(redact("/api/sync?excludeDomains=true"), "/api/sync?excludeDomains=true");
        assert_eq!(redact("/alive"), "/alive");
        assert_eq!(redact("/x?tt=1&token_type=2"), "/x?tt=1&token_type=2");
        assert_eq!(redact("/x?"), "/x?");
    }

    #[test]
    fn a_secret_name_without_value_is_still_marked() {
        assert_eq!(redact("/x?token"), "/x?token");
        assert_eq!(redact("/x?token=&a"), "/x?token=REDACTED&a");
    }
}
