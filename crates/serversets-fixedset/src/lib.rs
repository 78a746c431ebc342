//! A [`Watcher`] over a static list of addresses.
//!
//! The serversets balancers consume any [`Watcher`]; this one needs no
//! ZooKeeper, so it is what tests and ZooKeeper-free deployments use. The list
//! can still change at run time with [`FixedSet::set_addresses`], which wakes
//! every subscriber exactly like a ZooKeeper change would.
//!
//! ```
//! use serversets_core::Watcher;
//! use serversets_fixedset::FixedSet;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let set = FixedSet::new(["h1:80", "h2:80"])?;
//! let mut changes = set.subscribe();
//! set.set_addresses(["h1:80", "h3:80"])?;
//! let snap = changes.changed().await.ok_or("closed")?;
//! let hosts: Vec<_> = snap.iter().map(|m| m.host().to_string()).collect();
//! assert_eq!(hosts, ["h1", "h3"]);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use serversets_core::{
    AddressError, Feed, HostPort, Member, Publisher, Snapshot, Subscription, Watcher,
};

/// Why a list was refused. Nothing is changed when an error is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// One entry of the list is not a valid `host:port`; `source()` says
    /// what is wrong with it.
    #[error("invalid address {entry:?} at position {index}")]
    InvalidAddress {
        /// The entry as given.
        entry: String,
        /// Its zero-based position in the list.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: AddressError,
    },
    /// The set was closed; it no longer changes.
    #[error("the fixed set is closed")]
    Closed,
}

/// A fixed, replaceable list of addresses that implements [`Watcher`].
///
/// Each member's id is its address text (`"h1:80"`), so diffs between two
/// lists are by address. Duplicate addresses collapse into one member.
#[derive(Debug)]
pub struct FixedSet {
    publisher: Publisher,
    feed: Feed,
}

impl FixedSet {
    /// A set over these `host:port` strings (IPv6 in brackets).
    ///
    /// ```
    /// use serversets_fixedset::{Error, FixedSet};
    ///
    /// let err = FixedSet::new(["h1:80", "h2"]).unwrap_err();
    /// assert!(matches!(err, Error::InvalidAddress { index: 1, .. }));
    /// assert!(err.to_string().contains("\"h2\""));
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for the first entry that is not a valid
    /// `host:port`.
    pub fn new<I, S>(addrs: I) -> Result<FixedSet, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set = FixedSet::empty();
        set.set_addresses(addrs)?;
        Ok(set)
    }

    /// A set holding no members yet.
    pub fn empty() -> FixedSet {
        let publisher = Publisher::new();
        let feed = publisher.feed();
        FixedSet { publisher, feed }
    }

    /// A set over fully described members (status, shard, metadata such as a
    /// `weight` for mcset), for tests that need more than addresses.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member, Watcher};
    /// use serversets_fixedset::FixedSet;
    ///
    /// let heavy = Member::builder("cache-a", HostPort::new("10.0.0.1", 11211)?)
    ///     .metadata("weight", "2")
    ///     .build();
    /// let set = FixedSet::from_members([heavy]);
    /// assert_eq!(set.snapshot().members()[0].metadata()["weight"], "2");
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn from_members(members: impl IntoIterator<Item = Member>) -> FixedSet {
        let set = FixedSet::empty();
        set.publisher.publish(members);
        set
    }

    /// Replaces the list. Every entry is checked first; on any bad entry the
    /// set is left as it was. Subscribers wake when the members differ.
    ///
    /// ```
    /// use serversets_core::Watcher;
    /// use serversets_fixedset::FixedSet;
    ///
    /// let set = FixedSet::new(["h1:80"])?;
    /// assert!(set.set_addresses(["h1:80", ":80"]).is_err());
    /// assert_eq!(set.snapshot().len(), 1); // unchanged
    /// # Ok::<(), serversets_fixedset::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for the first bad entry, [`Error::Closed`]
    /// once the set is closed.
    pub fn set_addresses<I, S>(&self, addrs: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let members = addrs
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let entry = entry.as_ref();
                entry
                    .parse::<HostPort>()
                    .map(Member::from_addr)
                    .map_err(|source| Error::InvalidAddress {
                        entry: entry.to_string(),
                        index,
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.set_members(members)
    }

    /// Replaces the list with fully described members.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member, Watcher};
    /// use serversets_fixedset::FixedSet;
    ///
    /// let set = FixedSet::new(["h1:80"])?;
    /// set.set_members([Member::from_addr(HostPort::new("h2", 80)?)])?;
    /// assert_eq!(set.snapshot().members()[0].addr().host(), "h2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the set is closed.
    pub fn set_members(&self, members: impl IntoIterator<Item = Member>) -> Result<(), Error> {
        if self.publisher.is_closed() {
            return Err(Error::Closed);
        }
        self.publisher.publish(members);
        Ok(())
    }

    /// Closes the set: subscribers' waits end and [`Watcher::is_closed`]
    /// turns true. The last list stays readable. Closing twice is fine.
    ///
    /// ```
    /// use serversets_core::Watcher;
    /// use serversets_fixedset::FixedSet;
    ///
    /// let set = FixedSet::new(["h1:80"])?;
    /// set.close();
    /// set.close();
    /// assert!(set.is_closed());
    /// assert!(set.set_addresses(["h2:80"]).is_err());
    /// # Ok::<(), serversets_fixedset::Error>(())
    /// ```
    pub fn close(&self) {
        self.publisher.close();
    }

    /// A cloneable read handle that outlives borrows of the set (it reports
    /// closed once the set is closed or dropped).
    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }
}

impl Watcher for FixedSet {
    fn snapshot(&self) -> Snapshot {
        self.feed.snapshot()
    }

    fn subscribe(&self) -> Subscription {
        self.feed.subscribe()
    }

    fn is_closed(&self) -> bool {
        self.feed.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rejects_each_kind_of_bad_address_naming_it() {
        for bad in ["host", ":80", "h:0", "h:65536", "", "h:-3", "h:x"] {
            let err = FixedSet::new(["ok:1", bad]).expect_err(bad);
            match &err {
                Error::InvalidAddress { entry, index, .. } => {
                    assert_eq!(entry, bad);
                    assert_eq!(*index, 1);
                }
                other => panic!("{bad}: unexpected {other:?}"),
            }
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            // The cause is given once, as the source, not in the message too.
            let source = std::error::Error::source(&err)
                .expect("a source")
                .to_string();
            assert!(!err.to_string().contains(&source), "{err} repeats {source}");
        }
    }

    #[test]
    fn ids_are_addresses_and_duplicates_collapse() {
        let set = FixedSet::new(["b:2", "a:1", "b:2"]).unwrap();
        let ids: Vec<_> = set.snapshot().iter().map(|m| m.id().to_string()).collect();
        assert_eq!(ids, ["a:1", "b:2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn set_addresses_wakes_waiters_and_diff_is_by_address() {
        let set = FixedSet::new(["a:1", "b:1"]).unwrap();
        let before = set.snapshot();
        let mut sub = set.subscribe();
        let waiter = tokio::spawn(async move { sub.changed().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        set.set_addresses(["b:1", "c:1"]).unwrap();
        let after = waiter.await.unwrap().expect("open");
        let diff = after.diff(&before);
        assert_eq!(
            diff.added
                .iter()
                .map(|m| m.id().to_string())
                .collect::<Vec<_>>(),
            ["c:1"]
        );
        assert_eq!(
            diff.removed
                .iter()
                .map(|m| m.id().to_string())
                .collect::<Vec<_>>(),
            ["a:1"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_list_does_not_wake() {
        let set = FixedSet::new(["a:1"]).unwrap();
        let mut sub = set.subscribe();
        set.set_addresses(["a:1"]).unwrap();
        let r = tokio::time::timeout(Duration::from_millis(30), sub.changed()).await;
        assert!(r.is_err(), "same list must not count as a change");
    }

    #[tokio::test]
    async fn close_and_drop_end_subscriptions() {
        let set = FixedSet::new(["a:1"]).unwrap();
        let feed = set.feed();
        let mut sub = set.subscribe();
        set.close();
        assert!(sub.changed().await.is_none());
        assert!(matches!(set.set_addresses(["b:1"]), Err(Error::Closed)));

        let set2 = FixedSet::new(["a:1"]).unwrap();
        let feed2 = set2.feed();
        let mut sub2 = feed2.subscribe();
        drop(set2);
        assert!(feed2.is_closed());
        assert!(sub2.changed().await.is_none());
        assert_eq!(feed.snapshot().len(), 1);
    }
}
