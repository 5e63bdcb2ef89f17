//! vaultgate: a TLS-terminating, WebSocket-aware reverse proxy for Vaultwarden.
//!
//! The library API is small on purpose: load a [`Config`], [`Server::start`]
//! it, read [`Server::local_addr`], and [`Server::shutdown`] it.
//!
//! The modules are floors: each uses only the ones listed after it
//! (README.md, "Architecture", has the map).

pub mod acme;
pub mod check;
pub mod config;
pub mod conn_limit;
pub mod http;
pub mod io;
pub mod observe;
pub mod proxy;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod websocket;

pub use config::{Config, ConfigError};
pub use server::{Server, ServerError};
