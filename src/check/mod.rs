//! `vaultgate check`: the configuration, and with `--probe` the running proxy.

pub mod probe;
