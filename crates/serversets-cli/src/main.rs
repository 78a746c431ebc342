//! The `serversets` binary: everything lives in the library part.

fn main() -> std::process::ExitCode {
    serversets_cli::main_with_args(std::env::args_os())
}
