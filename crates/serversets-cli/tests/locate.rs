//! `locate --ring go-mcset` on a pool whose ring has a point shared by two
//! endpoints: the CLI must place keys exactly as go.serversets does, where
//! the larger endpoint owns a shared point.

mod support;

use support::*;

/// The node list (`# nodes: a,b,...`) and the `key node` lines of a
/// go.serversets vector file.
fn go_vectors(text: &str) -> (Vec<String>, Vec<(String, String)>) {
    let nodes = text
        .lines()
        .find_map(|l| l.strip_prefix("# nodes: "))
        .expect("a nodes header")
        .split(',')
        .map(str::to_string)
        .collect();
    let want = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, n) = l.rsplit_once(' ').expect("KEY NODE");
            (k.to_string(), n.to_string())
        })
        .collect();
    (nodes, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_go_mcset_gives_a_shared_point_to_the_larger_endpoint_as_go_does() {
    let (mut nodes, want) = go_vectors(testkit::vectors::GO_COLLISIONS);
    assert_eq!(nodes.len(), 220);
    assert_eq!(want.len(), 12);
    // Listed in reverse: placement must not depend on the order given.
    nodes.reverse();
    let keys = want.iter().map(|(k, _)| k.as_str());
    let stdout = locate_from_stdin(&["--ring", "go-mcset"], &nodes, keys).await;
    let got = locations(&stdout);
    assert_eq!(got, want);
}
