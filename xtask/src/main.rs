//! Project automation for serversets-rs, in the spirit of rust-analyzer's
//! xtask: plain Rust, no extra tools, run as `cargo xtask <command>`.
//!
//! Each command lives in its own module; this file only parses arguments.
//! xtask only automates: the demo is its own crate (`serversets-demo`), so
//! xtask depends on none of the serversets crates; the helpers both use
//! (terminal output, processes, system packages) are xtask's library.

mod bench;
mod soak;
mod test;
mod zk;

use std::path::PathBuf;
use std::process::ExitCode;

// The helpers shared with the demo live in xtask's library (lib.rs).
use xtask::{proc, provision, ui, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  install                    install the system packages the tests and the demo
                             run (as root with apt-get; otherwise print the
                             exact command and fail when any is missing)
  test                       install missing system packages (as root), then
                             cargo fmt --check, clippy -D warnings, the docs
                             with warnings denied, cargo test
  demo                       a narrated walk-through against a local ZooKeeper
                             (runs `cargo run -p serversets-demo`)
  zk start [--ensemble N]    start a local ZooKeeper (N servers; default 1)
  zk status                  show the local ZooKeeper's servers and their modes
  zk stop                    stop it
  bench [PREFIX]             run the benchmarks (only those whose names start
                             with PREFIX), write target/bench/results.json and
                             target/bench/report.md
  soak [--seconds N] [--seed S] [--bin PATH]
                             a chaos soak: N seconds (default 60) of random
                             faults (servers killed, paused, quorum lost;
                             resets, stalls, lost replies; sidecars and
                             watchers killed) against the serversets command
                             on a 3-node ZooKeeper; checks that every watcher
                             converges, no member is lost or duplicated, and
                             nothing panics. S replays a run (default: random);
                             PATH soaks that serversets binary instead
  thrift-gen                 regenerate thriftset's test service from its
                             .thrift file with Debian's thrift-compiler
  help                       this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            let ui = ui::Ui::stderr();
            eprintln!("{} {e}", ui.red("xtask: error:"));
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["test"] => test::run(),
        ["install"] => provision::run(),
        ["demo"] => demo(),
        ["zk", rest @ ..] => zk::run(rest),
        ["bench"] => bench::run(None),
        ["bench", prefix] => bench::run(Some(prefix)),
        ["soak", rest @ ..] => soak::run(rest),
        ["thrift-gen"] => thrift_gen(),
        [] | ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprint!("xtask: unknown arguments {args:?}\n\n{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Runs the demo, which lives in its own crate so that xtask does not depend
/// on the balancer crates; its exit code is the demo's.
fn demo() -> Result<ExitCode> {
    let status = std::process::Command::new(cargo())
        .args(["run", "--quiet", "--package", "serversets-demo"])
        .current_dir(project_root())
        .status()
        .map_err(|e| format!("cannot run `cargo run -p serversets-demo`: {e}"))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// Regenerates the Rust code of thriftset's test service. The generated file
/// is committed; a test in thriftset checks that it matches this output.
fn thrift_gen() -> Result<ExitCode> {
    let root = project_root();
    let crate_dir = root.join("crates/serversets-thriftset");
    let status = std::process::Command::new("thrift")
        .args(["--gen", "rs", "-out"])
        .arg(crate_dir.join("tests/support"))
        .arg(crate_dir.join("thrift/echo.thrift"))
        .status()
        .map_err(|e| {
            format!(
                "cannot run `thrift` ({e}); install it with `apt-get install -y thrift-compiler`"
            )
        })?;
    if !status.success() {
        return Err(format!("thrift --gen rs failed: {status}").into());
    }
    println!("regenerated crates/serversets-thriftset/tests/support/echo.rs");
    Ok(ExitCode::SUCCESS)
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The cargo that started us (so `cargo +toolchain xtask` stays consistent).
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The workspace's target directory (honours CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                project_root().join(dir)
            }
        }
        _ => project_root().join("target"),
    }
}
