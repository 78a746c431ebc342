//! The pure, synchronous hash ring: build it from members or an explicit
//! node list, then map keys to nodes. No watcher, no runtime.

use std::fmt;

use serversets_core::{HostPort, Member, MemberId};

use crate::continuum::Continuum;
use crate::hash::{go_key_hash, ketama_key_hash};
use crate::node::{member_weight, NodeIdentity, WeightedNode, MAX_WEIGHT};
use crate::points::{go_continuum, ketama_continuum, Source};
use crate::RingError;

/// Which consistent-hashing scheme a ring uses.
///
/// ```
/// use serversets_mcset::{Ring, RingKind, WeightedNode};
///
/// let nodes: Vec<WeightedNode> = ["10.0.0.1:11211", "10.0.0.2:11211"]
///     .iter().map(|n| n.parse()).collect::<Result<_, _>>()?;
/// let ketama = Ring::builder().build_nodes(nodes.clone())?;
/// let go = Ring::builder().kind(RingKind::GoMcset).build_nodes(nodes)?;
/// assert_eq!(ketama.kind(), RingKind::Ketama);
/// assert_eq!(ketama.point_count(), 2 * 160);
/// assert_eq!(go.point_count(), 2 * 150);
/// # Ok::<(), serversets_mcset::RingError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RingKind {
    /// Ketama as in Finagle's memcached client and libmemcached: MD5, 160
    /// points per node at equal weight, weighted point counts.
    #[default]
    Ketama,
    /// go.serversets' mcset ring (groupcache `consistenthash`): 32-bit
    /// MurmurHash3, 150 points per `host:port`, no weights. For clients
    /// migrating from Go that must keep their key placement.
    GoMcset,
}

/// One node of a ring: the member, the identifier it hashes under, its
/// weight and how many ring points it owns.
///
/// ```
/// use serversets_mcset::{Ring, WeightedNode};
///
/// let ring = Ring::builder().build_nodes(["cache01:11211=2".parse::<WeightedNode>()?])?;
/// let node = &ring.nodes()[0];
/// assert_eq!(node.addr().to_string(), "cache01:11211");
/// assert_eq!(node.identifier(), "cache01");
/// assert_eq!(node.weight(), 2.0);
/// assert_eq!(node.owned_points(), 160);
/// # Ok::<(), serversets_mcset::RingError>(())
/// ```
#[derive(Clone)]
pub struct Node {
    member: Member,
    identifier: String,
    weight: f64,
    owned_points: u32,
}

impl Node {
    /// The member this node stands for.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["cache01:11211".parse::<WeightedNode>()?]);
    /// assert_eq!(ring.nodes()[0].member().id().as_str(), "cache01:11211");
    /// # Ok::<(), serversets_mcset::RingError>(())
    /// ```
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The address to send requests to.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["cache01:11212".parse::<WeightedNode>()?]);
    /// assert_eq!(ring.nodes()[0].addr().port(), 11212);
    /// # Ok::<(), serversets_mcset::RingError>(())
    /// ```
    pub fn addr(&self) -> &HostPort {
        self.member.addr()
    }

    /// The string this node's points were hashed from.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["cache01:11212".parse::<WeightedNode>()?]);
    /// assert_eq!(ring.nodes()[0].identifier(), "cache01:11212");
    /// # Ok::<(), serversets_mcset::RingError>(())
    /// ```
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// The weight the node was built with (1 unless set).
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["cache01:11211=1.5".parse::<WeightedNode>()?]);
    /// assert_eq!(ring.nodes()[0].weight(), 1.5);
    /// # Ok::<(), serversets_mcset::RingError>(())
    /// ```
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// Ring points this node owns. 0 for a node that shares its identifier
    /// with an earlier one (see [`Ring`]) or whose weight is too small to
    /// earn a single digest.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// // 1 against 1000: floor(1/1001 * 2 * 40) = 0 digests.
    /// let ring = Ring::ketama(["a:11211=1000", "b:11211=1"].map(|n| n.parse::<WeightedNode>().unwrap()));
    /// assert_eq!(ring.nodes()[1].owned_points(), 0);
    /// assert!(ring.nodes()[0].owned_points() > 300);
    /// ```
    pub fn owned_points(&self) -> u32 {
        self.owned_points
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("addr", &format_args!("{}", self.member.addr()))
            .field("identifier", &self.identifier)
            .field("weight", &self.weight)
            .field("owned_points", &self.owned_points)
            .finish()
    }
}

/// Where a key landed: its hash, the ring point that took it, and the node
/// owning that point.
///
/// ```
/// use serversets_mcset::{Ring, WeightedNode};
///
/// let ring = Ring::builder().build_nodes(["10.0.1.1:11211".parse::<WeightedNode>()?])?;
/// let at = ring.locate("some-key").expect("ring has nodes");
/// assert!(at.point >= at.key_hash || at.point == ring.points().next().unwrap().0);
/// assert_eq!(at.node.identifier(), "10.0.1.1");
/// # Ok::<(), serversets_mcset::RingError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    /// The key's hash (ketama: first four bytes of `md5(key)`, little-endian;
    /// go-mcset: `murmur3_32(key)`).
    pub key_hash: u32,
    /// The ring point chosen: the first point `>= key_hash`, wrapping around.
    pub point: u32,
    /// The node owning that point.
    pub node: &'a Node,
}

/// An immutable consistent-hash ring over a set of members, one node each.
///
/// Build one with [`Ring::builder`]; look keys up with [`Ring::pick`] or
/// [`Ring::locate`]. A ring never changes: a new member list means a new
/// ring ([`McSet`](crate::McSet) does that for a watched set).
///
/// # Determinism
///
/// Nodes are kept sorted by identifier, then address, then member id, and
/// everything derives from that order, so the same members give the same
/// ring whatever order they were listed in:
///
/// * Members sharing an identifier (say two members announcing the same
///   shard) collapse into one ring node, as in Finagle, whose client keys
///   its nodes by identifier: the first in that order owns the points; the
///   others are still listed by [`nodes`](Ring::nodes) with no points, and a
///   warning is logged. Node count and total weight count identifiers.
/// * When two different identifiers hash to the same point on a ketama
///   ring, the node first in that order keeps it. (Finagle lets the last
///   inserted win and libmemcached's sort leaves it unspecified, so neither
///   defines it; the shipped vectors contain no such collision.)
/// * On a [`RingKind::GoMcset`] ring the node *last* in that order (the
///   larger `host:port` string) keeps a shared point, as in go.serversets,
///   which adds its sorted `host:port` strings in order to a map that keeps the last
///   write. A few percent of 100-200 node pools have such a point.
///
/// ```
/// use serversets_mcset::{Ring, WeightedNode};
///
/// let nodes: Vec<WeightedNode> = ["10.0.1.1:11211", "10.0.1.2:11211", "10.0.1.3:11211"]
///     .iter().map(|n| n.parse()).collect::<Result<_, _>>()?;
/// let ring = Ring::builder().build_nodes(nodes)?;
/// let node = ring.pick("user:42").expect("non-empty ring");
/// println!("user:42 lives on {}", node.addr());
/// assert_eq!(ring.len(), 3);
/// # Ok::<(), serversets_mcset::RingError>(())
/// ```
#[derive(Clone)]
pub struct Ring {
    kind: RingKind,
    identity: NodeIdentity,
    version: u64,
    nodes: Box<[Node]>,
    continuum: Continuum,
}

/// Options for building a [`Ring`]: the scheme and the identifier rule.
///
/// ```
/// use serversets_core::{HostPort, Member};
/// use serversets_mcset::{NodeIdentity, Ring, RingKind};
///
/// let members = [Member::from_addr(HostPort::new("10.0.0.1", 11211)?)];
/// let ring = Ring::builder()
///     .kind(RingKind::Ketama)
///     .identity(NodeIdentity::HostPort)
///     .build(members);
/// assert_eq!(ring.nodes()[0].identifier(), "10.0.0.1");
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RingBuilder {
    kind: RingKind,
    identity: NodeIdentity,
    version: u64,
}

impl RingBuilder {
    /// The hashing scheme (default [`RingKind::Ketama`]).
    ///
    /// ```
    /// use serversets_mcset::{Ring, RingKind};
    /// assert_eq!(Ring::builder().kind(RingKind::GoMcset).build([]).kind(), RingKind::GoMcset);
    /// ```
    pub fn kind(mut self, kind: RingKind) -> Self {
        self.kind = kind;
        self
    }

    /// The ketama identifier rule (default [`NodeIdentity::Finagle`]).
    /// Ignored by [`RingKind::GoMcset`], which always hashes `host:port`.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member};
    /// use serversets_mcset::{NodeIdentity, Ring};
    ///
    /// let sharded = Member::builder("m1", HostPort::new("10.0.0.1", 11211)?).shard(4).build();
    /// let ring = Ring::builder().identity(NodeIdentity::HostPort).build([sharded]);
    /// assert_eq!(ring.nodes()[0].identifier(), "10.0.0.1");
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn identity(mut self, identity: NodeIdentity) -> Self {
        self.identity = identity;
        self
    }

    /// The source version to stamp the ring with (default 0); [`McSet`]
    /// stamps the version of the snapshot a ring was built from.
    ///
    /// [`McSet`]: crate::McSet
    ///
    /// ```
    /// use serversets_mcset::Ring;
    /// assert_eq!(Ring::builder().version(7).build([]).version(), 7);
    /// ```
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Builds a ring over members, weighted by their `weight` metadata
    /// (default 1; an invalid weight is logged and counts as 1) *times*
    /// [`Member::weight`] (the Finagle `vector_` weight, default 1). Both
    /// apply: the metadata weight is the server's capacity as it announced
    /// it, the vector weight the operator's steering on top, so a server
    /// announcing `weight=2` with a vector weight of 0.5 owns the points of
    /// weight 1. The product is capped at 1e9, the largest metadata weight.
    ///
    /// A member of vector weight 0 owns no points while another has weight:
    /// the ring is then exactly the ring over the others (it is not counted
    /// in the node count or total weight ketama divides by). When every
    /// member has vector weight 0 they all count as 1. With every vector
    /// weight 1 the ring is byte-for-byte the one Finagle and libmemcached
    /// build from the metadata weights. The go-mcset ring ignores weights,
    /// except that vector weight 0 leaves a member out of it in the same way.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member};
    /// use serversets_mcset::Ring;
    ///
    /// let heavy = Member::builder("a", HostPort::new("10.0.0.1", 11211)?)
    ///     .metadata("weight", "3")
    ///     .build();
    /// let light = Member::from_addr(HostPort::new("10.0.0.2", 11211)?);
    /// let ring = Ring::builder().build([heavy, light]);
    /// // 2 nodes, total weight 4: floor(3/4*2*40) = 60 and floor(1/4*2*40) = 20 digests.
    /// assert_eq!(ring.nodes()[0].owned_points(), 240);
    /// assert_eq!(ring.nodes()[1].owned_points(), 80);
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn build(self, members: impl IntoIterator<Item = Member>) -> Ring {
        let members: Vec<Member> = members.into_iter().collect();
        // All of weight 0: all equal (never a ring without points).
        let all_zero = members.iter().all(|m| m.weight() == 0.0);
        let nodes = members
            .into_iter()
            .map(|member| {
                let vector = if all_zero { 1.0 } else { member.weight() };
                let weight = match self.kind {
                    RingKind::Ketama => (member_weight(&member) * vector).min(MAX_WEIGHT),
                    RingKind::GoMcset if vector > 0.0 => 1.0,
                    RingKind::GoMcset => 0.0,
                };
                (member, weight)
            })
            .collect();
        self.build_weighted(nodes)
    }

    /// Builds a ring over an explicit list of addresses and weights. Each
    /// node becomes a member whose id is its address text.
    ///
    /// # Errors
    ///
    /// [`RingError::WeightNotSupported`] for the go-mcset ring given a
    /// weight other than 1 (the only failure).
    ///
    /// ```
    /// use serversets_mcset::{Ring, RingError, RingKind, WeightedNode};
    ///
    /// let nodes = vec!["a:11211=2".parse::<WeightedNode>()?, "b:11211".parse()?];
    /// assert!(Ring::builder().build_nodes(nodes.clone()).is_ok());
    /// let err = Ring::builder().kind(RingKind::GoMcset).build_nodes(nodes).unwrap_err();
    /// assert!(matches!(err, RingError::WeightNotSupported { .. }));
    /// # Ok::<(), RingError>(())
    /// ```
    pub fn build_nodes<I, N>(self, nodes: I) -> Result<Ring, RingError>
    where
        I: IntoIterator<Item = N>,
        N: Into<WeightedNode>,
    {
        let nodes = nodes
            .into_iter()
            .map(|node| {
                let node: WeightedNode = node.into();
                if self.kind == RingKind::GoMcset && node.weight() != 1.0 {
                    return Err(RingError::WeightNotSupported {
                        node: node.addr().clone(),
                        weight: node.weight(),
                    });
                }
                Ok(weighted_member(node))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.build_weighted(nodes))
    }

    fn build_weighted(self, members: Vec<(Member, f64)>) -> Ring {
        let mut nodes: Vec<Node> = members
            .into_iter()
            .map(|(member, weight)| {
                let identifier = match self.kind {
                    RingKind::Ketama => self.identity.identifier(&member),
                    RingKind::GoMcset => member.addr().to_string(),
                };
                Node {
                    member,
                    identifier,
                    weight,
                    owned_points: 0,
                }
            })
            .collect();
        nodes.sort_by(|a, b| node_order(a).cmp(&node_order(b)));

        // The first node of each identifier owns its points; the rest are
        // shadowed (see the type docs).
        let mut owners: Vec<usize> = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            match owners.last() {
                Some(&prev) if nodes[prev].identifier == node.identifier => {
                    tracing::warn!(
                        identifier = %node.identifier,
                        shadowed = %node.member.addr(),
                        kept = %nodes[prev].member.addr(),
                        "two memcache members share a ring identifier; only one owns keys"
                    );
                }
                _ => owners.push(i),
            }
        }

        // Weight 0 (a vector weight of 0) owns nothing and is not counted.
        let sources: Vec<Source<'_>> = owners
            .iter()
            .filter(|&&i| nodes[i].weight > 0.0)
            .map(|&i| Source {
                identifier: &nodes[i].identifier,
                weight: nodes[i].weight,
                owner: owner_tag(i),
            })
            .collect();
        let continuum = match self.kind {
            RingKind::Ketama => ketama_continuum(&sources),
            RingKind::GoMcset => go_continuum(&sources),
        };
        // `sources` borrows the nodes; release it before counting into them.
        drop(sources);
        for entry in continuum.entries() {
            if let Some(node) = nodes.get_mut(entry.owner as usize) {
                node.owned_points += 1;
            }
        }
        Ring {
            kind: self.kind,
            identity: self.identity,
            version: self.version,
            nodes: nodes.into_boxed_slice(),
            continuum,
        }
    }
}

/// The member an entry of an explicit node list stands for (its id is its
/// address text), with the entry's weight.
fn weighted_member(node: WeightedNode) -> (Member, f64) {
    (Member::from_addr(node.addr().clone()), node.weight())
}

/// A node index as stored in ring entries. Rings index their entries with
/// u32 and hold 160 points per node, so node indices stay far below
/// u32::MAX; saturating keeps this total without a panic path.
fn owner_tag(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn node_order(node: &Node) -> (&[u8], &HostPort, &MemberId) {
    (
        node.identifier.as_bytes(),
        node.member.addr(),
        node.member.id(),
    )
}

impl Ring {
    /// Options for a new ring; see [`RingBuilder`].
    ///
    /// ```
    /// use serversets_mcset::{Ring, RingKind};
    /// let ring = Ring::builder().kind(RingKind::GoMcset).build([]);
    /// assert!(ring.is_empty());
    /// ```
    pub fn builder() -> RingBuilder {
        RingBuilder::default()
    }

    /// A ketama ring (Finagle identity) over explicit nodes; shorthand for
    /// `Ring::builder().build_nodes(nodes)`, which cannot fail for ketama.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["10.0.1.1:11211=600".parse::<WeightedNode>()?]);
    /// assert_eq!(ring.pick("k").unwrap().addr().to_string(), "10.0.1.1:11211");
    /// # Ok::<(), serversets_mcset::RingError>(())
    /// ```
    pub fn ketama<I, N>(nodes: I) -> Ring
    where
        I: IntoIterator<Item = N>,
        N: Into<WeightedNode>,
    {
        let members = nodes
            .into_iter()
            .map(|node| weighted_member(node.into()))
            .collect();
        Ring::builder().build_weighted(members)
    }

    /// The node owning `key`, or `None` when no node owns any point.
    ///
    /// Allocation-free: the key is hashed on the stack and found by a
    /// branch-free binary search.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["a:11211", "b:11211"].map(|n| n.parse::<WeightedNode>().unwrap()));
    /// let addr = ring.pick(b"bytes work too").unwrap().addr();
    /// assert!(addr.host() == "a" || addr.host() == "b");
    /// assert!(Ring::ketama(Vec::<WeightedNode>::new()).pick("k").is_none());
    /// ```
    #[inline]
    pub fn pick(&self, key: impl AsRef<[u8]>) -> Option<&Node> {
        let index = self.pick_index(key.as_ref())?;
        self.nodes.get(index)
    }

    /// Index into [`nodes`](Ring::nodes) of the node owning `key`.
    #[inline]
    pub(crate) fn pick_index(&self, key: &[u8]) -> Option<usize> {
        let entry = self.continuum.find(self.key_hash(key))?;
        Some(entry.owner as usize)
    }

    /// Where `key` lands, with the hash and ring point that decided it: what
    /// a `locate` command prints.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["10.0.1.1:11211"].map(|n| n.parse::<WeightedNode>().unwrap()));
    /// let at = ring.locate("k").unwrap();
    /// assert_eq!(at.key_hash, ring.key_hash("k"));
    /// println!("k -> {} (hash {}, point {})", at.node.addr(), at.key_hash, at.point);
    /// ```
    pub fn locate(&self, key: impl AsRef<[u8]>) -> Option<Location<'_>> {
        let key_hash = self.key_hash(key.as_ref());
        let entry = self.continuum.find(key_hash)?;
        Some(Location {
            key_hash,
            point: entry.point,
            node: self.nodes.get(entry.owner as usize)?,
        })
    }

    /// The hash this ring's scheme gives `key`.
    ///
    /// ```
    /// use serversets_mcset::{Ring, RingKind};
    ///
    /// // md5("abc") starts 90 01 50 98: read little-endian.
    /// assert_eq!(Ring::builder().build([]).key_hash("abc"), 0x9850_0190);
    /// ```
    #[inline]
    pub fn key_hash(&self, key: impl AsRef<[u8]>) -> u32 {
        match self.kind {
            RingKind::Ketama => ketama_key_hash(key.as_ref()),
            RingKind::GoMcset => go_key_hash(key.as_ref()),
        }
    }

    /// Every node, sorted by identifier then address, including any that
    /// own no points.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["b:11211", "a:11211"].map(|n| n.parse::<WeightedNode>().unwrap()));
    /// let ids: Vec<&str> = ring.nodes().iter().map(|n| n.identifier()).collect();
    /// assert_eq!(ids, ["a", "b"]);
    /// ```
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The ring points in ascending order with the node owning each.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["a:1", "b:1"].map(|n| n.parse::<WeightedNode>().unwrap()));
    /// let points: Vec<u32> = ring.points().map(|(p, _)| p).collect();
    /// assert!(points.windows(2).all(|w| w[0] < w[1]));
    /// ```
    pub fn points(&self) -> impl ExactSizeIterator<Item = (u32, &Node)> + '_ {
        // Owners are indices into `nodes` by construction (see `build`), so
        // the index cannot be out of bounds.
        self.continuum
            .entries()
            .map(|e| (e.point, &self.nodes[e.owner as usize]))
    }

    /// Number of nodes (including any that own no points).
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["a:11211", "b:11211"].map(|n| n.parse::<WeightedNode>().unwrap()));
    /// assert_eq!(ring.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the ring has no nodes.
    ///
    /// ```
    /// use serversets_mcset::Ring;
    /// assert!(Ring::builder().build([]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Number of distinct points on the ring.
    ///
    /// ```
    /// use serversets_mcset::{Ring, WeightedNode};
    ///
    /// let ring = Ring::ketama(["a:11211", "b:11211", "c:11211"].map(|n| n.parse::<WeightedNode>().unwrap()));
    /// assert_eq!(ring.point_count(), 3 * 160);
    /// ```
    pub fn point_count(&self) -> usize {
        self.continuum.len()
    }

    /// The hashing scheme, which decides how keys hash ([`key_hash`](Ring::key_hash)).
    ///
    /// ```
    /// use serversets_mcset::{Ring, RingKind};
    ///
    /// let ring = Ring::builder().kind(RingKind::GoMcset).build([]);
    /// let hash = match ring.kind() {
    ///     RingKind::Ketama => "md5",
    ///     RingKind::GoMcset => "murmur3",
    /// };
    /// assert_eq!(hash, "murmur3");
    /// assert_ne!(ring.key_hash("k"), Ring::builder().build([]).key_hash("k"));
    /// ```
    pub fn kind(&self) -> RingKind {
        self.kind
    }

    /// The ketama identifier rule the ring was built with: the rule a
    /// second ring must use to place keys the same way.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member};
    /// use serversets_mcset::{NodeIdentity, Ring};
    ///
    /// let sharded = Member::builder("m1", HostPort::new("10.0.0.1", 11211)?).shard(3).build();
    /// let ring = Ring::builder().identity(NodeIdentity::HostPort).build([sharded.clone()]);
    /// let same = Ring::builder().identity(ring.identity()).build([sharded]);
    /// assert_eq!(same.nodes()[0].identifier(), ring.nodes()[0].identifier());
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn identity(&self) -> NodeIdentity {
        self.identity
    }

    /// The version of the source snapshot this ring was built from (0 for a
    /// ring built by hand unless set with [`RingBuilder::version`]).
    ///
    /// ```
    /// use serversets_core::Watcher;
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let source = FixedSet::new(["10.0.0.1:11211"])?;
    /// let set = McSet::new(source.feed())?;
    /// // The McSet's ring is stamped with the snapshot it was built from.
    /// assert_eq!(set.ring().version(), source.snapshot().version());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("kind", &self.kind)
            .field("identity", &self.identity)
            .field("version", &self.version)
            .field("nodes", &self.nodes)
            .field("points", &self.continuum.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn equal_nodes(n: usize) -> Vec<WeightedNode> {
        (0..n)
            .map(|i| {
                format!("10.1.{}.{}:11211", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn equal_weights_give_160_points_each() {
        for n in [1, 2, 3, 7, 49, 100] {
            let ring = Ring::ketama(equal_nodes(n));
            for node in ring.nodes() {
                // A point collision could take one away; none happen here.
                assert_eq!(node.owned_points(), 160, "n={n} {node:?}");
            }
            assert_eq!(ring.point_count(), 160 * n);
        }
    }

    #[test]
    fn identifiers_follow_the_address_rule() {
        assert_eq!(
            crate::node::address_identifier(&"h:11211".parse().unwrap()),
            "h"
        );
        let ring = Ring::ketama(["h:11212".parse::<WeightedNode>().unwrap()]);
        assert_eq!(ring.nodes()[0].identifier(), "h:11212");
    }

    #[test]
    fn input_order_does_not_matter() {
        let nodes = equal_nodes(20);
        let mut reversed = nodes.clone();
        reversed.reverse();
        let (a, b) = (Ring::ketama(nodes), Ring::ketama(reversed));
        let pa: Vec<_> = a.points().map(|(p, n)| (p, n.addr().clone())).collect();
        let pb: Vec<_> = b.points().map(|(p, n)| (p, n.addr().clone())).collect();
        assert_eq!(pa, pb);
    }

    #[test]
    fn shared_identifiers_collapse_to_the_first_node() {
        let shard =
            |id: &str, addr: &str| Member::builder(id, addr.parse().unwrap()).shard(0).build();
        let ring = Ring::builder().build([shard("m2", "b:1"), shard("m1", "a:1")]);
        assert_eq!(ring.len(), 2);
        let owners: Vec<_> = ring
            .nodes()
            .iter()
            .map(|n| (n.addr().to_string(), n.owned_points()))
            .collect();
        assert_eq!(owners, [("a:1".to_string(), 160), ("b:1".to_string(), 0)]);
        // Same ring as a single node named "0".
        let single = Ring::builder().build([shard("m1", "a:1")]);
        let points = |r: &Ring| r.points().map(|(p, _)| p).collect::<Vec<_>>();
        assert_eq!(points(&ring), points(&single));

        let by_addr = Ring::builder()
            .identity(NodeIdentity::HostPort)
            .build([shard("m2", "b:1"), shard("m1", "a:1")]);
        assert!(by_addr.nodes().iter().all(|n| n.owned_points() == 160));
    }

    #[test]
    fn go_ring_has_150_points_per_node_and_ignores_metadata_weight() {
        let heavy = Member::builder("x", "10.0.0.1:11211".parse().unwrap())
            .metadata("weight", "5")
            .build();
        let ring = Ring::builder()
            .kind(RingKind::GoMcset)
            .build([heavy, Member::from_addr("10.0.0.2:11211".parse().unwrap())]);
        assert_eq!(ring.point_count(), 300);
        assert_eq!(ring.nodes()[0].identifier(), "10.0.0.1:11211");
        assert!(ring.nodes().iter().all(|n| n.owned_points() == 150));
    }

    #[test]
    fn removing_one_of_100_equal_servers_moves_only_its_keys() {
        let nodes = equal_nodes(100);
        let before = Ring::ketama(nodes.clone());
        let gone = nodes[37].addr().clone();
        let after = Ring::ketama(nodes.into_iter().filter(|n| *n.addr() != gone));
        let keys = 100_000;
        let mut moved = 0;
        for i in 0..keys {
            let key = format!("key:{i}");
            let old = before.pick(&key).unwrap().addr();
            let new = after.pick(&key).unwrap().addr();
            if old != new {
                assert_eq!(*old, gone, "{key} moved from a surviving server");
                moved += 1;
            } else {
                assert_ne!(*old, gone);
            }
        }
        let fraction = f64::from(moved) / f64::from(keys);
        // The removed server held roughly 1/100 of the keys.
        assert!(
            (0.005..0.02).contains(&fraction),
            "moved fraction {fraction}"
        );
    }

    #[test]
    fn empty_ring_picks_nothing() {
        let ring = Ring::builder().build([]);
        assert!(ring.pick("k").is_none());
        assert!(ring.locate("k").is_none());
        assert_eq!(ring.point_count(), 0);
    }

    #[test]
    fn a_1000_server_ring_matches_a_plain_reference_build() {
        // Straight from the definition, with the md5 crate and a sort.
        let nodes = equal_nodes(1000);
        let mut reference: Vec<(u32, String)> = Vec::new();
        for node in &nodes {
            let id = node.addr().host().to_string(); // port 11211
            for i in 0..40 {
                let d = md5::compute(format!("{id}-{i}")).0;
                for w in d.chunks_exact(4) {
                    reference.push((u32::from_le_bytes([w[0], w[1], w[2], w[3]]), id.clone()));
                }
            }
        }
        reference.sort();
        let all = reference.len();
        // 160,000 random 32-bit points collide a few times (birthday
        // bound: about 3); the tie rule gives the point to the smallest
        // identifier, which sorts first here.
        reference.dedup_by(|later, kept| later.0 == kept.0);
        assert!(
            all - reference.len() > 0,
            "this ring is known to have collisions"
        );
        let ring = Ring::ketama(nodes);
        assert_eq!(ring.point_count(), reference.len());
        assert!(ring
            .points()
            .zip(&reference)
            .all(|((p, n), (rp, rid))| p == *rp && n.identifier() == rid));
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..5000 {
            let key = format!("k{}", rng.u64(..));
            let h = crate::hash::ketama_key_hash(key.as_bytes());
            let at = reference.partition_point(|(p, _)| *p < h) % reference.len();
            assert_eq!(ring.pick(&key).unwrap().identifier(), reference[at].1);
        }
    }
}
