//! Placeholder so the `plugins` branch builds on its own; main's `cli` replaces this file on
//! merge (keep main's, and add `pub mod plugin;` plus a `Plugin` subcommand that calls
//! [`plugin::run`]).

pub mod plugin;

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    eprintln!("llmos: the CLI lives on branch main; this branch only carries `cli::plugin`");
    std::process::ExitCode::FAILURE
}
