//! `offergate`: see `offergate --help` and README.md.
fn main() -> std::process::ExitCode {
    offergate::cli::main()
}
