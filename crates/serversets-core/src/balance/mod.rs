//! The parts every balancer shares, in tower's split:
//!
//! - **discover** ([`follow`]): keeping a balancer in step with its source,
//!   with one policy for a follower that stops;
//! - **load** ([`load`]): requests in flight per member, counted by a guard
//!   that releases on drop, so no early return or cancelled future leaks one;
//! - **balance** ([`health`]): passive health, the one ejection rule.
//!
//! They live here, in the ZooKeeper-free part of core, so that httpset,
//! thriftset and mcset behave alike (same defaults, same names, same logs)
//! while still depending only on core's contract. Choosing a member (round
//! robin, least loaded, a hash ring) stays with each balancer.
//!
//! ```
//! use std::sync::Arc;
//! use serversets_core::balance::{Clock, Ejection, InFlight, PassiveHealth};
//!
//! // Per member: a load counter and a health record.
//! let load = Arc::new(InFlight::default());
//! let health = PassiveHealth::default();
//! let clock = Clock::new();
//!
//! let guard = InFlight::enter(load.clone());
//! assert_eq!(load.get(), 1);
//! let attempt = health.attempt();
//! // ... the request is answered:
//! health.record_answer(attempt);
//! drop(guard);
//! assert_eq!(load.get(), 0);
//! assert!(health.is_available(&mut clock.lazy_now()));
//! # let _ = Ejection::default();
//! ```

pub mod follow;
pub mod health;
pub mod load;

pub use follow::{Changes, FollowState, FollowTask, Follower};
pub use health::{
    Attempt, Clock, Ejection, HealthReport, LazyNow, PassiveHealth, DEFAULT_EJECT_AFTER,
    DEFAULT_EJECT_FOR,
};
pub use load::{InFlight, InFlightGuard};
