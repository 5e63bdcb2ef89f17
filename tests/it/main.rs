//! The integration tests, one module per topic, in one test binary (one
//! link instead of one per file, and the tests of every topic share the two
//! cores as `cargo test` schedules them).
//!
//! Not here: tests/churn.rs and tests/workers.rs count the process's file
//! descriptors and threads, which the other tests' proxies would disturb;
//! they are binaries of their own and share `support` through `#[path]`.

mod support;

mod acme;
mod acme_dns;
mod availability;
mod binary;
mod client_certs;
mod client_certs_vaultwarden;
mod deploy;
mod doctor;
mod forwarding;
mod guard;
mod hardening;
mod hostile;
mod http2;
mod hub;
mod hub_http2;
mod integrity;
mod leaks;
mod local_ca;
mod login_guard;
mod operations;
mod package;
mod properties;
mod proxy_protocol;
mod real_clients;
mod reload;
mod shutdown;
mod smuggling;
mod systemd;
mod tls;
mod upstream_answers;
mod upstream_connections;
mod vaultwarden;
