//! The `vaultgate` command: argument parsing, logging, signals, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{signal, Signal, SignalKind};

use vaultgate::{Config, Server};

const USAGE: &str = "\
vaultgate — a TLS front door for Vaultwarden

Usage:
  vaultgate [--config PATH]         run the proxy (default config: ./proxy.toml);
                                    SIGHUP reloads the config and certificates
  vaultgate check [--config PATH]   validate the config and certificates, then exit
  vaultgate check --probe [--config PATH]
                                    also test the running setup end to end: TLS,
                                    GET /alive through the proxy, the hub upgrade
  vaultgate --help | --version

Logging: the [log] level in the config, or RUST_LOG (e.g. RUST_LOG=debug).";

enum Command {
    Run(PathBuf),
    Check(PathBuf, bool),
    Help,
    Version,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut check = false;
    let mut probe = false;
    let mut config = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" | "help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "check" if !check && config.is_none() => check = true,
            "--probe" if check => probe = true,
            "-c" | "--config" => match args.next() {
                Some(path) => config = Some(PathBuf::from(path)),
                None => return Err("--config needs a path, e.g. --config /etc/vaultgate/proxy.toml".into()),
            },
            other => match other.strip_prefix("--config=") {
                Some(path) => config = Some(PathBuf::from(path)),
                None => return Err(format!("unexpected argument `{other}`")),
            },
        }
    }
    let config = config.unwrap_or_else(|| PathBuf::from("proxy.toml"));
    Ok(if check { Command::Check(config, probe) } else { Command::Run(config) })
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("vaultgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(path, probe) => check(&path, probe),
        Command::Run(path) => run(&path),
    }
}

fn check(path: &std::path::Path, probe: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = vaultgate::tls::load(&config.tls, &Default::default()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let vaultgate::config::TlsSource::Acme(acme) = &config.tls.source {
        println!("{}", vaultgate::acme::describe_stored(acme));
    }
    if let vaultgate::config::TlsSource::Files { key, .. } = &config.tls.source {
        if let Some(warning) = vaultgate::tls::key_permission_warning(key) {
            eprintln!("warning: {warning}");
        }
    }
    println!(
        "{}: ok (listen {}, upstream {}, hub paths {})",
        path.display(),
        config.listen,
        config.upstream.url,
        config.hub_paths.join(", ")
    );
    if !probe {
        return ExitCode::SUCCESS;
    }
    let target = vaultgate::check::probe::Target::from_config(&config);
    let findings = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(vaultgate::check::probe::probe(&config, &target)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    for f in &findings {
        println!("{f}");
    }
    if findings.iter().all(|f| f.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log_level.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The first worker; the server starts the others (one thread each).
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        // SIGTERM and SIGHUP handled before READY=1 lets systemd send them.
        let term = signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
        let hup = vaultgate::server::reload::hangup();
        vaultgate::server::systemd::ready();
        tokio::select! {
            _ = wait_for_signal(term) => {}
            _ = vaultgate::server::reload::watch_with(&server, path, hup) => {}
        }
        tracing::info!("shutting down");
        vaultgate::server::systemd::stopping();
        server.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal(mut term: Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        assert!(matches!(parse(&[]), Ok(Command::Run(p)) if p == std::path::Path::new("proxy.toml")));
        assert!(
            matches!(parse(&["--config", "/x.toml"]), Ok(Command::Run(p)) if p == std::path::Path::new("/x.toml"))
        );
        assert!(
            matches!(parse(&["check", "--config=/y"]), Ok(Command::Check(p, false)) if p == std::path::Path::new("/y"))
        );
        assert!(matches!(parse(&["check", "--probe"]), Ok(Command::Check(_, true))));
        assert!(parse(&["--probe"]).is_err());
        assert!(matches!(parse(&["--help"]), Ok(Command::Help)));
        assert!(matches!(parse(&["--version"]), Ok(Command::Version)));
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["bogus"]).is_err());
        assert!(parse(&["check", "check"]).is_err());
    }
}
