//! Talking to memcached for real (feature `client`): one memcached server's
//! connection and the get, set and delete exchanges on it, through
//! `async-memcached`. [`McSet`](crate::McSet) routes each key to the client
//! of the member the ring picks (see [`routing`](crate::routing)).
//!
//! Each ring node gets one client handle. A handle survives rebuilds while
//! its member stays in the set, and is dropped (closing its connection) once
//! the member leaves and no request still uses it. The TCP connection is
//! opened on first use and reopened after any failure, so a server that
//! restarts is picked up again without a rebuild.
//!
//! Every request is bounded in time (#12): opening a connection by the
//! connect timeout, and waiting for its turn on the connection plus the
//! exchange itself by the request timeout. A cache host that is powered off
//! or stalls therefore fails its own keys quickly and holds up nobody else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_memcached::{AsciiProtocol, Client, Status};
use serversets_core::HostPort;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio::time::{timeout_at, Instant};

use crate::{Error, Ring};

/// How long talking to one memcached server may take; set on
/// [`McSetBuilder`](crate::McSetBuilder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientOptions {
    /// Longest wait for a TCP connection to open (DNS included), whether
    /// this request opens it or waits for another request's connect.
    pub(crate) connect_timeout: Duration,
    /// Longest wait for a request's turn on the connection plus the
    /// request and its whole reply.
    pub(crate) request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        // memcached answers in well under a millisecond on a LAN; a second
        // is generous for a live server and short enough that a dead one
        // does not stall its callers.
        ClientOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        }
    }
}

/// memcached reads an expiry above this many seconds (30 days) as an
/// absolute Unix time rather than a number of seconds from now.
const MAX_RELATIVE_EXPIRY: u64 = 60 * 60 * 24 * 30;

/// The `exptime` memcached needs so an item lives for `ttl`, following its
/// rules:
///
/// * `None`: 0, never expires.
/// * `Some(ZERO)`: -1, expired at once (memcached stores nothing readable;
///   an older value under the key is replaced, so it is gone too).
/// * Otherwise whole seconds, rounded up (500 ms lives 1 s: a TTL never
///   becomes 0, "never"), sent as is up to 30 days and as the absolute Unix
///   time `now + ttl` beyond, clamped to the largest time memcached
///   accepts (a signed 32-bit value, early 2038).
pub(crate) fn exptime(ttl: Option<Duration>, now: SystemTime) -> i64 {
    let Some(ttl) = ttl else { return 0 };
    if ttl.is_zero() {
        return -1;
    }
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    if secs <= MAX_RELATIVE_EXPIRY {
        // At most 30 days: fits any integer type.
        return secs as i64;
    }
    // A clock before 1970 is not worth a failure: count from the epoch.
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let at = now.saturating_add(secs).min(i32::MAX as u64);
    at as i64
}

/// One server's client: a lazily opened connection, used by one request at
/// a time.
pub(crate) struct ServerClient {
    addr: HostPort,
    options: ClientOptions,
    /// The open connection, if any. A request holds this lock while it
    /// talks on the connection (at most the request timeout), never while
    /// a connection is being opened.
    conn: Mutex<Option<Client>>,
    /// Held by the one request opening a connection, so that a burst of
    /// requests opens one connection rather than one each; the others wait
    /// for it within their own connect timeout. Requests that find an open
    /// connection never touch it.
    connecting: Mutex<()>,
}

impl ServerClient {
    fn new(addr: HostPort, options: ClientOptions) -> ServerClient {
        ServerClient {
            addr,
            options,
            conn: Mutex::new(None),
            connecting: Mutex::new(()),
        }
    }

    fn error(&self, source: async_memcached::Error) -> Error {
        Error::Memcache {
            addr: self.addr.clone(),
            source,
        }
    }

    fn connect_timed_out(&self) -> Error {
        Error::ConnectTimeout {
            addr: self.addr.clone(),
            after: self.options.connect_timeout,
        }
    }

    fn request_timed_out(&self) -> Error {
        Error::RequestTimeout {
            addr: self.addr.clone(),
            after: self.options.request_timeout,
        }
    }

    /// Reads `key`; `None` when it is not there.
    pub(crate) async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let (mut conn, deadline) = self.connection().await?;
        // A request cut short by the deadline closes its connection (an
        // `async-memcached` guarantee), so no late reply is read as the
        // next request's.
        match timeout_at(deadline, conn.get(key)).await {
            Ok(Ok(value)) => Ok(value.and_then(|v| v.data)),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(self.request_timed_out()),
        }
    }

    /// Stores `value` under `key` with memcached expiry `exptime` (see
    /// [`exptime`]).
    pub(crate) async fn set(&self, key: &[u8], value: &[u8], exptime: i64) -> Result<(), Error> {
        let (mut conn, deadline) = self.connection().await?;
        match timeout_at(deadline, conn.set(key, value, Some(exptime), None)).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(self.request_timed_out()),
        }
    }

    /// Deletes `key`; `false` when it was not there.
    pub(crate) async fn delete(&self, key: &[u8]) -> Result<bool, Error> {
        let (mut conn, deadline) = self.connection().await?;
        match timeout_at(deadline, conn.delete(key)).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(async_memcached::Error::Protocol(Status::NotFound))) => Ok(false),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(self.request_timed_out()),
        }
    }

    /// The open connection (opened, or reopened after a failure, if
    /// needed) and the deadline by which the request on it must finish.
    ///
    /// A request spends at most the connect timeout getting a connection
    /// opened and at most the request timeout on the rest (waiting its turn
    /// and the exchange), so at most their sum in all.
    async fn connection(&self) -> Result<(MappedMutexGuard<'_, Client>, Instant), Error> {
        let mut deadline = Instant::now() + self.options.request_timeout;
        // Fixed once this request first has to connect, so retries below
        // share one connect budget.
        let mut connect_deadline: Option<Instant> = None;
        loop {
            let slot = timeout_at(deadline, self.conn.lock())
                .await
                .map_err(|_| self.request_timed_out())?;
            if slot.as_ref().is_some_and(|c| !c.is_closed()) {
                // Checked just above, so the map always succeeds.
                let conn = MutexGuard::try_map(slot, Option::as_mut)
                    .map_err(|_| self.error(async_memcached::Error::ConnectionClosed))?;
                return Ok((conn, deadline));
            }
            // Never connect with the lock held: requests queued on it would
            // wait for the connect, however long it takes.
            drop(slot);
            let began = Instant::now();
            let until = *connect_deadline.get_or_insert(began + self.options.connect_timeout);
            self.connect(until).await?;
            // Time spent connecting is not taken from the request's budget.
            deadline += began.elapsed();
        }
    }

    /// Opens a connection unless another request already has, by `until`.
    async fn connect(&self, until: Instant) -> Result<(), Error> {
        let _turn = timeout_at(until, self.connecting.lock())
            .await
            .map_err(|_| self.connect_timed_out())?;
        // Another request may have connected while this one waited; a slot
        // that is busy is in use by a request on an open connection.
        match self.conn.try_lock() {
            Ok(slot) if slot.as_ref().is_some_and(|c| !c.is_closed()) => return Ok(()),
            Err(_) => return Ok(()),
            Ok(_) => {}
        }
        let dsn = format!("tcp://{}", self.addr);
        let client = match timeout_at(until, Client::new(&dsn)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(self.error(e)),
            Err(_) => return Err(self.connect_timed_out()),
        };
        tracing::debug!(addr = %self.addr, "connected to memcached");
        // Only short checks hold the lock while the slot has no open
        // connection, and only this request fills it.
        let mut slot = timeout_at(until, self.conn.lock())
            .await
            .map_err(|_| self.connect_timed_out())?;
        *slot = Some(client);
        Ok(())
    }
}

impl Drop for ServerClient {
    fn drop(&mut self) {
        tracing::debug!(addr = %self.addr, "dropping memcached client");
    }
}

/// Client handles for `ring`'s nodes, by node index, reusing those in
/// `previous` for members that are still there.
pub(crate) fn clients_for(
    ring: &Ring,
    previous: &[Arc<ServerClient>],
    options: ClientOptions,
) -> Box<[Arc<ServerClient>]> {
    let old: HashMap<&HostPort, &Arc<ServerClient>> =
        previous.iter().map(|c| (&c.addr, c)).collect();
    ring.nodes()
        .iter()
        .map(|node| match old.get(node.addr()) {
            Some(client) => Arc::clone(client),
            None => Arc::new(ServerClient::new(node.addr().clone(), options)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn at(ttl: Option<Duration>) -> i64 {
        exptime(ttl, UNIX_EPOCH + Duration::from_secs(NOW))
    }

    #[test]
    fn none_never_expires_and_zero_expires_at_once() {
        assert_eq!(at(None), 0);
        assert_eq!(at(Some(Duration::ZERO)), -1);
    }

    #[test]
    fn fractions_round_up_so_a_ttl_is_never_zero() {
        assert_eq!(at(Some(Duration::from_nanos(1))), 1);
        assert_eq!(at(Some(Duration::from_millis(500))), 1);
        assert_eq!(at(Some(Duration::from_secs(1))), 1);
        assert_eq!(at(Some(Duration::from_millis(1200))), 2);
    }

    #[test]
    fn thirty_days_is_relative_and_longer_is_absolute() {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        assert_eq!(at(Some(days(30))), 2_592_000);
        assert_eq!(
            at(Some(days(30) + Duration::from_millis(1))),
            (NOW + 2_592_001) as i64
        );
        assert_eq!(at(Some(days(31))), (NOW + 31 * 86_400) as i64);
        // Past 2038 memcached has no way to say it: the latest time it takes.
        assert_eq!(at(Some(days(365 * 100))), i64::from(i32::MAX));
        assert_eq!(at(Some(Duration::MAX)), i64::from(i32::MAX));
    }
}
