//! ZooKeeper's truth, read directly (bypassing the fault proxies), and how
//! the fleet compares to it.
//!
//! The static members are created here too: thousands of persistent
//! `member_` nodes, pipelined through one connection, so that every full
//! read a watcher makes is long.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Value};
use zookeeper_client as zk;

use crate::Result;

/// Members by znode name: `member_0000000012` -> `10.77.0.13:31000`.
pub type Members = BTreeMap<String, String>;

/// How a static member is addressed: every one has its own host, all in
/// 10.77.0.0/16; registrations announce 127.0.0.1.
pub const STATIC_HOST_PREFIX: &str = "10.77.";
const STATIC_PORT: u16 = 31000;
/// What a node whose data is not a Finagle member maps to.
pub const UNPARSABLE: &str = "<unparsable>";
/// How long one read of the truth may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A direct session to the ensemble, reconnected after any error.
pub struct Truth {
    rt: tokio::runtime::Runtime,
    connect: String,
    path: String,
    client: Option<zk::Client>,
    /// Endpoint of every member name read so far (member data never
    /// changes, and names are never reused).
    cache: HashMap<String, String>,
}

impl Truth {
    pub fn new(connect: &str, path: &str) -> Result<Truth> {
        // One worker keeps the session's pings going between reads.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("soak-truth")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
        Ok(Truth {
            rt,
            connect: connect.to_string(),
            path: path.to_string(),
            client: None,
            cache: HashMap::new(),
        })
    }

    fn client(&mut self) -> Result<zk::Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let connect = self.connect.clone();
        let client = self
            .rt
            .block_on(async {
                tokio::time::timeout(
                    READ_TIMEOUT,
                    zk::Client::connector()
                        .with_session_timeout(Duration::from_secs(30))
                        .connect(&connect),
                )
                .await
            })
            .map_err(|_| format!("no ZooKeeper session to {connect} within {READ_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot connect to ZooKeeper at {connect}: {e}"))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Creates `count` persistent sequential members under the set (its
    /// parents first) and returns them; requests are pipelined in batches.
    pub fn create_static(&mut self, count: usize) -> Result<Members> {
        let client = self.client()?;
        let path = self.path.clone();
        let created = self.rt.block_on(async move {
            let dirs = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            client.mkdir(&path, &dirs).await?;
            let opts = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
            let prefix = format!("{path}/member_");
            let mut members = Members::new();
            let mut i = 0;
            while i < count {
                let batch: Vec<usize> = (i..count.min(i + 500)).collect();
                i += batch.len();
                // Each call sends its request at once; awaiting them in
                // order keeps 500 in flight.
                let pending: Vec<_> = batch
                    .iter()
                    .map(|&n| {
                        let (addr, data) = static_member(n);
                        (addr, client.create(&prefix, &data, &opts))
                    })
                    .collect();
                for (addr, reply) in pending {
                    let (_, seq) = reply.await?;
                    members.insert(format!("member_{seq}"), addr);
                }
            }
            Ok::<_, zk::Error>(members)
        });
        let created = created.map_err(|e| format!("creating the static members: {e}"))?;
        for (name, addr) in &created {
            self.cache.insert(name.clone(), addr.clone());
        }
        Ok(created)
    }

    /// Every `member_` child of the set with its endpoint, after a `sync`.
    /// An error drops the session, so the next read starts a new one.
    pub fn read(&mut self) -> Result<Members> {
        let client = self.client()?;
        let path = self.path.clone();
        let known: Vec<String> = self.cache.keys().cloned().collect();
        let result = self.rt.block_on(async move {
            tokio::time::timeout(READ_TIMEOUT, read_members(&client, &path, &known)).await
        });
        let (children, fresh) = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.client = None;
                return Err(format!("reading {} directly: {e}", self.path).into());
            }
            Err(_) => {
                self.client = None;
                return Err(
                    format!("reading {} directly took over {READ_TIMEOUT:?}", self.path).into(),
                );
            }
        };
        self.cache.extend(fresh);
        Ok(children
            .into_iter()
            .filter_map(|name| {
                let addr = self.cache.get(&name)?.clone();
                Some((name, addr))
            })
            .collect())
    }
}

/// Lists the members and reads those not in `known`, pipelined. Returns the
/// names present and the endpoints read; a name deleted between the list
/// and its read is left out of both.
async fn read_members(
    client: &zk::Client,
    path: &str,
    known: &[String],
) -> Result<(Vec<String>, Vec<(String, String)>), zk::Error> {
    client.sync(path).await?;
    let mut children = client.list_children(path).await?;
    children.retain(|c| c.starts_with("member_"));
    let known: std::collections::HashSet<&str> = known.iter().map(String::as_str).collect();
    let unknown: Vec<String> = children
        .iter()
        .filter(|c| !known.contains(c.as_str()))
        .cloned()
        .collect();
    let pending: Vec<_> = unknown
        .iter()
        .map(|name| client.get_data(&format!("{path}/{name}")))
        .collect();
    let mut fresh = Vec::new();
    let mut gone = Vec::new();
    for (name, reply) in unknown.iter().zip(pending) {
        match reply.await {
            Ok((data, _)) => fresh.push((name.clone(), endpoint_of(&data))),
            Err(zk::Error::NoNode) => gone.push(name.clone()),
            Err(e) => return Err(e),
        }
    }
    children.retain(|c| !gone.contains(c));
    Ok((children, fresh))
}

/// The endpoint and Finagle JSON of static member `n`.
fn static_member(n: usize) -> (String, Vec<u8>) {
    let host = format!("{STATIC_HOST_PREFIX}{}.{}", n / 200, n % 200 + 1);
    let data = json!({
        "serviceEndpoint": {"host": host, "port": STATIC_PORT},
        "additionalEndpoints": {},
        "status": "ALIVE",
        "shard": n,
    });
    (
        format!("{host}:{STATIC_PORT}"),
        data.to_string().into_bytes(),
    )
}

/// `host:port` of a member's service endpoint, or [`UNPARSABLE`].
pub fn endpoint_of(data: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return UNPARSABLE.into();
    };
    let ep = &v["serviceEndpoint"];
    match (ep["host"].as_str(), ep["port"].as_u64()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => UNPARSABLE.into(),
    }
}

/// The port of a registration's endpoint (`127.0.0.1:P`); `None` for a
/// static member or anything else.
pub fn registration_port(addr: &str) -> Option<u16> {
    addr.strip_prefix("127.0.0.1:")?.parse().ok()
}

/// What one watcher shows compared with the truth.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WatcherDiff {
    pub missing: Vec<(String, String)>,
    pub extra: Vec<(String, String)>,
}

/// Members in `truth` but not in `seen` (or with another endpoint), and the
/// reverse.
pub fn compare(truth: &Members, seen: &Members) -> WatcherDiff {
    let missing = truth
        .iter()
        .filter(|(name, addr)| seen.get(*name) != Some(addr))
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
    let extra = seen
        .iter()
        .filter(|(name, addr)| truth.get(*name) != Some(addr))
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
    WatcherDiff { missing, extra }
}

/// `member_0000000012 (10.77.0.13:31000), ...`: the first few, then a count.
pub fn list(members: &[(String, String)], max: usize) -> String {
    let mut parts: Vec<String> = members
        .iter()
        .take(max)
        .map(|(n, a)| format!("{n} ({a})"))
        .collect();
    if members.len() > max {
        parts.push(format!("and {} more", members.len() - max));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_members_are_finagle_json_with_unique_endpoints() {
        let (addr, data) = static_member(1234);
        assert_eq!(addr, "10.77.6.35:31000");
        assert_eq!(endpoint_of(&data), addr);
        let all: std::collections::HashSet<String> =
            (0..2000).map(|n| static_member(n).0).collect();
        assert_eq!(all.len(), 2000);
        assert!(all.iter().all(|a| a.starts_with(STATIC_HOST_PREFIX)));
    }

    #[test]
    fn endpoints_and_ports() {
        let reg = br#"{"serviceEndpoint":{"host":"127.0.0.1","port":40001},"status":"ALIVE"}"#;
        assert_eq!(endpoint_of(reg), "127.0.0.1:40001");
        assert_eq!(endpoint_of(b"junk"), UNPARSABLE);
        assert_eq!(
            endpoint_of(br#"{"serviceEndpoint":{"host":"h"}}"#),
            UNPARSABLE
        );
        assert_eq!(registration_port("127.0.0.1:40001"), Some(40001));
        assert_eq!(registration_port("10.77.0.1:31000"), None);
    }

    #[test]
    fn compare_finds_missing_extra_and_changed() {
        let m = |pairs: &[(&str, &str)]| -> Members {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let truth = m(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let seen = m(&[("a", "1"), ("c", "9"), ("d", "4")]);
        let d = compare(&truth, &seen);
        assert_eq!(
            d.missing,
            [("b".into(), "2".into()), ("c".into(), "3".into())]
        );
        assert_eq!(
            d.extra,
            [("c".into(), "9".into()), ("d".into(), "4".into())]
        );
        assert_eq!(compare(&truth, &truth), WatcherDiff::default());
        assert_eq!(list(&d.missing, 1), "b (2), and 1 more");
    }
}
