//! `offergate`: see `offergate --help` and README.md.

/// mimalloc, not glibc malloc: allocation was the largest user-space cost in a
/// profile of the forward path, and mimalloc won every interleaved A/B load run
/// (+19 % req/s on average; benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    offergate::cli::main()
}
