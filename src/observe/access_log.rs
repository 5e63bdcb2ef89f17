//! One access-log line per request: where it goes, in which format; what
//! of the request it may show is `redact.rs`'s.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode, Version};

use super::redact::{escape, redact};
use crate::config::{AccessDestination as Destination, AccessFormat as Format};
use crate::http::client_cert::ClientCert;

/// The access log of one configuration generation.
pub struct Sink {
    destination: Destination,
    format: Format,
    file: Option<std::sync::Mutex<std::fs::File>>,
}

impl Sink {
    pub fn open(destination: Destination, format: Format) -> std::io::Result<Sink> {
        let file = match &destination {
            Destination::File(path) => {
                Some(std::sync::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?))
            }
            _ => None,
        };
        Ok(Sink { destination, format, file })
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
                    method = %escape(e.method.as_str()),
                    path = %escape(&e.path),
                    version = ?e.version,
                    status,
                    bytes_in,
                    bytes_out,
                    duration_ms = ms,
                    upstream_ms = upstream,
                    cert_subject = e.cert.as_ref().map(|c| c.subject.as_str()),
                    cert_serial = e.cert.as_ref().map(|c| c.serial.as_str()),
                    "{event}"
                );
                return;
            }
            (_, Format::Text) => format!(
                "{} - - [{}] \"{} {} {:?}\" {status} {bytes_out} \"{}\" \"{}\" in={bytes_in} ms={ms} upstream_ms={}{}{}\n",
                e.client,
                clf_time(std::time::SystemTime::now()),
                escape(e.method.as_str()),
                escape(&e.path),
                e.version,
                e.referer.as_deref().map_or("-".into(), escape),
                e.user_agent.as_deref().map_or("-".into(), escape),
                upstream.map_or("-".into(), |u| u.to_string()),
                // Verified, and printable ASCII (x509::subject); escaped all the same.
                e.cert.as_ref().map_or(String::new(), |c| format!(
                    " cert=\"{}\" serial={}",
                    escape(&c.subject),
                    escape(&c.serial)
                )),
                if event.is_empty() { String::new() } else { format!(" event=\"{}\"", escape(event)) },
            ),
            (_, Format::Json) => {
                let line = JsonLine {
                    time: rfc3339_time(std::time::SystemTime::now()),
                    client: e.client,
                    method: e.method.as_str(),
                    path: &e.path,
                    version: format!("{:?}", e.version),
                    status,
                    bytes_in,
                    bytes_out,
                    duration_ms: ms,
                    upstream_ms: upstream,
                    referer: e.referer.as_deref(),
                    user_agent: e.user_agent.as_deref(),
                    cert_subject: e.cert.as_ref().map(|c| c.subject.as_str()),
                    cert_serial: e.cert.as_ref().map(|c| c.serial.as_str()),
                    event: if event.is_empty() { "request" } else { event },
                };
                // serde_json escapes quotes, backslashes and every control character.
                let mut text = serde_json::to_string(&line).unwrap_or_default();
                text.push('\n');
                text
            }
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

/// `28/Nov/2026:10:00:00 +0000`, the Common Log Format's time. A clock
/// before 1970 reads as 1970, one past the end of `time`'s calendar
/// (9999-12-31, without its large-dates feature) as that last second.
fn clf_time(t: std::time::SystemTime) -> String {
    const CLF: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    utc(t).format(CLF).expect("every field of the format is in an OffsetDateTime")
}

/// `2026-11-28T10:00:00.123Z`, RFC 3339 in UTC to the millisecond: the JSON
/// format's time, which log collectors parse without a pattern.
fn rfc3339_time(t: std::time::SystemTime) -> String {
    const RFC3339: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    utc(t).format(RFC3339).expect("every field of the format is in an OffsetDateTime")
}

/// `t` in the calendar: before 1970 reads as 1970, after 9999 as its last second.
fn utc(t: std::time::SystemTime) -> time::OffsetDateTime {
    const LAST: i64 = 253_402_300_799;
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(LAST);
    let (secs, nanos) = if secs > LAST { (LAST, 0) } else { (secs, since.subsec_nanos()) };
    time::OffsetDateTime::from_unix_timestamp(secs).expect("0..=LAST is in the calendar")
        + time::Duration::nanoseconds(i64::from(nanos))
}

/// One access line in the JSON format, fields in this order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: String,
    client: IpAddr,
    method: &'a str,
    path: &'a str,
    version: String,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: u64,
    upstream_ms: Option<u64>,
    referer: Option<&'a str>,
    user_agent: Option<&'a str>,
    /// The verified client certificate, when the connection presented one.
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_serial: Option<&'a str>,
    event: &'a str,
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
    /// Redacted like the path. These and the path are kept as sent and
    /// escaped when written.
    referer: Option<String>,
    user_agent: Option<String>,
    /// The client certificate the connection presented (verified).
    pub cert: Option<ClientCert>,
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
            req.get(name).filter(|_| wanted).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
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
            cert: None,
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

    /// Writes the access line.
    pub fn finish(&self, status: StatusCode, bytes_out: u64) {
        self.sink.write(self, status.as_u16(), self.bytes_in(), bytes_out, "");
    }

    /// Request body bytes read so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
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
            cert: self.cert.clone(),
            sink: self.sink.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_log_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_860_000);
        assert_eq!(clf_time(t), "28/Nov/2026:10:00:00 +0000");
        assert_eq!(clf_time(std::time::UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn json_time_is_rfc_3339_in_utc_to_the_millisecond() {
        let at = |ms: u64| rfc3339_time(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        assert_eq!(at(1_795_860_000_123), "2026-11-28T10:00:00.123Z");
        assert_eq!(at(1_795_860_000_999), "2026-11-28T10:00:00.999Z", "cut, not rounded up");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_time(std::time::UNIX_EPOCH - std::time::Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(at(u64::MAX / 2), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            clf_time(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_860_000_999)),
            "28/Nov/2026:10:00:00 +0000"
        );
    }

    #[test]
    fn common_log_time_at_the_calendar_edges() {
        let at = |secs: u64| clf_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(951_782_400), "29/Feb/2000:00:00:00 +0000", "2000 is a leap year");
        assert_eq!(at(951_868_800), "01/Mar/2000:00:00:00 +0000");
        assert_eq!(at(1_709_251_199), "29/Feb/2024:23:59:59 +0000");
        assert_eq!(at(4_107_542_399), "28/Feb/2100:23:59:59 +0000");
        assert_eq!(at(4_107_542_400), "01/Mar/2100:00:00:00 +0000", "2100 is not");
        assert_eq!(at(1_798_761_599), "31/Dec/2026:23:59:59 +0000");
        assert_eq!(at(1_798_761_600), "01/Jan/2027:00:00:00 +0000");
        assert_eq!(at(1_781_234_567), "12/Jun/2026:03:22:47 +0000", "Python agrees");
        assert_eq!(at(253_402_300_799), "31/Dec/9999:23:59:59 +0000");
        assert_eq!(at(300_000_000_000), "31/Dec/9999:23:59:59 +0000", "the end of the calendar, no panic");
        // Sub-second parts are dropped, a clock before 1970 reads as 1970.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_860_000_999);
        assert_eq!(clf_time(t), "28/Nov/2026:10:00:00 +0000");
        let before = std::time::UNIX_EPOCH - std::time::Duration::from_secs(86_400 * 400);
        assert_eq!(clf_time(before), "01/Jan/1970:00:00:00 +0000");
        let months: Vec<String> =
            (0..12u64).map(|m| at(1_767_225_600 + m * 31 * 86_400)[3..6].to_string()).collect();
        assert_eq!(
            months,
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        );
    }

    fn file_sink(format: Format) -> (tempfile::TempDir, std::path::PathBuf, Arc<Sink>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let sink = Sink::open(Destination::File(path.clone()), format).unwrap();
        (dir, path, Arc::new(sink))
    }

    fn hostile_request() -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::USER_AGENT, http::HeaderValue::from_static("curl\" 200 0 \"x\\"));
        h.insert(
            http::header::REFERER,
            http::HeaderValue::from_bytes("https://x/?code=s3cr3t&\"\t\u{202e}".as_bytes()).unwrap(),
        );
        h
    }

    #[test]
    fn text_lines_cannot_be_forged() {
        let (_dir, path, sink) = file_sink(Format::Text);
        let e = Entry::new(
            "192.0.2.1".parse().unwrap(),
            Method::GET,
            "/a\"b\\c?access%5Ftoken=s3cr3t",
            &hostile_request(),
            Version::HTTP_11,
            sink,
        );
        e.finish(StatusCode::OK, 0);
        let line = std::fs::read_to_string(path).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(!line.contains("s3cr3t") && !line.contains(['\t', '\u{202e}']), "{line}");
        // Every `"` left unescaped is one of the six the format writes itself.
        let (mut bare, mut escaped) = (0, false);
        for c in line.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => bare += 1,
                _ => {}
            }
        }
        assert_eq!(bare, 6, "{line}");
        assert!(line.contains("\"GET /a\\\"b\\\\c?access%5Ftoken=REDACTED HTTP/1.1\""), "{line}");
        assert!(line.contains("\"curl\\\" 200 0 \\\"x\\\\\""), "{line}");
    }

    #[test]
    fn json_lines_are_json_with_the_fields_as_sent() {
        let (_dir, path, sink) = file_sink(Format::Json);
        let e = Entry::new(
            "192.0.2.1".parse().unwrap(),
            Method::GET,
            "/a\"b\\c?t=s3cr3t",
            &hostile_request(),
            Version::HTTP_2,
            sink,
        );
        e.finish(StatusCode::OK, 0);
        let line = std::fs::read_to_string(path).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(!line.contains("s3cr3t"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/a\"b\\c?t=REDACTED");
        assert_eq!(v["user_agent"], "curl\" 200 0 \"x\\");
        assert_eq!(v["referer"], "https://x/?code=REDACTED&\"\t\u{202e}");
        assert_eq!(v["client"], "192.0.2.1");
        assert_eq!(v["version"], "HTTP/2.0");
        assert_eq!(v["upstream_ms"], serde_json::Value::Null);
        assert_eq!(v["event"], "request");
        let time = v["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T' && time.starts_with("20"),
            "RFC 3339: {time}"
        );
    }
}
