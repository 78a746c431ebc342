//! What every step shares: the narration, and the things the steps start
//! and later steps use.

use std::time::Duration;

use serversets_core::{Environment, Registration, ServerSet, Snapshot, Watch};
use serversets_fixedset::FixedSet;
use testkit::ZkCluster;
use xtask::ui::Ui;

use crate::http::Backend;
use crate::Result;

/// Everything the steps share: output, and the things they start.
pub struct Demo {
    /// Colours for the narration.
    pub ui: Ui,
    /// The demo's own ZooKeeper ensemble.
    pub zk: Option<ZkCluster>,
    /// Pids of the ZooKeeper servers, to prove they are gone at the end.
    pub zk_pids: Vec<u32>,
    /// The fixed set of the fixedset steps.
    pub fixed: Option<FixedSet>,
    /// The demo's HTTP backends.
    pub backends: Vec<Backend>,
    /// The server set the backends register in.
    pub set: Option<ServerSet>,
    /// The backends' registrations.
    pub registrations: Vec<Registration>,
    /// A client's watch on the set.
    pub watch: Option<Watch>,
}

impl Demo {
    /// A context with nothing started yet.
    pub fn new(ui: Ui) -> Demo {
        Demo {
            ui,
            zk: None,
            zk_pids: Vec::new(),
            fixed: None,
            backends: Vec::new(),
            set: None,
            registrations: Vec::new(),
            watch: None,
        }
    }

    /// A line of narration under the current step.
    pub fn say(&self, text: &str) {
        println!("      {text}");
    }

    /// A line of narration showing something that was checked.
    pub fn ok(&self, text: &str) {
        println!("      {} {text}", self.ui.green("✓"));
    }

    /// Fails the step with `what` unless `cond` holds.
    pub fn check(&self, cond: bool, what: impl Into<String>) -> Result<()> {
        let what = what.into();
        if cond {
            self.ok(&what);
            Ok(())
        } else {
            Err(format!("expected: {what}").into())
        }
    }

    /// The running ensemble, or an error saying a previous step did not run.
    pub fn zk(&self) -> Result<&ZkCluster> {
        self.zk
            .as_ref()
            .ok_or_else(|| "ZooKeeper is not running (the start step did not run)".into())
    }

    /// The fixed set of the fixedset steps.
    pub fn fixed(&self) -> Result<&FixedSet> {
        self.fixed
            .as_ref()
            .ok_or_else(|| "no fixed set (the fixedset step did not run)".into())
    }

    /// The client's watch on the HTTP set.
    pub fn watch(&self) -> Result<&Watch> {
        self.watch
            .as_ref()
            .ok_or_else(|| "no watch (the watch step did not run)".into())
    }

    /// A server set called `name` on the demo's ensemble, with a short
    /// session timeout so that the steps that break things stay quick.
    pub fn server_set(&self, name: &str) -> Result<ServerSet> {
        let connect = self.zk()?.connect_string();
        Ok(
            ServerSet::builder(Environment::Local, name, [connect.as_str()])
                .session_timeout(Duration::from_secs(4))
                .build()?,
        )
    }

    /// A snapshot's member addresses, as `[a, b, c]`.
    pub fn members(&self, snap: &Snapshot) -> String {
        let list: Vec<String> = snap.iter().map(|m| m.addr().to_string()).collect();
        format!("[{}]", list.join(", "))
    }
}
