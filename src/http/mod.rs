//! HTTP semantics as pure functions: header rules, the Host, paths, the
//! client's address, access rules.

pub mod access;
pub mod chunked;
pub mod client_cert;
pub mod client_ip;
pub mod header_line;
pub mod headers;
pub mod host;
pub mod names;
pub mod path;
pub mod request_head;
pub mod response_head;
