//! Talking to memcached for real (feature `client`): get, set and delete
//! routed to the server the ring picks, through `async-memcached`.
//!
//! Each ring node gets one client handle. A handle survives rebuilds while
//! its server stays in the set, and is dropped (closing its connection) once
//! the server leaves and no request still uses it. The TCP connection is
//! opened on first use and reopened after any failure, so a server that
//! restarts is picked up again without a rebuild.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_memcached::{AsciiProtocol, Client, Error, Status};
use serversets_core::HostPort;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::mcset::Routing;
use crate::{McSet, McSetError, Ring};

/// One server's client: a lazily opened connection, used by one request at
/// a time.
pub(crate) struct ServerClient {
    addr: HostPort,
    conn: Mutex<Option<Client>>,
}

impl ServerClient {
    fn new(addr: HostPort) -> ServerClient {
        ServerClient {
            addr,
            conn: Mutex::new(None),
        }
    }

    fn error(&self, source: Error) -> McSetError {
        McSetError::Memcache {
            server: self.addr.clone(),
            source,
        }
    }

    /// The connection, opened (or reopened after a failure) if needed.
    async fn connection(&self) -> Result<MappedMutexGuard<'_, Client>, McSetError> {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            let dsn = format!("tcp://{}", self.addr);
            let client = Client::new(&dsn).await.map_err(|e| self.error(e))?;
            tracing::debug!(server = %self.addr, "connected to memcached");
            *slot = Some(client);
        }
        // `slot` was filled just above when empty, so the map always succeeds.
        MutexGuard::try_map(slot, Option::as_mut).map_err(|_| self.error(Error::ConnectionClosed))
    }
}

impl Drop for ServerClient {
    fn drop(&mut self) {
        tracing::debug!(server = %self.addr, "dropping memcached client");
    }
}

/// Client handles for `ring`'s nodes, reusing those of `previous` for
/// servers that are still there.
pub(crate) fn clients_for(ring: &Ring, previous: Option<&Routing>) -> Box<[Arc<ServerClient>]> {
    let mut old: HashMap<&HostPort, &Arc<ServerClient>> = HashMap::new();
    if let Some(previous) = previous {
        old.extend(previous.clients.iter().map(|c| (&c.addr, c)));
    }
    ring.nodes()
        .iter()
        .map(|node| match old.get(node.addr()) {
            Some(client) => Arc::clone(client),
            None => Arc::new(ServerClient::new(node.addr().clone())),
        })
        .collect()
}

impl McSet {
    fn client_for(&self, key: &[u8]) -> Result<Arc<ServerClient>, McSetError> {
        let routing = self.routing();
        let index = routing.ring.pick_index(key).ok_or(McSetError::NoServers)?;
        routing
            .clients
            .get(index)
            .cloned()
            .ok_or(McSetError::NoServers)
    }

    /// Reads `key` from the server it lives on; `None` when it is not there.
    ///
    /// ```no_run
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let set = McSet::new(FixedSet::new(["127.0.0.1:11211"])?)?;
    /// set.set("greeting", b"hello", None).await?;
    /// assert_eq!(set.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
    /// assert!(set.delete("greeting").await?);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, McSetError> {
        let key = key.as_ref();
        let server = self.client_for(key)?;
        let mut conn = server.connection().await?;
        match conn.get(key).await {
            Ok(value) => Ok(value.and_then(|v| v.data)),
            Err(e) => Err(server.error(e)),
        }
    }

    /// Stores `value` under `key` on the server it lives on, expiring after
    /// `ttl` (whole seconds; `None` never expires).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let set = McSet::new(FixedSet::new(["127.0.0.1:11211"])?)?;
    /// set.set("session:1", b"{}", Some(Duration::from_secs(300))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), McSetError> {
        let key = key.as_ref();
        let server = self.client_for(key)?;
        let ttl = ttl.map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
        let mut conn = server.connection().await?;
        conn.set(key, value, ttl, None)
            .await
            .map_err(|e| server.error(e))
    }

    /// Deletes `key` from the server it lives on; `false` when it was not
    /// there.
    ///
    /// ```no_run
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let set = McSet::new(FixedSet::new(["127.0.0.1:11211"])?)?;
    /// let existed = set.delete("maybe").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, McSetError> {
        let key = key.as_ref();
        let server = self.client_for(key)?;
        let mut conn = server.connection().await?;
        match conn.delete(key).await {
            Ok(()) => Ok(true),
            Err(Error::Protocol(Status::NotFound)) => Ok(false),
            Err(e) => Err(server.error(e)),
        }
    }

    /// Number of memcached client handles currently held (one per server in
    /// the ring); handles of departed servers go once their last request
    /// ends.
    ///
    /// ```
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::new(FixedSet::new(["127.0.0.1:11211", "127.0.0.2:11211"])?)?;
    /// assert_eq!(set.client_count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn client_count(&self) -> usize {
        self.routing().clients.len()
    }
}
