//! Checkout: handing out a connection to the least loaded member.
//!
//! In three steps, so that the lock is never held across I/O: reserve a
//! slot under the lock (waiting while every member is full), then probe an
//! idle connection or dial a new one without it, then check under the lock
//! that the member is still in an open set. A connect that fails moves on
//! to the next best member; every path either hands the connection out or
//! gives the slot back through [`release`](super::release).

use std::sync::Arc;
use std::time::Instant;

use serversets_core::balance::InFlight;
use serversets_core::HostPort;

use super::choose::{pick, pick_weighted, Pick};
use super::release::Outcome;
use super::slot::find;
use super::{close_all, later, Doomed, Lease, Shared};
use crate::link::Link;
use crate::Error;

/// A slot reserved on a member: its lease already counts it in flight.
struct Reservation {
    lease: Lease,
    addr: Arc<HostPort>,
    /// An idle connection to probe, if the member had one.
    link: Option<Link>,
}

/// What is left on a member whose idle connection turned out dead.
enum NextIdle {
    /// Another idle connection to probe.
    Link(Link),
    /// None: dial a new one.
    None,
    /// The member left the set, or the set closed: do not dial.
    MemberGone,
}

impl Shared {
    /// Checks out a connection: least in-flight member, waiting while every
    /// member is full, trying the next member when a connect fails.
    ///
    /// The whole checkout ends by `checkout_timeout + connect_timeout` from
    /// its start (#12): waiting for a slot takes at most the checkout
    /// timeout, each connect (name lookup included, over every address) at
    /// most the connect timeout, and all of it together at most their sum,
    /// however many members are tried.
    pub(crate) fn checkout(&self) -> Result<(Link, Lease), Error> {
        self.catch_up();
        let start = Instant::now();
        let overall = later(
            start,
            self.config
                .checkout_timeout
                .saturating_add(self.config.connect_timeout),
        );
        // Set on the first wait, so the common path reads the clock less.
        let mut deadline = None;
        let mut tried: Vec<u64> = Vec::new();
        let mut last_error: Option<Error> = None;
        loop {
            let reservation = match self.reserve(&mut deadline, overall, &tried) {
                Ok(r) => r,
                // Every member failed to connect during this call: say why.
                Err(Error::NoMembers) => return Err(last_error.unwrap_or(Error::NoMembers)),
                Err(e) => return Err(e),
            };
            let slot_id = reservation.lease.slot_id;
            match self.establish(reservation, overall) {
                Ok((link, lease)) => {
                    // The member may have left the set, or the set closed,
                    // while we dialled or probed without the lock: never hand
                    // that out, and give the slot back (a close during a
                    // connect left it counted in flight for good, #12).
                    if self.still_member(slot_id, lease.hint) {
                        return Ok((link, lease));
                    }
                    self.release(lease, Some(link), Outcome::Unused);
                    tried.push(slot_id);
                }
                Err((slot_id, e)) => {
                    tried.push(slot_id);
                    if let Some(e) = e {
                        last_error = Some(e);
                    }
                }
            }
        }
    }

    /// True while the member is in the set and the pool is open.
    /// Counts the checkout when it is handed out (so, on a member).
    fn still_member(&self, slot_id: u64, hint: usize) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        match find(&mut state.members, slot_id, hint) {
            Some(slot) => {
                slot.metrics.checkouts.increment(1);
                true
            }
            None => false,
        }
    }

    /// Reserves a slot on the best member, waiting for one while every
    /// member is full. Members in `tried` are skipped; `NoMembers` when
    /// nothing is left.
    fn reserve(
        &self,
        deadline: &mut Option<Instant>,
        overall: Instant,
        tried: &[u64],
    ) -> Result<Reservation, Error> {
        let mut doomed = Doomed::new();
        let mut state = self.lock();
        let result = loop {
            if state.closed {
                break Err(Error::Closed);
            }
            let now = Instant::now();
            // The health clock is read only if some member is ejected.
            let mut health_now = self.clock.lazy_now();
            let max_active = self.config.max_active;
            let choice = if state.weighted {
                pick_weighted(&state.members, max_active, &mut health_now, tried)
            } else {
                pick(&state.members, max_active, &mut health_now, tried)
            };
            match choice {
                Pick::Member(index) => {
                    let idle_timeout = self.config.idle_timeout;
                    let Some(slot) = state.members.get_mut(index) else {
                        // `pick` returns an index into these very slots under
                        // the same lock; treat the impossible as "no member".
                        break Err(Error::NoMembers);
                    };
                    let in_flight = InFlight::enter(slot.load.clone());
                    let attempt = slot.health.attempt();
                    let mut link = None;
                    if let Some(idle) = slot.idle.pop() {
                        if idle_timeout.is_some_and(|t| now.duration_since(idle.since) >= t) {
                            // The newest is too old, so all older ones are.
                            doomed.push(idle.link);
                            doomed.extend(slot.idle.drain(..).map(|i| i.link));
                        } else {
                            link = Some(idle.link);
                        }
                    }
                    slot.report();
                    break Ok(Reservation {
                        lease: Lease {
                            slot_id: slot.id,
                            hint: index,
                            in_flight,
                            attempt,
                        },
                        addr: slot.addr.clone(),
                        link,
                    });
                }
                Pick::None => break Err(Error::NoMembers),
                Pick::AllFull => {
                    let until = (*deadline
                        .get_or_insert_with(|| later(now, self.config.checkout_timeout)))
                    .min(overall);
                    if now >= until {
                        self.metrics.timeouts.increment(1);
                        break Err(Error::Exhausted(self.config.checkout_timeout));
                    }
                    state.waiters += 1;
                    self.metrics.waiting.set(state.waiters as f64);
                    state = self
                        .freed
                        .wait_timeout(state, until - now)
                        .map(|(s, _)| s)
                        .unwrap_or_else(|p| p.into_inner().0);
                    state.waiters -= 1;
                    self.metrics.waiting.set(state.waiters as f64);
                }
            }
        };
        drop(state);
        close_all(doomed);
        result
    }

    /// Turns a reservation into a live connection: probes an idle one, dials
    /// otherwise, by `overall` at the latest. On a dial failure the slot is
    /// released and the failure counted; the caller moves on to another
    /// member. A member that left the set (or a set that closed) while its
    /// idle connection was probed is not dialled: the slot is released with
    /// no error to report.
    fn establish(
        &self,
        mut r: Reservation,
        overall: Instant,
    ) -> Result<(Link, Lease), (u64, Option<Error>)> {
        let (slot_id, hint) = (r.lease.slot_id, r.lease.hint);
        while let Some(link) = r.link.take() {
            if !self.config.check_idle || link.looks_alive() {
                return Ok((link, r.lease));
            }
            tracing::debug!(addr = %r.addr, "thriftset: idle connection was closed by the server");
            link.close();
            // Try the member's next idle one, still holding the slot.
            match self.take_idle(slot_id, hint) {
                NextIdle::Link(next) => r.link = Some(next),
                NextIdle::None => {}
                NextIdle::MemberGone => {
                    self.release(r.lease, None, Outcome::Unused);
                    return Err((slot_id, None));
                }
            }
        }
        let deadline = later(Instant::now(), self.config.connect_timeout).min(overall);
        match Link::connect(&r.addr, deadline, self.config.io_timeout) {
            Ok(link) => Ok((link, r.lease)),
            Err(source) => {
                tracing::warn!(addr = %r.addr, error = %source, "thriftset: connect failed");
                if let Some(slot) = find(&mut self.lock().members, slot_id, hint) {
                    slot.metrics.connect_failures.increment(1);
                }
                self.release(r.lease, None, Outcome::Failed);
                Err((
                    slot_id,
                    Some(Error::Connect {
                        addr: (*r.addr).clone(),
                        source,
                    }),
                ))
            }
        }
    }

    /// The next idle connection of a member whose slot the caller holds, if
    /// one is left and still within the idle timeout.
    fn take_idle(&self, slot_id: u64, hint: usize) -> NextIdle {
        let mut state = self.lock();
        if state.closed {
            return NextIdle::MemberGone;
        }
        let Some(slot) = find(&mut state.members, slot_id, hint) else {
            return NextIdle::MemberGone;
        };
        let Some(idle) = slot.idle.pop() else {
            return NextIdle::None;
        };
        slot.report();
        let stale = self
            .config
            .idle_timeout
            .is_some_and(|t| idle.since.elapsed() >= t);
        if stale {
            // The reaper closes the rest; this one closes with the caller's.
            drop(state);
            idle.link.close();
            return NextIdle::None;
        }
        NextIdle::Link(idle.link)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serversets_core::{Member, Publisher};

    use super::*;
    use crate::config::Config;

    /// A pool over `publisher` with no follower running (as after one
    /// died): checkouts catch up with the membership themselves.
    fn unfollowed(publisher: &Publisher) -> Shared {
        Shared::new(Config::default(), Arc::new(publisher.feed()))
    }

    /// Without a follower running (it died, or never started), `checkout`
    /// catches up with the source itself: core's one policy.
    #[test]
    fn checkout_follows_the_watcher_when_the_follower_is_gone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: HostPort = listener.local_addr().unwrap().to_string().parse().unwrap();
        let publisher = Publisher::new();
        let shared = unfollowed(&publisher);
        assert!(matches!(shared.checkout(), Err(Error::NoMembers)));

        publisher.publish([Member::from_addr(addr.clone())]);
        let (link, lease) = shared.checkout().unwrap();
        assert_eq!(*link.addr, addr);
        shared.release(lease, Some(link), Outcome::Ok);
        assert_eq!(shared.stats()[0].idle, 1);

        publisher.publish([]);
        assert!(matches!(shared.checkout(), Err(Error::NoMembers)));
        assert!(shared.stats().is_empty(), "the removed member is gone");
    }

    /// A member that leaves while its idle connection is being checked is
    /// not dialled (#12): the slot is given back and nothing is counted.
    #[test]
    fn a_member_that_leaves_while_its_idle_link_is_checked_is_not_dialled() {
        use std::io::ErrorKind;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: HostPort = listener.local_addr().unwrap().to_string().parse().unwrap();
        let publisher = Publisher::new();
        let shared = unfollowed(&publisher);
        publisher.publish([Member::from_addr(addr.clone())]);

        // One idle connection, which the server then closes.
        let (link, lease) = shared.checkout().unwrap();
        let (server_side, _) = listener.accept().unwrap();
        shared.release(lease, Some(link), Outcome::Ok);
        drop(server_side);
        listener.set_nonblocking(true).unwrap();

        // A checkout reserves it; the member leaves before the probe.
        let now = Instant::now();
        let r = shared
            .reserve(&mut None, now + Duration::from_secs(5), &[])
            .unwrap();
        let reserved = r.link.as_ref().expect("the idle connection was reserved");
        publisher.publish([]);
        shared.catch_up();
        testkit::eventually_blocking(
            Duration::from_secs(2),
            "the server's close to reach the reserved idle connection",
            || !reserved.looks_alive(),
        );

        let result = shared.establish(r, now + Duration::from_secs(5));
        assert!(
            matches!(result, Err((_, None))),
            "not dialled, nothing to report"
        );
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "the departed member was dialled"
        );
    }
}
