//! The memcache part: keys placed on a ketama ring over three real
//! memcached servers registered in ZooKeeper.

use std::time::Duration;

use serversets_core::Watcher;

use crate::context::Demo;
use crate::StepFuture;

pub fn memcache_keys(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let set = demo.server_set("demo-memcache")?;
        let mut servers = Vec::new();
        let mut registrations = Vec::new();
        for _ in 0..3 {
            let mc = testkit::Memcached::start()?;
            registrations.push(set.register_endpoint("127.0.0.1", mc.port(), None).await?);
            servers.push(mc);
        }
        demo.say(&format!(
            "three memcached servers registered in {}",
            set.path()
        ));
        let watch = set.watch().await?;
        let version = watch.snapshot().version();
        let cache = serversets_mcset::McSet::new(watch.feed())?;
        cache.wait_for_version(version).await?;
        let keys = [
            "user:1",
            "user:2",
            "session:abc",
            "feed:42",
            "photo:7",
            "cart:9",
        ];
        let mut placed = 0;
        for key in keys {
            let server = cache.pick(key)?;
            cache
                .set(key, key.as_bytes(), Some(Duration::from_secs(60)))
                .await?;
            // Ask that server directly, over the memcache text protocol.
            let mut conn = tokio::net::TcpStream::connect(server.addr().to_string()).await?;
            conn.write_all(format!("get {key}\r\n").as_bytes()).await?;
            let mut line = String::new();
            BufReader::new(&mut conn).read_line(&mut line).await?;
            let found = line.starts_with("VALUE");
            placed += usize::from(found);
            demo.say(&format!(
                "{key:<12} -> {} {}",
                server.addr(),
                if found {
                    demo.ui.green("(stored there)")
                } else {
                    demo.ui.red("(missing!)")
                }
            ));
        }
        drop(cache);
        drop(watch);
        for r in &registrations {
            r.close().await?;
        }
        demo.check(
            placed == keys.len(),
            "every key was stored on the server the ring chose (same placement as Finagle and libmemcached)",
        )
    })
}
