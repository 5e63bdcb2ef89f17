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

/// What is known about a request when it arrives; logged when its response ends.
pub struct Entry {
    pub client: IpAddr,
    pub method: Method,
    /// Already redacted.
    pub path: String,
    pub version: Version,
    pub start: Instant,
    pub bytes_in: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl Entry {
    pub fn new(
        client: IpAddr,
        method: Method,
        path_and_query: &str,
        version: Version,
        metrics: Arc<Metrics>,
    ) -> Self {
        Entry {
            client,
            method,
            path: redact(path_and_query).into_owned(),
            version,
            start: Instant::now(),
            bytes_in: Arc::default(),
            metrics,
        }
    }

    /// Writes the access line and counts the request.
    pub fn finish(&self, status: StatusCode, bytes_out: u64) {
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        self.metrics.request(&self.method, status, self.start.elapsed(), bytes_in, bytes_out);
        tracing::info!(
            target: "vaultgate::access",
            client = %self.client,
            method = %self.method,
            path = %self.path,
            version = ?self.version,
            status = status.as_u16(),
            bytes_in,
            bytes_out,
            duration_ms = self.start.elapsed().as_millis() as u64,
        );
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
