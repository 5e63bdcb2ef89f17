//! What the proxy tells the operator: the access log and the metrics.

pub mod access_log;
pub mod metrics;
pub mod redact;
