//! `cargo run -p serversets-demo` (or `cargo xtask demo`): a narrated
//! walk-through a newcomer runs first. It starts a real 3-node ZooKeeper
//! ensemble, real HTTP backends and real memcached servers on loopback, and
//! shows the serversets crates at work on them.
//!
//! The demo is a list of [`Step`]s run in order against one [`Demo`] context.
//! A step narrates what it does and returns an error when something did not
//! behave as narrated; the remaining steps are then skipped, cleanup always
//! runs, and the command exits non-zero (so CI can run the demo too).
//!
//! To add a step: write `fn my_step(demo: &mut Demo) -> Result<()>` (or an
//! async one returning [`StepFuture`]) in the module of its topic, keep what
//! later steps need in a field of [`Demo`], and list it in [`steps`].

mod context;
mod fixedset;
mod http;
mod memcache;
mod zookeeper;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use xtask::proc::alive;
use xtask::ui::{human, Ui};

use crate::context::Demo;
use crate::fixedset::{fixedset_change, fixedset_close, fixedset_show};
use crate::http::{deregister, health_flip, http_spread, register_backends, watch_set};
use crate::memcache::memcache_keys;
use crate::zookeeper::{kill_leader, provision_step, roles, start_zk};

/// Errors end the demo with a message to a person (xtask's boxed error).
pub use xtask::{Error, Result};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e}", Ui::stderr().red("serversets-demo: error:"));
            ExitCode::FAILURE
        }
    }
}

/// The future an async step body returns; it may borrow the context.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// What a step runs.
pub enum Body {
    /// Blocking work (starting servers, plain checks).
    Sync(fn(&mut Demo) -> Result<()>),
    /// Async work, run on the demo's tokio runtime.
    Async(for<'a> fn(&'a mut Demo) -> StepFuture<'a>),
}

/// One narrated step of the demo.
pub struct Step {
    /// A short title, shown as `[3/7] title`.
    pub name: &'static str,
    /// The work.
    pub body: Body,
    /// An async step is failed when it takes longer than this (sync steps
    /// bound their own waits, e.g. testkit's ready timeout).
    pub timeout: Duration,
}

impl Step {
    /// A step of blocking work.
    pub fn sync(name: &'static str, body: fn(&mut Demo) -> Result<()>) -> Step {
        Step {
            name,
            body: Body::Sync(body),
            timeout: Duration::from_secs(60),
        }
    }

    /// A step of async work, run on the demo's runtime.
    pub fn async_(name: &'static str, body: for<'a> fn(&'a mut Demo) -> StepFuture<'a>) -> Step {
        Step {
            name,
            body: Body::Async(body),
            timeout: Duration::from_secs(60),
        }
    }
}

/// The demo, in order.
pub fn steps() -> Vec<Step> {
    vec![
        Step::sync("Provision system packages", provision_step),
        Step::sync("Start a 3-node ZooKeeper ensemble", start_zk),
        Step::sync("Ask each ZooKeeper server its role", roles),
        Step::sync("A FixedSet: a server set without ZooKeeper", fixedset_show),
        Step::async_(
            "Change notification: replace the list, the watcher wakes",
            fixedset_change,
        ),
        Step::async_(
            "Closing: consumers learn the source is gone",
            fixedset_close,
        ),
        Step::async_(
            "Register three HTTP backends in ZooKeeper, each guarded by a health check",
            register_backends,
        ),
        Step::async_("A client watches the server set", watch_set),
        Step::async_(
            "Send 300 HTTP requests through httpset over the watched set",
            http_spread,
        ),
        Step::async_(
            "A backend fails its health check: it leaves the set, then comes back",
            health_flip,
        ),
        Step::async_(
            "Memcache keys on a ketama ring over three real memcached servers",
            memcache_keys,
        ),
        Step::async_(
            "Kill the ZooKeeper leader: registrations and the watch carry on",
            kill_leader,
        ),
        Step::async_(
            "Shut the backends down: each one deregisters at once",
            deregister,
        ),
    ]
}

/// Runs every step in order (skipping the rest after a failure), then the
/// clean-up, and says whether everything behaved as narrated.
pub fn run() -> Result<ExitCode> {
    let ui = Ui::stdout();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut demo = Demo::new(ui);
    let steps = steps();
    let n = steps.len() + 1;
    let started = Instant::now();
    println!(
        "{}",
        ui.bold("serversets demo: service discovery you can watch")
    );
    let mut failed: Option<(&str, String)> = None;
    for (i, step) in steps.iter().enumerate() {
        let title = format!("[{}/{n}] {}", i + 1, step.name);
        if failed.is_some() {
            println!("{} {}", ui.dim("skip"), ui.dim(&title));
            continue;
        }
        println!("{} {}", ui.cyan("==>"), ui.bold(&title));
        let t = Instant::now();
        let result = match step.body {
            Body::Sync(body) => body(&mut demo),
            Body::Async(body) => runtime.block_on(async {
                match tokio::time::timeout(step.timeout, body(&mut demo)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("did not finish within {}", human(step.timeout)).into()),
                }
            }),
        };
        match result {
            Ok(()) => println!("      {}", ui.dim(&format!("({})", human(t.elapsed())))),
            Err(e) => {
                println!("      {} {e}", ui.red("✗"));
                failed = Some((step.name, e.to_string()));
            }
        }
    }

    println!(
        "{} {}",
        ui.cyan("==>"),
        ui.bold(&format!("[{n}/{n}] Clean up"))
    );
    let t = Instant::now();
    let cleaned = cleanup(&mut demo);
    match &cleaned {
        Ok(()) => println!("      {}", ui.dim(&format!("({})", human(t.elapsed())))),
        Err(e) => println!("      {} {e}", ui.red("✗")),
    }
    drop(runtime);

    println!();
    match (failed, cleaned) {
        (None, Ok(())) => {
            println!(
                "{} every step behaved as narrated ({})",
                ui.green("demo passed:"),
                human(started.elapsed())
            );
            Ok(ExitCode::SUCCESS)
        }
        (Some((name, e)), _) => {
            println!("{} step \"{name}\": {e}", ui.red("demo failed:"));
            Ok(ExitCode::FAILURE)
        }
        (None, Err(e)) => {
            println!("{} clean-up: {e}", ui.red("demo failed:"));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Stops everything the steps started and proves nothing is left behind.
fn cleanup(demo: &mut Demo) -> Result<()> {
    demo.fixed = None;
    demo.watch = None;
    demo.registrations.clear();
    demo.set = None;
    demo.backends.clear();
    if let Some(zk) = demo.zk.take() {
        let root = zk.root().to_path_buf();
        for i in 0..zk.len() {
            zk.stop(i)?;
        }
        drop(zk);
        demo.say("stopped the ZooKeeper servers");
        demo.check(!root.exists(), "their data directory is removed")?;
    }
    let left: Vec<u32> = demo.zk_pids.iter().copied().filter(|&p| alive(p)).collect();
    if !left.is_empty() {
        return Err(format!("ZooKeeper processes still running: {left:?}").into());
    }
    if !demo.zk_pids.is_empty() {
        demo.ok(&format!(
            "none of the {} server processes is left behind",
            demo.zk_pids.len()
        ));
    }
    Ok(())
}
