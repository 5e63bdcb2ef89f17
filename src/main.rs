//! The `vaultgate` command: arguments, logging, the runtime, exit codes
//! (0 done, 1 failed, 2 a usage error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vaultgate::{Config, Server};

/// vaultgate — a TLS front door for Vaultwarden. Without a command it runs the proxy.
#[derive(Debug, Parser)]
#[command(
    name = "vaultgate",
    version,
    after_help = "Examples:\n  vaultgate --config /etc/vaultgate/proxy.toml\n  vaultgate check --probe --config /etc/vaultgate/proxy.toml\n  vaultgate ca export --der vaultgate-local-ca.crt\n\n\
                  SIGHUP reloads the config and certificates. Logging: the [log] level in the config, or RUST_LOG (e.g. RUST_LOG=debug)."
)]
struct Cli {
    /// The configuration file
    #[arg(short, long, global = true, env = "VAULTGATE_CONFIG", default_value = "proxy.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
enum Command {
    /// Validate the config and certificates, then exit
    Check {
        /// Also test the running setup end to end: TLS, GET /alive through the proxy, the hub upgrade
        #[arg(long)]
        probe: bool,
    },
    /// List the addresses the login guard bans now (from its state file)
    Bans,
    /// Lift the login guard's ban on an address (the running vaultgate takes the request within a second)
    Unban {
        /// The address, as `vaultgate bans` lists it
        address: String,
    },
    /// The local CA ([tls] local_ca, the default without cert/key/acme)
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
enum CaCommand {
    /// Print the root certificate (PEM) that devices install to trust this server, and how to install it
    Export {
        /// Also write it as DER to FILE (the .crt that Android and iOS import)
        #[arg(long, value_name = "FILE")]
        der: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version 0 (clap's conventions).
    let cli = Cli::parse();
    let ok = match cli.command {
        Some(Command::Check { probe }) => vaultgate::check(&cli.config, probe),
        Some(Command::Ca { command: CaCommand::Export { der } }) => {
            vaultgate::ca_export(&cli.config, der.as_deref())
        }
        Some(Command::Bans) => vaultgate::bans(&cli.config),
        Some(Command::Unban { address }) => vaultgate::unban(&cli.config, &address),
        None => run(&cli.config),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(path: &Path) -> bool {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return false;
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
            return false;
        }
    };
    runtime.block_on(async {
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return false;
            }
        };
        match vaultgate::run_until_stopped(server, path).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot handle SIGTERM: {e}");
                false
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vaultgate").chain(args.iter().copied()))
    }

    #[test]
    fn arguments() {
        // Run without VAULTGATE_CONFIG in the environment, as tests are.
        assert!(std::env::var_os("VAULTGATE_CONFIG").is_none());
        let cli = parse(&[]).unwrap();
        assert_eq!((cli.config.as_path(), cli.command), (Path::new("proxy.toml"), None));
        for args in [&["--config", "/x.toml"][..], &["-c", "/x.toml"], &["--config=/x.toml"]] {
            let cli = parse(args).unwrap();
            assert_eq!((cli.config.as_path(), cli.command), (Path::new("/x.toml"), None), "{args:?}");
        }
        let cli = parse(&["check", "--config=/y"]).unwrap();
        assert_eq!(
            (cli.config.as_path(), cli.command),
            (Path::new("/y"), Some(Command::Check { probe: false }))
        );
        let cli = parse(&["ca", "export", "--der", "root.crt", "-c", "/y"]).unwrap();
        assert_eq!(
            (cli.config.as_path(), cli.command),
            (
                Path::new("/y"),
                Some(Command::Ca { command: CaCommand::Export { der: Some("root.crt".into()) } })
            )
        );
        let cli = parse(&["--config", "/y", "check", "--probe"]).unwrap();
        assert_eq!(
            (cli.config.as_path(), cli.command),
            (Path::new("/y"), Some(Command::Check { probe: true }))
        );
        for (args, kind) in [
            (&["--probe"][..], ErrorKind::UnknownArgument),
            (&["--config"], ErrorKind::InvalidValue),
            (&["bogus"], ErrorKind::InvalidSubcommand),
            (&["check", "check"], ErrorKind::UnknownArgument),
            (&["ca"], ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand),
            (&["ca", "export", "--der"], ErrorKind::InvalidValue),
            (&["--help"], ErrorKind::DisplayHelp),
            (&["--version"], ErrorKind::DisplayVersion),
        ] {
            assert_eq!(parse(args).err().map(|e| e.kind()), Some(kind), "{args:?}");
        }
        assert_eq!(parse(&["bogus"]).unwrap_err().exit_code(), 2, "usage errors exit 2");
        assert_eq!(parse(&["bans", "-c", "/b.toml"]).unwrap().command, Some(Command::Bans));
        assert_eq!(
            parse(&["unban", "203.0.113.7"]).unwrap().command,
            Some(Command::Unban { address: "203.0.113.7".into() })
        );
        assert_eq!(parse(&["unban"]).err().map(|e| e.kind()), Some(ErrorKind::MissingRequiredArgument));
        // The environment names the file unless --config does (this binary's
        // only test, so no other reads the environment meanwhile).
        std::env::set_var("VAULTGATE_CONFIG", "/etc/vaultgate/proxy.toml");
        let from_env = parse(&["check"]).map(|c| c.config);
        let from_flag = parse(&["-c", "/z.toml"]).map(|c| c.config);
        std::env::remove_var("VAULTGATE_CONFIG");
        assert_eq!(from_env.unwrap(), Path::new("/etc/vaultgate/proxy.toml"));
        assert_eq!(from_flag.unwrap(), Path::new("/z.toml"));
    }
}
