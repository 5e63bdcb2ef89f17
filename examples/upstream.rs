//! A stand-in Vaultwarden on 127.0.0.1:8000 (or the address given), so the
//! proxy can be tried without installing Vaultwarden:
//!
//!     cargo run --example upstream [-- 127.0.0.1:8000]
//!
//! REST requests are echoed back as JSON (method, target, headers, body hash);
//! `POST /api/ciphers` also pushes a "cipher created" notification to every
//! hub; the hubs ping every 15 s like Vaultwarden does.

#[path = "support/standin.rs"]
mod standin;

use std::time::Duration;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8000".into());
    let addr = match addr.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("usage: upstream [IP:PORT]   (got `{addr}`)");
            std::process::exit(2);
        }
    };
    let standin = match standin::StandIn::start(addr, Duration::from_secs(15)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("stand-in Vaultwarden on http://{}", standin.addr);
    println!("push a notification: curl -k -X POST https://localhost:8443/api/ciphers -d '{{}}'");
    let _ = tokio::signal::ctrl_c().await;
}
