//! The `sieve` binary. All of its logic lives in `sieve-cli`; this file only hands over the process.

fn main() -> std::process::ExitCode {
    sieve_cli::main()
}
