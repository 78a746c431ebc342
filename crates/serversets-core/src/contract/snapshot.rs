//! An immutable, version-stamped view of a server set.

use std::collections::HashSet;
use std::sync::Arc;

use crate::contract::member::{Member, MemberId};

/// The members of a set at one moment, sorted by address then id.
///
/// A snapshot never changes; a newer state is a new snapshot with a higher
/// [`version`](Snapshot::version). Cloning is one reference count, so readers
/// can hold a snapshot for as long as a request takes.
///
/// ```
/// use serversets_core::{HostPort, Member, Snapshot};
///
/// let member = |a: &str| a.parse::<HostPort>().map(Member::from_addr);
/// let old = Snapshot::from_members(1, [member("b:2")?, member("a:1")?]);
/// assert_eq!(old.members()[0].addr().to_string(), "a:1"); // sorted
///
/// let new = Snapshot::from_members(2, [member("a:1")?, member("c:3")?]);
/// let diff = new.diff(&old);
/// assert_eq!(diff.added.len(), 1);
/// assert_eq!(diff.added[0].id().as_str(), "c:3");
/// assert_eq!(diff.removed[0].id().as_str(), "b:2");
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    version: u64,
    // A Vec behind the Arc (not a slice) so a new list is moved in, not copied.
    members: Arc<Vec<Member>>,
}

impl Snapshot {
    /// The empty snapshot at version 0: what a source holds before its first
    /// publish.
    pub fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            members: Arc::new(Vec::new()),
        }
    }

    /// Builds a snapshot from members in any order; members sharing an id
    /// keep only the last one given.
    pub fn from_members(version: u64, members: impl IntoIterator<Item = Member>) -> Snapshot {
        let mut members: Vec<Member> = members.into_iter().collect();
        // Keep the last occurrence of each id.
        let mut seen = HashSet::with_capacity(members.len());
        members.reverse();
        members.retain(|m| seen.insert(m.id().clone()));
        members.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        Snapshot {
            version,
            members: Arc::new(members),
        }
    }

    /// A snapshot from members already sorted by [`Member::sort_key`] with
    /// unique ids.
    pub(crate) fn from_sorted(version: u64, members: Vec<Member>) -> Snapshot {
        Snapshot {
            version,
            members: Arc::new(members),
        }
    }

    /// Monotonic version of this state; 0 before anything was published.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The members, sorted by address then id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Iterates the members in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Member> {
        self.members.iter()
    }

    /// The member with this id, if present.
    pub fn get(&self, id: &MemberId) -> Option<&Member> {
        self.members.iter().find(|m| m.id() == id)
    }

    /// Members added and removed going from `older` to `self`, by id. A member
    /// whose id stayed but whose contents changed shows up in both lists.
    pub fn diff(&self, older: &Snapshot) -> Diff {
        let old: std::collections::HashMap<&MemberId, &Member> =
            older.members.iter().map(|m| (m.id(), m)).collect();
        let new: std::collections::HashMap<&MemberId, &Member> =
            self.members.iter().map(|m| (m.id(), m)).collect();
        let added = self
            .members
            .iter()
            .filter(|m| old.get(m.id()) != Some(m))
            .cloned()
            .collect();
        let removed = older
            .members
            .iter()
            .filter(|m| new.get(m.id()) != Some(m))
            .cloned()
            .collect();
        Diff { added, removed }
    }

    /// True when both hold the same members, whatever their versions.
    pub fn same_members(&self, other: &Snapshot) -> bool {
        self.members == other.members
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::empty()
    }
}

impl<'a> IntoIterator for &'a Snapshot {
    type Item = &'a Member;
    type IntoIter = std::slice::Iter<'a, Member>;
    fn into_iter(self) -> Self::IntoIter {
        self.members.iter()
    }
}

/// What changed between two snapshots; see [`Snapshot::diff`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Members present now and not before (or changed).
    pub added: Vec<Member>,
    /// Members present before and not now (or changed).
    pub removed: Vec<Member>,
}

impl Diff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::address::HostPort;

    fn m(id: &str, addr: &str) -> Member {
        Member::builder(id, addr.parse::<HostPort>().unwrap()).build()
    }

    #[test]
    fn sorts_by_address_then_id_and_dedups_by_id() {
        let s = Snapshot::from_members(
            3,
            [m("z", "b:1"), m("y", "a:1"), m("x", "a:1"), m("z", "c:1")],
        );
        let ids: Vec<_> = s.iter().map(|m| m.id().as_str()).collect();
        assert_eq!(ids, ["x", "y", "z"]);
        assert_eq!(s.get(&"z".into()).unwrap().addr().to_string(), "c:1");
    }

    #[test]
    fn diff_reports_changed_members_both_ways() {
        let a = Snapshot::from_members(1, [m("1", "a:1"), m("2", "b:1")]);
        let b = Snapshot::from_members(2, [m("1", "a:1"), m("2", "b:2")]);
        let d = b.diff(&a);
        assert_eq!(d.added, vec![m("2", "b:2")]);
        assert_eq!(d.removed, vec![m("2", "b:1")]);
        assert!(a.diff(&a).is_empty());
    }
}
