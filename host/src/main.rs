//! The `llmos` binary: parses the command line and hands over to [`llmos::cli`].

fn main() -> std::process::ExitCode {
    llmos::cli::main()
}
