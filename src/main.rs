//! The `sieve` binary. All of its logic lives in `sieve-cli`; this file only hands over the process.

// mimalloc keeps freed pages for reuse: model forwards allocate many large activation buffers, and the system
// allocator's fresh pages cost page faults on every pass (measured: the MLP GEMM 45 ms → 29 ms, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sieve_models::init_cpu_threads();
    sieve_cli::main()
}
