//! End to end: Thrift backends register in a real ZooKeeper, and the pool
//! follows a core `watch()` as members come and go.

mod support;

use std::time::Duration;

use serversets_core::{Environment, ServerSet};
use serversets_thriftset::ThriftSet;
use support::{assert_echo, with_client, Backend, TEchoSyncClient};
use testkit::eventually_blocking;

#[test]
fn follows_backends_registered_in_zookeeper() {
    let zk = testkit::ZkCluster::standalone().expect("zookeeper (see testkit docs)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = Backend::start();
    let b = Backend::start();
    let discovery =
        ServerSet::new(Environment::Test, "thriftset-echo", [zk.connect_string()]).unwrap();

    let ep_a = runtime
        .block_on(discovery.register_endpoint("127.0.0.1", a.port, None))
        .unwrap();
    let watch = runtime.block_on(discovery.watch()).unwrap();
    let set = ThriftSet::new(watch).unwrap();
    let addrs = |set: &ThriftSet| -> Vec<String> {
        set.members().iter().map(|m| m.addr.to_string()).collect()
    };
    assert_eq!(addrs(&set), [a.addr()]);
    let mut conn = set.get().unwrap();
    assert_echo(&mut conn, "zk");
    drop(conn);

    // A second backend registers: the pool picks it up and uses it.
    let ep_b = runtime
        .block_on(discovery.register_endpoint("127.0.0.1", b.port, None))
        .unwrap();
    eventually_blocking(Duration::from_secs(10), "both members in the pool", || {
        addrs(&set).len() == 2
    });
    let held: Vec<_> = (0..2).map(|_| set.get().unwrap()).collect();
    assert!(held.iter().any(|c| c.addr().to_string() == b.addr()));
    drop(held);

    // The first deregisters: its connections close and calls go to b only.
    runtime.block_on(ep_a.close()).unwrap();
    eventually_blocking(Duration::from_secs(10), "only b in the pool", || {
        addrs(&set) == [b.addr()]
    });
    eventually_blocking(Duration::from_secs(5), "a's connections to close", || {
        a.stats.open() == 0
    });
    let a_requests = a.stats.requests();
    for _ in 0..10 {
        let mut conn = set.get().unwrap();
        with_client(&mut conn, |c| c.echo("b only".into())).unwrap();
    }
    assert_eq!(a.stats.requests(), a_requests);
    assert!(b.stats.requests() >= 10);

    drop(set);
    runtime.block_on(ep_b.close()).unwrap();
}
