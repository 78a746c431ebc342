//! `serversets register`: a sidecar that keeps a member registered while
//! its health check passes, and removes it on SIGINT/SIGTERM.

use std::io::Write;

use serversets_core::{HostPort, RegistrationState};

use crate::args::{GlobalArgs, RegisterArgs};
use crate::check::Check;
use crate::cmd::watch::health_text;
use crate::duration::show;
use crate::error::CliError;
use crate::signals::Signals;
use crate::target::{acl_policy, set_builder, zk};
use crate::timefmt::now;

pub(crate) async fn run(
    g: &GlobalArgs,
    a: &RegisterArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let addr = HostPort::new(a.host.clone(), a.port).map_err(serversets_core::Error::from)?;
    let check = if a.check_tcp {
        Some(Check::Tcp(addr.clone()))
    } else if let Some(url) = &a.check_http {
        Some(Check::Http(url.clone()))
    } else {
        a.check_cmd.as_ref().map(|cmd| Check::Cmd(cmd.clone()))
    };
    let set = set_builder(g)?.acls(acl_policy(a.acl, g)?).build()?;
    // Before anything is announced: a signal from now on deregisters.
    let mut signals = Signals::install()?;

    let check_text = match &check {
        Some(c) => format!("{c} every {}", show(a.check_interval)),
        None => "none".into(),
    };
    writeln!(
        out,
        "{} registering {addr} in {} on {} (check: {check_text})",
        now(),
        set.path(),
        zk(g)?.hosts_text(),
    )?;
    out.flush()?;

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
    let endpoint = tokio::select! {
        r = builder.register() => r?,
        sig = signals.recv() => {
            writeln!(out, "{} received {sig} before the member was registered; exiting", now())?;
            return Ok(());
        }
    };

    let session = set.session()?;
    let mut health = session.health_changes();
    health.borrow_and_update();
    let mut states = endpoint.state_changes();
    let first = states.borrow_and_update().clone();
    writeln!(out, "{} {}", now(), state_text(&first))?;
    out.flush()?;

    let mut health_open = true;
    loop {
        tokio::select! {
            changed = states.changed() => {
                let state = match changed {
                    Ok(()) => states.borrow_and_update().clone(),
                    Err(_) => RegistrationState::Closed,
                };
                writeln!(out, "{} {}", now(), state_text(&state))?;
                out.flush()?;
                if state == RegistrationState::Closed {
                    return Err(CliError::Failed("the registration ended unexpectedly".into()));
                }
            }
            changed = health.changed(), if health_open => {
                if changed.is_ok() {
                    let h = *health.borrow_and_update();
                    writeln!(out, "{} connection: {}", now(), health_text(h))?;
                    out.flush()?;
                } else {
                    health_open = false;
                }
            }
            sig = signals.recv() => {
                writeln!(out, "{} received {sig}; deregistering", now())?;
                out.flush()?;
                endpoint.close().await?;
                writeln!(out, "{} deregistered", now())?;
                out.flush()?;
                return Ok(());
            }
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
