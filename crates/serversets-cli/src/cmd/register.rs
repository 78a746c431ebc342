//! `serversets register`: a sidecar that keeps a member registered while
//! its health check passes, and removes it on SIGINT/SIGTERM.

use std::io::Write;
use std::time::Duration;

use serversets_core::{HostPort, Registration, RegistrationState, ServerSet};

use crate::args::{GlobalArgs, RegisterArgs};
use crate::check::Check;
use crate::cmd::watch::health_text;
use crate::duration::show;
use crate::error::Error;
use crate::output::stderr_line;
use crate::signals::Signals;
use crate::target::{acl_policy, set_builder, zk};
use crate::timefmt::now;

pub(crate) async fn run(
    g: &GlobalArgs,
    a: &RegisterArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    let addr = HostPort::new(a.host.clone(), a.port).map_err(serversets_core::Error::from)?;
    if let Some(metrics) = a.metrics_addr {
        crate::metrics::serve(metrics)?;
    }
    let check = if a.check_tcp {
        Some(Check::Tcp(addr.clone()))
    } else if let Some(url) = &a.check_http {
        Some(Check::Http(url.clone()))
    } else {
        a.check_cmd.as_ref().map(|cmd| Check::Cmd(cmd.clone()))
    };
    let set = set_builder(g)?.acls(acl_policy(a.acl, g)?).build()?;
    let servers = zk(g)?.servers_text();
    // Before anything is announced: a signal from now on deregisters.
    let mut signals = Signals::install()?;
    let mut say = Say { out, broken: false };

    let check_text = match &check {
        Some(c) => format!("{c} every {}", show(a.check_interval)),
        None => "none".into(),
    };
    say.line(format!(
        "{} registering {addr} in {} on {servers} (check: {check_text})",
        now(),
        set.path(),
    ));

    let mut builder = set
        .registration(&a.host, a.port)
        .ping_interval(a.check_interval)
        .ping_timeout(a.check_timeout);
    for (name, ep) in &a.additional {
        builder = builder.additional_endpoint(name, ep.host(), ep.port());
    }
    if let Some(shard) = a.shard {
        builder = builder.shard(shard);
    }
    for (k, v) in &a.metadata {
        builder = builder.metadata(k, v);
    }
    if let Some(check) = check {
        builder = builder.ping(check.into_ping());
    }
    // Once started, the registration may create the member at any moment
    // (its tasks run on their own), so a signal must not simply drop it:
    // see it through, then remove what it made.
    let register = builder.register();
    tokio::pin!(register);
    let registration = tokio::select! {
        biased;
        r = &mut register => r?,
        sig = signals.recv() => {
            say.line(format!(
                "{} received {sig} while registering; deregistering once that settles",
                now()
            ));
            // register() gives up by itself after about this long.
            let grace = g.connect_timeout + a.check_timeout + SETTLE_MARGIN;
            let settled = tokio::select! {
                biased;
                r = tokio::time::timeout(grace, &mut register) => r,
                sig = signals.recv() => return Err(forced(sig)),
            };
            return match settled {
                Ok(Ok(registration)) => deregister(&registration, &mut signals, &mut say).await,
                Ok(Err(e)) => {
                    say.line(format!(
                        "{} not registered ({}); exiting",
                        now(),
                        crate::error::report(&e)
                    ));
                    Ok(())
                }
                Err(_) => Err(Error::Failed(format!(
                    "received {sig}, but the registration did not settle within {}; \
                     any member it created goes when the ZooKeeper session ends",
                    show(grace)
                ))),
            };
        }
    };

    // From here on every way out removes the member first.
    match follow(&set, &registration, &mut signals, &mut say).await {
        Ok(sig) => {
            say.line(format!("{} received {sig}; deregistering", now()));
            deregister(&registration, &mut signals, &mut say).await
        }
        Err(e) => {
            // The error is the news; a second signal during this close
            // only makes the exit quicker.
            let _ = deregister(&registration, &mut signals, &mut say).await;
            Err(e)
        }
    }
}

/// Extra time, beyond the connect and check timeouts, that a registration
/// interrupted by a signal gets to settle before the command gives up.
const SETTLE_MARGIN: Duration = Duration::from_secs(5);

/// Reports state and connection changes until a signal arrives (returning
/// its name) or the registration ends on its own (an error).
async fn follow(
    set: &ServerSet,
    registration: &Registration,
    signals: &mut Signals,
    say: &mut Say<'_>,
) -> Result<&'static str, Error> {
    let session = set.session()?;
    let mut health = session.health_changes();
    health.borrow_and_update();
    let mut states = registration.state_changes();
    let first = states.borrow_and_update().clone();
    say.line(format!("{} {}", now(), state_text(&first)));

    let mut health_open = true;
    loop {
        tokio::select! {
            biased;
            sig = signals.recv() => return Ok(sig),
            changed = states.changed() => {
                let state = match changed {
                    Ok(()) => states.borrow_and_update().clone(),
                    Err(_) => RegistrationState::Closed,
                };
                say.line(format!("{} {}", now(), state_text(&state)));
                if state == RegistrationState::Closed {
                    return Err(Error::Failed("the registration ended unexpectedly".into()));
                }
            }
            changed = health.changed(), if health_open => {
                if changed.is_ok() {
                    let h = *health.borrow_and_update();
                    say.line(format!("{} connection: {}", now(), health_text(h)));
                } else {
                    health_open = false;
                }
            }
        }
    }
}

/// Removes the member; a second signal meanwhile gives up at once.
async fn deregister(
    registration: &Registration,
    signals: &mut Signals,
    say: &mut Say<'_>,
) -> Result<(), Error> {
    tokio::select! {
        biased;
        r = registration.close() => {
            r?;
            say.line(format!("{} deregistered", now()));
            Ok(())
        }
        sig = signals.recv() => Err(forced(sig)),
    }
}

fn forced(sig: &str) -> Error {
    Error::Failed(format!(
        "received {sig} again; exiting without waiting for the deregistration \
         (the member goes when the ZooKeeper session ends)"
    ))
}

/// The command's output. A sidecar's job is its registration, not its log:
/// a write that fails (a closed pipe, say) is reported once on stderr and
/// output stops, but the command carries on.
struct Say<'a> {
    out: &'a mut (dyn Write + Send),
    broken: bool,
}

impl Say<'_> {
    fn line(&mut self, text: String) {
        if self.broken {
            return;
        }
        if let Err(e) = writeln!(self.out, "{text}").and_then(|()| self.out.flush()) {
            self.broken = true;
            tracing::warn!(error = %e, "cannot write output; carrying on without it");
            stderr_line(&format!(
                "serversets: cannot write output ({e}); carrying on without it"
            ));
        }
    }
}

fn state_text(s: &RegistrationState) -> String {
    match s {
        RegistrationState::Pending => "pending: connecting or creating the member".into(),
        RegistrationState::Registered(path) => format!("registered {path}"),
        RegistrationState::Unhealthy(why) => format!("unhealthy, not registered: {why}"),
        RegistrationState::Closed => "deregistered".into(),
    }
}
