//! The routing table: what a reader loads with one atomic load and routes a
//! key by. It holds the ring, one memcached client per ring node (feature
//! `client`) and the per-node pick counters, all indexed by node.
//!
//! [`McSet`](crate::McSet) reads it; the follower
//! ([`follow`](crate::follow)) builds a new one per ring and swaps it in.
//! Neither depends on the other through it.

use std::sync::Arc;

use serversets_core::Member;

use crate::metrics::McMetrics;
use crate::{Error, Ring};

/// Timeouts for the memcached clients (feature `client`); nothing without it.
#[cfg(feature = "client")]
pub(crate) use crate::client::ClientOptions;
#[cfg(not(feature = "client"))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClientOptions;

/// A ring and what goes with each of its nodes.
pub(crate) struct Routing {
    ring: Arc<Ring>,
    /// One client per ring node, by node index.
    #[cfg(feature = "client")]
    clients: Box<[Arc<crate::client::ServerClient>]>,
    /// `serversets_mc_picks_total` of each ring node, by node index, when
    /// [`McSetBuilder::count_picks`](crate::McSetBuilder::count_picks) is
    /// on; `None` (nothing to do per pick) otherwise.
    picks: Option<Box<[metrics::Counter]>>,
}

impl Routing {
    /// The routing for `ring`, keeping the clients of `previous` for nodes
    /// that are still there, and setting the ring gauges.
    pub(crate) fn new(
        ring: Ring,
        _previous: Option<&Routing>,
        _options: &ClientOptions,
        metrics: &McMetrics,
    ) -> Routing {
        #[cfg(feature = "client")]
        let clients = crate::client::clients_for(
            &ring,
            _previous.map_or(&[][..], |p| &p.clients[..]),
            *_options,
        );
        let picks = metrics.pick_counters(&ring);
        metrics.ring_installed(&ring);
        Routing {
            ring: Arc::new(ring),
            #[cfg(feature = "client")]
            clients,
            picks,
        }
    }

    /// The ring.
    pub(crate) fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// The index of the node owning `key`, counted as a pick (when picks
    /// are counted); [`Error::NoMembers`] when no node owns a point.
    #[inline]
    fn pick_index(&self, key: &[u8]) -> Result<usize, Error> {
        let index = self.ring.pick_index(key).ok_or(Error::NoMembers)?;
        if let Some(counter) = self.picks.as_ref().and_then(|p| p.get(index)) {
            counter.increment(1);
        }
        Ok(index)
    }

    /// The member owning `key`.
    #[inline]
    pub(crate) fn pick(&self, key: &[u8]) -> Result<Member, Error> {
        let index = self.pick_index(key)?;
        match self.ring.nodes().get(index) {
            Some(node) => Ok(node.member().clone()),
            None => Err(Error::NoMembers),
        }
    }

    /// The client of the member owning `key`.
    #[cfg(feature = "client")]
    pub(crate) fn client(&self, key: &[u8]) -> Result<Arc<crate::client::ServerClient>, Error> {
        let index = self.pick_index(key)?;
        self.clients.get(index).cloned().ok_or(Error::NoMembers)
    }

    /// Number of clients held (one per ring node).
    #[cfg(all(feature = "client", feature = "test-util"))]
    pub(crate) fn client_count(&self) -> usize {
        self.clients.len()
    }
}
