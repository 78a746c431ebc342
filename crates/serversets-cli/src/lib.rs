//! The `serversets` command: see a Finagle-compatible server set on
//! ZooKeeper, register any process in one, and find where memcache keys
//! live.
//!
//! | command | what it does |
//! |---|---|
//! | `watch` | the members now, then each change (time, added, removed) and connection changes; `--json`, `--once` |
//! | `register` | a sidecar: registers a member, keeps it through ZooKeeper faults, removes it while a health check fails, removes it on SIGINT/SIGTERM |
//! | `ls [PATH]` | the server sets under a path, as a tree with member counts |
//! | `dump` | every child of a set with its raw data and how a watch reads it |
//! | `locate KEY...` | `KEY<TAB>HOST:PORT` per key, over a watched set or a `--node` list (ketama or go-mcset ring) |
//! | `weight --select S --weight W` | writes the Finagle `vector_` znode for selector `S` (`inet=`, `member=`, `shard=`), replacing the previous one atomically ([`steer`]) |
//! | `drain HOST:PORT`, `undrain HOST:PORT` | weight -1.0 for an address (clients stop using it, it stays registered), and its removal |
//! | `weights` | the `vector_` znodes and every member's resulting weight |
//! | `completions SHELL` | a shell completion script |
//!
//! The binary is a thin wrapper over this library so tests (and other
//! tools) can drive the same code: parse a [`Cli`], then [`run`] it.
//!
//! ```
//! use clap::Parser;
//! use serversets_cli::{run, Cli};
//!
//! let cli = Cli::try_parse_from(["serversets", "locate", "k1", "--node", "10.0.0.1:11211"])?;
//! let mut out = Vec::new();
//! tokio::runtime::Runtime::new()?.block_on(run(&cli, &mut out))?;
//! assert_eq!(String::from_utf8(out)?, "k1\t10.0.0.1:11211\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod args;
mod check;
mod cmd;
mod duration;
mod error;
mod metrics;
mod output;
mod render;
mod signals;
pub mod steer;
mod target;
mod timefmt;
mod vectors;
mod zkconnect;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use output::{stderr_line, Detached, WhenFull};

pub use args::{
    AclArg, Cli, Command, CompletionsArgs, DrainArgs, DumpArgs, GlobalArgs, IdentityArg,
    LocateArgs, LsArgs, RegisterArgs, RingArg, UndrainArgs, WatchArgs, WeightArgs, WeightsArgs,
};
pub use check::HttpUrl;
pub use duration::parse_duration;
pub use error::Error;
pub use render::member_json;
pub use serversets_core::{classify, MemberFilter, Reading, Verdict};
pub use zkconnect::ZkConnect;

/// Runs a parsed command line, writing its output to `out`. Needs a tokio
/// runtime with timers, I/O and signals enabled (`Runtime::new()` has them).
///
/// Long-running commands (`watch` without `--once`, `register`) return when
/// the process receives SIGINT or SIGTERM; `register` first removes its
/// member.
///
/// # Errors
///
/// Why the command failed, as an [`Error`] whose
/// [`exit_code`](Error::exit_code) is the process's and whose
/// [`report`](Error::report) is what it prints: wrong options, ZooKeeper
/// unreachable or refusing a request, output that cannot be written, ...
///
/// ```
/// use clap::Parser;
/// use serversets_cli::{run, Cli};
///
/// let cli = Cli::try_parse_from(["serversets", "locate", "a", "b", "--ring", "go-mcset",
///     "--node", "10.0.0.1:11211", "--node", "10.0.0.2:11211", "--node", "10.0.0.3:11211"])?;
/// let mut out = Vec::new();
/// tokio::runtime::Runtime::new()?.block_on(run(&cli, &mut out))?;
/// assert_eq!(String::from_utf8(out)?.lines().count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn run(cli: &Cli, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    let result = dispatch(cli, out).await;
    match (result, &cli.global.zk) {
        (Err(e @ Error::Unreachable { .. }), Some(zk)) => {
            Err(target::explain_unreachable(e, zk).await)
        }
        (result, _) => result,
    }
}

async fn dispatch(cli: &Cli, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    let g = &cli.global;
    match &cli.command {
        Command::Watch(a) => cmd::watch::run(g, a, out).await,
        Command::Register(a) => cmd::register::run(g, a, out).await,
        Command::Ls(a) => cmd::ls::run(g, a, out).await,
        Command::Dump(a) => cmd::dump::run(g, a, out).await,
        Command::Locate(a) => cmd::locate::run(g, a, out).await,
        Command::Weight(a) => cmd::weight::weight(g, a, out).await,
        Command::Drain(a) => cmd::weight::drain(g, a, out).await,
        Command::Undrain(a) => cmd::weight::undrain(g, a, out).await,
        Command::Weights(a) => cmd::weights::run(g, a, out).await,
        Command::Completions(a) => {
            // Generated into memory first: clap_complete panics on a write
            // error, and a closed pipe (`| head`) must not panic.
            let mut script = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "serversets", &mut script);
            out.write_all(&script)?;
            out.flush()?;
            Ok(())
        }
    }
}

/// The whole program: parses `args` (the first is the program name), runs
/// the command on a fresh runtime, prints any error as one line on stderr
/// and returns the exit code (0 success, 1 failure, 2 usage error).
///
/// ```
/// use std::process::ExitCode;
/// use serversets_cli::main_with_args;
///
/// // A non-absolute path is a usage error, reported before anything connects.
/// let code = main_with_args(["serversets", "--zk", "127.0.0.1:2181", "--path", "relative", "dump"]);
/// assert_eq!(code, ExitCode::from(2));
/// ```
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_failure(e),
    };
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            stderr_line(&format!("serversets: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // The long-running commands write through a thread of their own, so a
    // stdout nobody reads cannot stall their signal handling (and, for
    // `register`, the deregistration).
    let when_full = match &cli.command {
        Command::Watch(_) => Some(WhenFull::Wait),
        Command::Register(_) => Some(WhenFull::Drop),
        _ => None,
    };
    let detached = match when_full {
        Some(w) => match Detached::spawn(std::io::stdout(), w, output::QUEUE_BYTES) {
            Ok(d) => Some(d),
            Err(e) => {
                stderr_line(&format!("serversets: cannot start the output thread: {e}"));
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let (result, detached) = match detached {
        Some(mut d) => (runtime.block_on(run(&cli, &mut d)), Some(d)),
        None => (runtime.block_on(run(&cli, &mut std::io::stdout())), None),
    };
    // Background tasks (the ZooKeeper session) are cut short here; members
    // were already removed by `register`, and a closed session takes any
    // left-over ephemeral znode with it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    if let Some(d) = detached {
        let finished = d.finish(std::time::Duration::from_secs(1));
        if finished.dropped > 0 || finished.unwritten > 0 {
            stderr_line(&format!(
                "serversets: stdout was not read: {} output chunks dropped, {} left unwritten",
                finished.dropped, finished.unwritten
            ));
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_quiet() {
                stderr_line(&format!("serversets: {}", e.report()));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Help and version go to stdout as usual; every other parse error becomes
/// one line on stderr and exit code 2.
fn clap_failure(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            stderr_line(&format!("serversets: {}", one_line(&e)));
            ExitCode::from(2)
        }
    }
}

/// clap's message without the usage block and tips, on one line.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let head = text.split("\n\n").next().unwrap_or(&text);
    let flat = head.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.strip_prefix("error: ").unwrap_or(&flat);
    format!("{flat} (see --help)")
}

/// Library logs go to stderr, off unless `-v` or `RUST_LOG` asks: the
/// commands print what matters themselves.
fn init_logging(verbose: u8) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ => match verbose {
            0 => "off".to_string(),
            1 => "serversets_core=info,serversets_cli=info,serversets_mcset=info".to_string(),
            _ => "serversets_core=debug,serversets_cli=debug,serversets_mcset=debug".to_string(),
        },
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_become_one_line() {
        let e = Cli::try_parse_from(["serversets", "locate", "k", "--ring", "jump"]).unwrap_err();
        let line = one_line(&e);
        assert!(!line.contains('\n'));
        assert!(line.contains("'jump'") && line.contains("ketama"), "{line}");
        let e = Cli::try_parse_from(["serversets", "register", "--port", "1"]).unwrap_err();
        let line = one_line(&e);
        assert!(line.contains("--host"), "{line}");
    }
}
