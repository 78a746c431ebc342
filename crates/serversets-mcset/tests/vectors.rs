//! Every published vector, for both rings: the Finagle/libmemcached ketama
//! vectors (key hash, chosen ring point and node) and go.serversets' mcset
//! vectors (node). The files are copies of the public test vectors, so this
//! runs from a plain clone.

use serversets_core::{HostPort, Member, MemberId};
use serversets_mcset::{NodeIdentity, Ring, RingKind, WeightedNode};

const KETAMA: &str = testkit::vectors::FINAGLE_KETAMA;
const GO_MCSET: &str = testkit::vectors::GO_3_NODES;
const GO_COLLISIONS: &str = testkit::vectors::GO_COLLISIONS;

/// Node list from a header line: after `marker`, entries separated by
/// spaces or commas, each `host:port[=weight]`.
fn header_nodes(text: &str, marker: &str) -> Vec<WeightedNode> {
    let mut nodes = Vec::new();
    let mut in_list = false;
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let body = line.trim_start_matches('#').trim();
        if let Some(rest) = body.strip_prefix(marker) {
            in_list = true;
            nodes.extend(parse_entries(rest));
        } else if in_list && body.split([' ', ',']).all(looks_like_node) {
            nodes.extend(parse_entries(body));
        } else {
            in_list = false;
        }
    }
    assert!(!nodes.is_empty(), "no node list after {marker:?}");
    nodes
}

fn looks_like_node(entry: &str) -> bool {
    entry.is_empty() || entry.parse::<WeightedNode>().is_ok()
}

fn parse_entries(text: &str) -> Vec<WeightedNode> {
    text.split([' ', ','])
        .filter(|e| !e.is_empty())
        .map(|e| e.parse().unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect()
}

fn data_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
}

#[test]
fn ketama_header_describes_eight_weighted_nodes() {
    let nodes = header_nodes(
        KETAMA,
        "Ring: 160 points per unit of relative weight (numReps=160), nodes and weights:",
    );
    let shown: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        shown,
        [
            "10.0.1.1:11211=600",
            "10.0.1.2:11211=300",
            "10.0.1.3:11211=200",
            "10.0.1.4:11211=350",
            "10.0.1.5:11211=1000",
            "10.0.1.6:11211=800",
            "10.0.1.7:11211=950",
            "10.0.1.8:11211=100",
        ]
    );
}

fn ketama_ring() -> Ring {
    Ring::ketama(header_nodes(
        KETAMA,
        "Ring: 160 points per unit of relative weight (numReps=160), nodes and weights:",
    ))
}

#[test]
fn ketama_vectors_hash_point_and_node() {
    let ring = ketama_ring();
    let mut checked = 0;
    for line in data_lines(KETAMA) {
        // Keys contain no whitespace; columns are single-space separated.
        let cols: Vec<&str> = line.split(' ').collect();
        assert_eq!(cols.len(), 4, "bad vector line {line:?}");
        let (key, hash, point, node) = (cols[0], cols[1], cols[2], cols[3]);
        let at = ring.locate(key).expect("ring is not empty");
        assert_eq!(at.key_hash.to_string(), hash, "key hash of {key:?}");
        assert_eq!(at.point.to_string(), point, "ring point for {key:?}");
        assert_eq!(at.node.identifier(), node, "node for {key:?}");
        assert_eq!(at.node.addr().to_string(), format!("{node}:11211"));
        assert_eq!(ring.pick(key).map(|n| n.identifier()), Some(node));
        checked += 1;
    }
    assert_eq!(checked, 80, "every vector line was checked");
}

#[test]
fn ketama_vectors_hold_for_members_with_weight_metadata() {
    // The same ring built the way a watched set builds it: members with a
    // `weight` metadata entry, listed in reverse order.
    let nodes = header_nodes(
        KETAMA,
        "Ring: 160 points per unit of relative weight (numReps=160), nodes and weights:",
    );
    let members = nodes.iter().rev().enumerate().map(|(i, n)| {
        Member::builder(MemberId::new(format!("member_{i:010}")), n.addr().clone())
            .metadata("weight", n.weight().to_string())
            .build()
    });
    let ring = Ring::builder().build(members);
    let reference = ketama_ring();
    let points = |r: &Ring| {
        r.points()
            .map(|(p, n)| (p, n.identifier().to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(points(&ring), points(&reference));
    for line in data_lines(KETAMA) {
        let cols: Vec<&str> = line.split(' ').collect();
        assert_eq!(ring.pick(cols[0]).unwrap().identifier(), cols[3]);
    }
}

#[test]
fn ketama_ring_has_finagles_point_count_and_no_collisions() {
    let ring = ketama_ring();
    // floor(w / 4300 * 8 * 40 + 1e-10) digests, 4 points each.
    let want: [(&str, u32); 8] = [
        ("10.0.1.1", 44 * 4),
        ("10.0.1.2", 22 * 4),
        ("10.0.1.3", 14 * 4),
        ("10.0.1.4", 26 * 4),
        ("10.0.1.5", 74 * 4),
        ("10.0.1.6", 59 * 4),
        ("10.0.1.7", 70 * 4),
        ("10.0.1.8", 7 * 4),
    ];
    for (id, points) in want {
        let node = ring.nodes().iter().find(|n| n.identifier() == id).unwrap();
        assert_eq!(node.owned_points(), points, "{id}");
    }
    assert_eq!(ring.point_count(), 316 * 4);
}

#[test]
fn ketama_identity_choice_changes_placement_only_for_sharded_members() {
    let nodes = header_nodes(
        KETAMA,
        "Ring: 160 points per unit of relative weight (numReps=160), nodes and weights:",
    );
    let members: Vec<Member> = nodes
        .iter()
        .map(|n| {
            Member::builder(MemberId::new(n.addr().to_string()), n.addr().clone())
                .metadata("weight", n.weight().to_string())
                .build()
        })
        .collect();
    // No shards: both rules name nodes by host and agree with the vectors.
    for identity in [NodeIdentity::Finagle, NodeIdentity::HostPort] {
        let ring = Ring::builder().identity(identity).build(members.clone());
        for line in data_lines(KETAMA) {
            let cols: Vec<&str> = line.split(' ').collect();
            assert_eq!(ring.pick(cols[0]).unwrap().identifier(), cols[3]);
        }
    }
    // With shards, the Finagle rule hashes the shard id instead.
    let sharded: Vec<Member> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Member::builder(m.id().clone(), m.addr().clone())
                .shard(i as i32)
                .metadata("weight", m.metadata()["weight"].clone())
                .build()
        })
        .collect();
    let by_shard = Ring::builder().build(sharded.clone());
    let by_addr = Ring::builder()
        .identity(NodeIdentity::HostPort)
        .build(sharded);
    assert_eq!(by_shard.nodes()[0].identifier(), "0");
    assert_eq!(by_addr.nodes()[0].identifier(), "10.0.1.1");
    let differ = data_lines(KETAMA)
        .filter(|l| {
            let key = l.split(' ').next().unwrap();
            by_shard.pick(key).unwrap().addr() != by_addr.pick(key).unwrap().addr()
        })
        .count();
    assert!(differ > 0, "shard identity must place keys differently");
}

fn go_ring() -> Ring {
    let nodes = header_nodes(GO_MCSET, "nodes:");
    assert_eq!(nodes.len(), 3);
    Ring::builder()
        .kind(RingKind::GoMcset)
        .build_nodes(nodes)
        .expect("unweighted nodes")
}

#[test]
fn go_mcset_vectors() {
    let ring = go_ring();
    let mut checked = 0;
    for line in data_lines(GO_MCSET) {
        let (key, node) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad vector line {line:?}"));
        let want: HostPort = node.parse().unwrap();
        assert_eq!(ring.pick(key).unwrap().addr(), &want, "key {key:?}");
        checked += 1;
    }
    assert_eq!(checked, 200, "every vector line was checked");
}

#[test]
fn go_mcset_vectors_hold_whatever_the_node_order() {
    let mut nodes = header_nodes(GO_MCSET, "nodes:");
    nodes.reverse();
    let ring = Ring::builder()
        .kind(RingKind::GoMcset)
        .identity(NodeIdentity::Finagle) // ignored by the Go ring
        .build_nodes(nodes)
        .unwrap();
    for line in data_lines(GO_MCSET) {
        let (key, node) = line.rsplit_once(' ').unwrap();
        assert_eq!(ring.pick(key).unwrap().addr().to_string(), node);
    }
}

#[test]
fn the_two_rings_disagree() {
    // Guards against the kinds being wired to the same scheme.
    let nodes = header_nodes(GO_MCSET, "nodes:");
    let ketama = Ring::ketama(nodes.clone());
    let go = go_ring();
    let differ = data_lines(GO_MCSET)
        .filter(|l| {
            let key = l.rsplit_once(' ').unwrap().0;
            ketama.pick(key).unwrap().addr() != go.pick(key).unwrap().addr()
        })
        .count();
    assert!(differ > 20, "only {differ} of 200 keys differ");
    assert_ne!(ketama.key_hash("k"), go.key_hash("k"));
}

/// The 220-node pool whose ring has a point shared by two endpoints.
fn go_collision_nodes() -> Vec<WeightedNode> {
    let nodes = header_nodes(GO_COLLISIONS, "nodes:");
    assert_eq!(nodes.len(), 220);
    nodes
}

#[test]
fn go_mcset_collision_goes_to_the_larger_endpoint_as_in_go() {
    // go.serversets adds the sorted endpoints in order and the last one
    // added (the larger string) keeps a shared point; the vectors hit it.
    for order in [false, true] {
        let mut nodes = go_collision_nodes();
        if order {
            nodes.reverse();
        }
        let ring = Ring::builder()
            .kind(RingKind::GoMcset)
            .build_nodes(nodes)
            .unwrap();
        assert_eq!(ring.point_count(), 220 * 150 - 1, "one shared point");
        let mut checked = 0;
        for line in data_lines(GO_COLLISIONS) {
            let (key, node) = line.rsplit_once(' ').unwrap();
            assert_eq!(
                ring.pick(key).unwrap().addr().to_string(),
                node,
                "key {key:?}"
            );
            checked += 1;
        }
        assert_eq!(checked, 12, "every vector line was checked");
    }
}
