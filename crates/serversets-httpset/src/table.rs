//! The members of one snapshot, each with its own connection pool.
//!
//! hyper-util's pool cannot evict one host, so each member gets its own
//! `Client` (and so its own pool). A new table reuses the members that
//! stayed, keeping their pools and health, and drops the ones that left: the
//! last reference to a departed member's `Client` goes when its in-flight
//! requests finish, and dropping the pool closes its idle connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Version};
use hyper_util::client::legacy::{connect::Connect, Builder as ClientBuilder, Client};
use serversets_core::{HostPort, MemberId, Snapshot};

use serversets_core::balance::{InFlight, PassiveHealth};

use crate::body::SendBody;
use crate::metrics::{MemberMetrics, SetMetrics};
use crate::select::Candidate;
use crate::weights::Weights;

/// One member of the set, ready to take requests: its address, prebuilt
/// request parts, pool, health, load and metrics.
pub(crate) struct MemberSlot<C> {
    pub(crate) id: MemberId,
    pub(crate) addr: HostPort,
    pub(crate) authority: Authority,
    /// The `Host` header for requests that set none over HTTP/1, built
    /// once: the value hyper-util would otherwise format on every request.
    pub(crate) host: HeaderValue,
    /// Whether the member's latest answer came over HTTP/1.x; see
    /// [`host_header`](MemberSlot::host_header).
    http1: AtomicBool,
    pub(crate) client: Client<C, SendBody>,
    /// Passive health, by the rule every balancer shares.
    pub(crate) health: PassiveHealth,
    /// Requests sent and not yet answered with a response head, counted by
    /// a guard each attempt holds (released however the attempt ends).
    pub(crate) load: InFlight,
    /// Its metric handles, registered when it joined the set.
    pub(crate) metrics: MemberMetrics,
}

impl<C> MemberSlot<C> {
    /// The `Host` header to add to a request that sets none, or `None` to
    /// leave it to hyper-util.
    ///
    /// Only over HTTP/1 does a request need one, and there hyper-util adds
    /// it itself when missing (formatting it each time). Over HTTP/2 the
    /// authority travels as `:authority`, and hyper-util adds no `Host`, as
    /// RFC 9113 (8.3.1) asks; one added here would be encoded, sent and
    /// decoded on every request, and would make every header lookup on
    /// both sides search a non-empty map (measured: ~3,900 instructions,
    /// client and server together, 4% of a small GET over HTTPS and HTTP/2
    /// on loopback; #15). Which protocol a
    /// connection speaks is known only once hyper-util has one (ALPN), so
    /// the prebuilt value goes only to members whose latest answer came
    /// over HTTP/1.x. The bytes sent are the same either way.
    pub(crate) fn host_header(&self) -> Option<&HeaderValue> {
        self.http1.load(Ordering::Relaxed).then_some(&self.host)
    }

    /// Notes the HTTP version of an answer from this member. Reads before
    /// writing, so the steady state does not bounce the cache line between
    /// cores.
    pub(crate) fn answered_over(&self, version: Version) {
        let http1 = version <= Version::HTTP_11;
        if self.http1.load(Ordering::Relaxed) != http1 {
            self.http1.store(http1, Ordering::Relaxed);
        }
    }
}

impl<C> Candidate for Arc<MemberSlot<C>> {
    fn health(&self) -> &PassiveHealth {
        &self.health
    }

    fn in_flight(&self) -> usize {
        self.load.get()
    }
}

impl<C> AsRef<InFlight> for MemberSlot<C> {
    fn as_ref(&self) -> &InFlight {
        &self.load
    }
}

impl<C> Drop for MemberSlot<C> {
    fn drop(&mut self) {
        tracing::debug!(member = %self.addr, "member left the set; closing its pooled connections");
    }
}

/// The members of one snapshot version, in the snapshot's order.
pub(crate) struct Table<C> {
    pub(crate) version: u64,
    pub(crate) members: Vec<Arc<MemberSlot<C>>>,
    /// The members' weights (from this snapshot), prepared for O(1) picks.
    /// Kept here rather than on the slot: a slot is reused across tables
    /// while its weight may change.
    pub(crate) weights: Weights,
}

impl<C> Table<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// The table for `snap`, reusing `old`'s slots whose id and address
    /// are unchanged. Members whose address cannot be an HTTP authority are
    /// skipped with a warning.
    pub(crate) fn follow(
        old: &Table<C>,
        snap: &Snapshot,
        scheme: &Scheme,
        clients: &ClientBuilder,
        connector: &C,
        metrics: &SetMetrics,
    ) -> Table<C> {
        let mut kept: HashMap<&MemberId, &Arc<MemberSlot<C>>> =
            old.members.iter().map(|slot| (&slot.id, slot)).collect();
        let mut members = Vec::with_capacity(snap.len());
        let mut weights = Vec::with_capacity(snap.len());
        for member in snap {
            if let Some(slot) = kept
                .remove(member.id())
                .filter(|slot| &slot.addr == member.addr())
            {
                members.push(slot.clone());
                weights.push(member.weight());
                continue;
            }
            let Some((authority, host)) = http_target(member.addr(), scheme) else {
                tracing::warn!(member = %member.id(), addr = %member.addr(), "skipping member whose address is not a valid HTTP authority");
                continue;
            };
            tracing::debug!(member = %member.addr(), "member joined the set");
            members.push(Arc::new(MemberSlot {
                id: member.id().clone(),
                addr: member.addr().clone(),
                authority,
                host,
                http1: AtomicBool::new(false),
                client: clients.build(connector.clone()),
                health: PassiveHealth::default(),
                load: InFlight::default(),
                metrics: MemberMetrics::new(metrics, member.addr()),
            }));
            weights.push(member.weight());
        }
        Table {
            version: snap.version(),
            members,
            weights: Weights::new(&weights),
        }
    }
}

impl<C> Table<C> {
    /// The table before any snapshot was read.
    pub(crate) fn empty() -> Table<C> {
        Table {
            version: 0,
            members: Vec::new(),
            weights: Weights::Uniform,
        }
    }
}

/// The URI authority for `addr`, and the `Host` header value a client
/// sends for it: `host:port`, or just the host on the scheme's default port.
fn http_target(addr: &HostPort, scheme: &Scheme) -> Option<(Authority, HeaderValue)> {
    let authority = Authority::try_from(addr.to_string()).ok()?;
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = if addr.port() == default_port {
        authority.host()
    } else {
        authority.as_str()
    };
    let host = HeaderValue::from_str(host).ok()?;
    Some((authority, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_drops_only_the_default_port() {
        let cases = [
            ("10.0.0.1:8080", Scheme::HTTP, "10.0.0.1:8080"),
            ("10.0.0.1:80", Scheme::HTTP, "10.0.0.1"),
            ("10.0.0.1:80", Scheme::HTTPS, "10.0.0.1:80"),
            ("web.example:443", Scheme::HTTPS, "web.example"),
            ("[::1]:8080", Scheme::HTTP, "[::1]:8080"),
            ("[::1]:80", Scheme::HTTP, "[::1]"),
        ];
        for (addr, scheme, want) in cases {
            let (authority, host) = http_target(&addr.parse().unwrap(), &scheme).unwrap();
            assert_eq!(authority.as_str(), addr);
            assert_eq!(host, want, "{addr} over {scheme}");
        }
    }
}
