//! Writing and reading znodes the way other ZooKeeper clients do, for tests
//! that play Finagle, Aurora or an operator next to the code under test.

use std::time::Duration;

use zookeeper_client as zk;

/// A plain zookeeper-client session (20 s timeout) to `connect`.
pub async fn connect(connect: &str) -> Result<zk::Client, zk::Error> {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .connect(connect)
        .await
}

/// Creates `path` with `data` (parents first, open ACL); returns the created
/// path, with the sequence number for sequential modes.
pub async fn put(
    client: &zk::Client,
    path: &str,
    data: &[u8],
    mode: zk::CreateMode,
) -> Result<String, zk::Error> {
    let parent = &path[..path.rfind('/').unwrap_or(0)];
    if !parent.is_empty() {
        let dirs = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        client.mkdir(parent, &dirs).await?;
    }
    let (_, seq) = client
        .create(path, data, &mode.with_acls(zk::Acls::anyone_all()))
        .await?;
    Ok(match mode {
        zk::CreateMode::EphemeralSequential | zk::CreateMode::PersistentSequential => {
            format!("{path}{seq}")
        }
        _ => path.to_string(),
    })
}

/// The `member_` children of `path`, sorted, after a sync (so a fresh read
/// sees every committed change); a missing path has none.
pub async fn members(client: &zk::Client, path: &str) -> Result<Vec<String>, zk::Error> {
    client.sync(path).await.or_else(|e| match e {
        zk::Error::NoNode => Ok(()),
        e => Err(e),
    })?;
    match client.list_children(path).await {
        Ok(mut children) => {
            children.retain(|n| n.starts_with("member_"));
            children.sort();
            Ok(children)
        }
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
