//! The task that owns a session's ZooKeeper client: it connects, follows
//! the connection state, publishes each new session as a generation, and
//! opens a new session after an expiry.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use super::{Generation, Health, Shared};
use crate::zookeeper::backoff::Backoff;
use crate::zookeeper::error::Error;
use crate::zookeeper::security::{diagnose, Finding};

/// Clears `alive` when the supervisor's future is dropped (the runtime shut
/// down), so the registry never hands out a session nobody drives.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
        self.0.current.send_replace(None);
    }
}

pub(super) async fn supervise(shared: Arc<Shared>, mut shutdown: watch::Receiver<()>) {
    shared.alive.store(true, Ordering::SeqCst);
    let _guard = AliveGuard(shared.clone());
    let cfg = shared.cfg.clone();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let connector = cfg.connector(shared.tls.as_ref());
        let attempt = tokio::select! {
            _ = shutdown.changed() => return,
            r = cfg.connect(connector) => r,
        };
        let client = match attempt {
            Ok(client) => client,
            Err(e) => {
                let mut reason = e.to_string();
                shared.metrics.connect_failures.increment(1);
                if e == zk::Error::AuthFailed {
                    shared.set_health(Health::AuthFailed);
                    if let Some(user) = cfg.sasl_user() {
                        let refused = Error::SaslAuthFailed {
                            hosts: cfg.hosts().to_string(),
                            user: user.to_string(),
                        };
                        reason = refused.to_string();
                        shared.problem.send_replace(Some(refused));
                    }
                } else if cfg.uses_tls() {
                    // zookeeper-client says only "timeout": find out why.
                    // (Plain sessions skip this: it would only delay the
                    // next attempt during an outage.)
                    let finding = tokio::select! {
                        _ = shutdown.changed() => return,
                        f = diagnose(&cfg) => f,
                    };
                    match finding {
                        Finding::Definite(why) => {
                            reason = why.to_string();
                            shared.problem.send_replace(Some(why));
                        }
                        Finding::Unsure(note) if !note.is_empty() => {
                            reason = format!("{reason} ({note})");
                        }
                        Finding::Unsure(_) => {}
                    }
                }
                tracing::warn!(hosts = cfg.hosts(), error = %reason, "cannot open a ZooKeeper session; retrying");
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        let number = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let started = std::time::Instant::now();
        let session_id = client.session_id().0;
        tracing::info!(
            hosts = cfg.hosts(),
            session = format_args!("{session_id:#x}"),
            timeout_ms = client.session_timeout().as_millis() as u64,
            generation = number,
            "ZooKeeper session established"
        );
        let mut states = client.state_watcher();
        // The state may have moved on between connect() and now; the watcher
        // only reports later changes, so start from what it is.
        let mut pending = Some(states.peek_state()).filter(|s| {
            !matches!(
                s,
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly
            )
        });
        // Health first: whoever sees the new session also sees it connected.
        shared.metrics.established.increment(1);
        shared.set_health(Health::Connected);
        shared.problem.send_replace(None);
        shared.current.send_replace(Some(Arc::new(Generation {
            client,
            number,
            session_id,
        })));
        loop {
            let state = match pending.take() {
                Some(s) => s,
                None => tokio::select! {
                    _ = shutdown.changed() => {
                        shared.current.send_replace(None);
                        return;
                    }
                    s = states.changed() => s,
                },
            };
            match state {
                zk::SessionState::Disconnected => {
                    tracing::warn!(
                        hosts = cfg.hosts(),
                        "ZooKeeper connection lost; reconnecting, members kept"
                    );
                    shared.set_health(Health::Disconnected);
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    tracing::info!(hosts = cfg.hosts(), "ZooKeeper connection restored");
                    shared.metrics.reconnects.increment(1);
                    shared.set_health(Health::Connected);
                }
                zk::SessionState::Expired | zk::SessionState::Closed => {
                    tracing::warn!(
                        session = format_args!("{session_id:#x}"),
                        "ZooKeeper session expired; opening a new one and restoring members and watches"
                    );
                    shared.metrics.expiries.increment(1);
                    shared.set_health(Health::Expired);
                    break;
                }
                zk::SessionState::AuthFailed => {
                    tracing::error!(
                        hosts = cfg.hosts(),
                        "ZooKeeper authentication failed; retrying"
                    );
                    shared.set_health(Health::AuthFailed);
                    break;
                }
            }
        }
        shared.current.send_replace(None);
        // A session that ended at once (refused credentials, moved) must not
        // be reopened in a tight loop; one that lived a while starts afresh.
        if started.elapsed() > cfg.session_timeout {
            backoff.reset();
        } else {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }
}

/// Reads the TLS PEM files again whenever they change, so the next
/// connection uses rotated certificates. A stat of at most three files
/// every 30 seconds.
#[cfg(feature = "tls")]
pub(super) async fn reload_tls_files(shared: Arc<Shared>, mut shutdown: watch::Receiver<()>) {
    let Some(tls) = &shared.tls else { return };
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        match tls.reload() {
            Ok(true) => tracing::info!(
                hosts = shared.cfg.hosts(),
                "ZooKeeper TLS certificates reloaded"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %crate::contract::chain(&e), "cannot reload the ZooKeeper TLS certificates; keeping the previous ones")
            }
        }
    }
}
