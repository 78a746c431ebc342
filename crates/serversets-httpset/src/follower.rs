//! The follower: core's shared one ([`serversets_core::balance::Follower`])
//! run for this set, applying each membership change as the source
//! publishes it.
//!
//! Requests would see a change anyway (each one checks the snapshot
//! version), but only when they come; without traffic a departed member's
//! pool, and its idle connections, would stay until the idle timeout. The
//! task holds the set weakly, so it never keeps a dropped set alive, and
//! ends with it.
//!
//! Its policy for ending is the one every balancer shares: the source
//! closing ends it (the set keeps its last members), and so does the set
//! being dropped. If it dies any other way (its runtime shut down, a panic
//! while applying) it is logged at error level and not restarted: the
//! same change would likely kill it again. Requests then keep the set in
//! step on their own, so a departed member's idle connections close at the
//! next request rather than at once.

use std::sync::Arc;

use hyper_util::client::legacy::connect::Connect;
use serversets_core::balance::Follower;

use crate::inner::{Inner, Wait};

impl<C> Inner<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// Starts the follower task unless it was started before (whatever
    /// became of it). Needs a Tokio runtime; without one it is tried again
    /// on the next request.
    pub(crate) fn ensure_follower(self: &Arc<Self>) {
        if self.follower().get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let set = Arc::downgrade(self);
        self.follower().get_or_init(|| {
            Follower::from_arc(self.watcher().clone()).spawn(&runtime, move |_snapshot| {
                // `sync` installs the newest snapshot, whichever this is.
                if let Some(inner) = set.upgrade() {
                    inner.sync(Wait::Yes);
                }
                std::future::ready(())
            })
        });
    }
}
