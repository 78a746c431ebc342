//! Writing Finagle `vector_` znodes, for `serversets weight`, `drain` and
//! `undrain`: one znode per selector, replaced atomically.
//!
//! A change is planned against what was read ([`Plan::read`]), then
//! committed in one ZooKeeper multi ([`Plan::commit`]): the create of the
//! new znode (`<set>/vector_`, persistent and sequential, data in Finagle's
//! exact form) and the delete of every znode it replaces, each delete
//! checking the version that was read. A znode that changed or went in
//! between fails the whole multi: nothing is written, and the error says
//! which znode and to run the command again.
//!
//! **Which znodes a change replaces:** every `vector_` znode that holds
//! exactly one descriptor (one entry in its `vector` array) whose selector
//! is the same as the change's (`inet=` compared as text, after the address
//! is written back in the members' own form). That is what `weight` writes,
//! so writing a selector again leaves exactly one znode for it. Znodes with
//! several descriptors (written by hand or by other tools) are never
//! touched; their weights keep multiplying in.
//!
//! ```no_run
//! use serversets_cli::steer::{Change, Plan};
//! use serversets_core::vector::Selector;
//! use serversets_core::zookeeper_client as zk;
//!
//! # async fn f(client: &zk::Client) -> Result<(), serversets_cli::Error> {
//! let select = Selector::Inet("10.0.0.3:8080".into());
//! let plan = Plan::read(client, "/discovery/prod/users", select, Change::Set(2.0)).await?;
//! let done = plan.commit(client, &zk::Acls::anyone_all()).await?;
//! println!("created {:?}, deleted {:?}", done.created, done.deleted);
//! # Ok(()) }
//! ```

use serversets_core::vector::{self, Descriptor, Selector, DRAIN};
use serversets_core::zookeeper_client as zk;
use serversets_core::{classify, Member, MemberFilter, Verdict};

use crate::error::Error;
use crate::target::zk_failed;
use crate::vectors::{read_children, vector_nodes, VectorNode, VECTOR_PREFIX};

/// How often a plan re-reads a set whose vector znodes change while it is
/// read.
const READ_ATTEMPTS: usize = 5;

/// What to do with a selector's weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Give the selected members this weight (-1.0 drains them).
    Set(f64),
    /// Remove whatever weight was set for the selector alone.
    Clear,
    /// Remove a drain (weight -1.0) set for the selector alone, and nothing
    /// else.
    Undrain,
}

/// A znode a change deletes, as it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    /// Its name (`vector_0000000004`).
    pub name: String,
    /// The data version read; the delete checks it.
    pub version: i32,
    /// The weight it gave.
    pub weight: f64,
}

/// A change planned against the set as it was read.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) set: String,
    pub(crate) selector: Selector,
    /// The data of the znode to create, if any.
    pub(crate) create: Option<Vec<u8>>,
    pub(crate) replace: Vec<Replaced>,
    /// Every vector znode read.
    pub(crate) vectors: Vec<VectorNode>,
    /// The members a watch with no filter serves (weights not applied).
    pub(crate) members: Vec<Member>,
}

/// What a committed plan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The name of the znode created, if one was.
    pub created: Option<String>,
    /// The names of the znodes deleted.
    pub deleted: Vec<String>,
    /// Other znodes for the same selector found next to the created one
    /// right after the commit: another writer gave the selector its first
    /// weight at the same moment (there was no znode whose version either
    /// could check). Empty in every other case.
    pub also: Vec<String>,
}

impl Plan {
    /// Reads the set at `set` and plans `change` for `selector`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for a weight that is not finite, or negative but
    /// not -1.0; [`Error::Failed`] when the set does not exist or cannot
    /// be read,
    /// and when a weight is set for `member=NAME` but the set has no such
    /// member (member names are never reused, so it would select nothing).
    pub async fn read(
        client: &zk::Client,
        set: &str,
        selector: Selector,
        change: Change,
    ) -> Result<Plan, Error> {
        if let Change::Set(w) = change {
            if !w.is_finite() || (w < 0.0 && w != DRAIN) {
                return Err(Error::Usage(format!(
                    "{w} is neither a weight (0 or more) nor -1 (drain)"
                )));
            }
        }
        // A vector znode deleted between the listing and its read means a
        // writer replaced it meanwhile, and its replacement may be missing
        // from the listing: read again, so the plan replaces that one.
        let mut attempts = 0;
        let children = loop {
            let Some(listing) = read_children(client, set).await? else {
                return Err(Error::Failed(format!(
                    "{set} does not exist: there is no server set to weigh there"
                )));
            };
            attempts += 1;
            if attempts >= READ_ATTEMPTS
                || !listing
                    .vanished
                    .iter()
                    .any(|n| n.starts_with(VECTOR_PREFIX))
            {
                break listing.children;
            }
        };
        if let (Change::Set(_), Selector::Member(name)) = (change, &selector) {
            if !children.iter().any(|c| c.name == *name) {
                return Err(Error::Failed(format!(
                    "{set} has no member {name}: a vector for it would select nothing (member names are never reused)"
                )));
            }
        }
        let vectors = vector_nodes(&children);
        let filter = MemberFilter::default();
        let members = children
            .iter()
            .filter(|c| c.name.starts_with("member_"))
            .filter_map(|c| match classify(&c.name, &c.data, &filter).verdict {
                Verdict::Member(m) => Some(m),
                _ => None,
            })
            .collect();
        let replace = vectors
            .iter()
            .filter_map(|v| {
                let d = v.sole()?;
                let ours =
                    d.selector == selector && (change != Change::Undrain || d.weight == DRAIN);
                ours.then(|| Replaced {
                    name: v.name.clone(),
                    version: v.version,
                    weight: d.weight,
                })
            })
            .collect();
        let create = match change {
            Change::Set(weight) => Some(vector::encode(&[Descriptor {
                selector: selector.clone(),
                weight,
                priority: 1,
            }])),
            Change::Clear | Change::Undrain => None,
        };
        Ok(Plan {
            set: set.to_string(),
            selector,
            create,
            replace,
            vectors,
            members,
        })
    }

    /// The data the new znode will hold, if the change writes one.
    pub fn data(&self) -> Option<&[u8]> {
        self.create.as_deref()
    }

    /// The znodes the change deletes.
    pub fn replaces(&self) -> &[Replaced] {
        &self.replace
    }

    /// True when the set already is as the change would leave it: nothing
    /// to delete and nothing to write, or exactly one znode for the selector
    /// holding exactly the bytes the change would write.
    pub fn is_noop(&self) -> bool {
        match &self.create {
            None => self.replace.is_empty(),
            Some(data) => match self.replace.as_slice() {
                [only] => self
                    .vectors
                    .iter()
                    .any(|v| v.name == only.name && v.data == *data),
                _ => false,
            },
        }
    }

    /// Commits the change in one multi: the create (with `acls`), then the
    /// deletes, each checking the version read. All or nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`] with one line saying what happened: a replaced
    /// znode changed or deleted since it was read (nothing was written; run
    /// the command again), the set gone, the ACLs, or a lost connection
    /// (the outcome is then unknown, and the message says how to check).
    pub async fn commit(&self, client: &zk::Client, acls: &[zk::Acl]) -> Result<Committed, Error> {
        if self.create.is_none() && self.replace.is_empty() {
            return Ok(Committed {
                created: None,
                deleted: Vec::new(),
                also: Vec::new(),
            });
        }
        let set = &self.set;
        let prefix = format!("{set}/{VECTOR_PREFIX}");
        let options = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::new(acls));
        let mut writer = client.new_multi_writer();
        let bad_request = |source| Error::ZooKeeper {
            op: "write to".into(),
            path: set.clone(),
            source,
        };
        if let Some(data) = &self.create {
            writer
                .add_create(&prefix, data, &options)
                .map_err(bad_request)?;
        }
        for r in &self.replace {
            writer
                .add_delete(&format!("{set}/{}", r.name), Some(r.version))
                .map_err(bad_request)?;
        }
        let results = match writer.commit().await {
            Ok(results) => results,
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                return Err(self.failed_op(index, source))
            }
            Err(zk::MultiWriteError::RequestFailed { source }) => {
                return Err(match source {
                    zk::Error::ConnectionLoss
                    | zk::Error::SessionExpired
                    | zk::Error::Timeout
                    | zk::Error::ClientClosed => Error::MaybeWritten {
                        set: set.clone(),
                        source,
                    },
                    e => zk_failed("write vector znodes in", set, e),
                })
            }
        };
        let created = results.into_iter().find_map(|r| match r {
            zk::MultiWriteResult::Create { path, .. } => {
                path.rsplit('/').next().map(str::to_string)
            }
            _ => None,
        });
        let also = match &created {
            Some(ours) => self.rivals(client, ours).await,
            None => Vec::new(),
        };
        Ok(Committed {
            created,
            deleted: self.replace.iter().map(|r| r.name.clone()).collect(),
            also,
        })
    }

    /// Znodes for the selector, other than `ours`, that appeared while the
    /// change was planned and committed; empty when `ours` is gone already
    /// (a later writer replaced it, which is fine). Best effort: a failed
    /// read finds nothing.
    async fn rivals(&self, client: &zk::Client, ours: &str) -> Vec<String> {
        let Ok(names) = client.list_children(&self.set).await else {
            return Vec::new();
        };
        if !names.iter().any(|n| n == ours) {
            return Vec::new();
        }
        let mut rivals = Vec::new();
        for name in names {
            let known = name == ours || self.vectors.iter().any(|v| v.name == name);
            if known || !name.starts_with(VECTOR_PREFIX) {
                continue;
            }
            if let Ok((data, stat)) = client.get_data(&format!("{}/{name}", self.set)).await {
                let node = VectorNode::new(&name, data, stat.version);
                if node.sole().is_some_and(|d| d.selector == self.selector) {
                    rivals.push(name);
                }
            }
        }
        rivals
    }

    /// Why operation `index` of the multi failed, as one line.
    fn failed_op(&self, index: usize, e: zk::Error) -> Error {
        let set = &self.set;
        let deletes_from = usize::from(self.create.is_some());
        let Some(r) = index
            .checked_sub(deletes_from)
            .and_then(|i| self.replace.get(i))
        else {
            return match e {
                zk::Error::NoNode => Error::Failed(format!(
                    "{set} was deleted while the vector znode was written; nothing was written"
                )),
                e => zk_failed("create a vector znode in", set, e),
            };
        };
        let again = "nothing was written; run the command again to replace what is there now";
        match e {
            zk::Error::NoNode => Error::Failed(format!(
                "{} was deleted by another writer since it was read; {again}",
                r.name
            )),
            zk::Error::BadVersion => Error::Failed(format!(
                "{} was changed by another writer since it was read (version {} read); {again}",
                r.name, r.version
            )),
            e => zk_failed("delete", &format!("{set}/{}", r.name), e),
        }
    }

    /// The vector znodes as they are once the change is committed as
    /// `done`.
    pub(crate) fn vectors_after(&self, done: &Committed) -> Vec<VectorNode> {
        let mut after: Vec<VectorNode> = self
            .vectors
            .iter()
            .filter(|v| !done.deleted.contains(&v.name))
            .cloned()
            .collect();
        if let (Some(name), Some(data)) = (&done.created, &self.create) {
            after.push(VectorNode::new(name, data.clone(), 0));
        }
        after
    }

    /// The members the selector picks, each as it is selected: for an
    /// `inet=` selector naming an additional endpoint, the member served on
    /// that endpoint.
    pub(crate) fn selected(&self) -> Vec<Member> {
        self.members
            .iter()
            .filter_map(|m| {
                if self.selector.selects(m) {
                    return Some(m.clone());
                }
                if !matches!(self.selector, Selector::Inet(_)) {
                    return None;
                }
                m.additional_endpoints()
                    .keys()
                    .filter_map(|name| m.with_served_endpoint(name))
                    .find(|served| self.selector.selects(served))
            })
            .collect()
    }
}
