//! vaultgate: a TLS-terminating, WebSocket-aware reverse proxy for Vaultwarden.
//!
//! The library API is small on purpose: load a [`Config`], [`Server::start`]
//! it, read [`Server::local_addr`], and [`Server::shutdown`] it.

pub mod access;
pub mod access_log;
pub mod acme;
pub mod body;
pub mod client_ip;
pub mod config;
pub mod conn_limit;
pub mod doctor;
pub mod h1_guard;
pub mod header_line;
pub mod headers;
pub mod metrics;
pub mod metrics_listener;
pub mod path;
pub mod plain_http;
pub mod proxy;
pub mod proxy_error;
pub mod redirect;
pub mod reload;
pub mod send_watch;
pub mod server;
pub mod systemd;
pub mod tls;
pub mod websocket;
pub mod workers;
pub mod write_batch;
pub mod x509;

pub use config::{Config, ConfigError};
pub use server::{ReloadError, Server, StartError};
