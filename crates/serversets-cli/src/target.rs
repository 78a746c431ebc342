//! Turning the global options into a server set (through core) or a plain
//! ZooKeeper client (for `ls` and `dump`, which read nodes core does not
//! serve).

use std::time::{Duration, Instant};

use serversets_core::zookeeper_client as zk;
use serversets_core::{AclPolicy, Environment, ServerSet, ServerSetBuilder};

use crate::args::GlobalArgs;
use crate::error::{usage, CliError};
use crate::zkconnect::ZkConnect;

/// The `--zk` value, or a usage error naming both ways to give it.
pub(crate) fn zk(g: &GlobalArgs) -> Result<&ZkConnect, CliError> {
    g.zk.as_ref()
        .ok_or_else(|| usage("no ZooKeeper servers given: use --zk HOSTS or set SERVERSETS_ZK"))
}

/// A builder for the set named by `--path` or `--env/--service`, with the
/// session options applied. Does not connect.
pub(crate) fn set_builder(g: &GlobalArgs) -> Result<ServerSetBuilder, CliError> {
    let connect = zk(g)?.to_string();
    let builder = match (&g.path, &g.env, &g.service) {
        (Some(path), None, None) => ServerSet::at_path(path, [connect]),
        (None, Some(env), Some(service)) => {
            let env: Environment = env.parse()?;
            ServerSet::builder(env, service, [connect])
        }
        (Some(_), _, _) => return Err(usage("give either --path or --env/--service, not both")),
        (None, Some(_), None) => return Err(usage("--env needs --service")),
        (None, None, Some(_)) => return Err(usage("--service needs --env")),
        (None, None, None) => {
            return Err(usage(
                "no server set given: use --path PATH or --env ENV --service NAME",
            ))
        }
    };
    let mut builder = builder
        .session_timeout(g.session_timeout)
        .connect_timeout(g.connect_timeout);
    if let Some((user, password)) = g.digest.as_deref().and_then(|d| d.split_once(':')) {
        builder = builder.digest_auth(user, password);
    }
    Ok(builder)
}

/// The set named by the global options, with open ACLs.
pub(crate) fn server_set(g: &GlobalArgs) -> Result<ServerSet, CliError> {
    Ok(set_builder(g)?.build()?)
}

/// The set's path without connecting (checks the options the same way).
pub(crate) fn set_path(g: &GlobalArgs) -> Result<String, CliError> {
    Ok(server_set(g)?.path().to_string())
}

/// The ACL policy for `register --acl`, refusing creator-only ACLs without
/// credentials (ZooKeeper would reject the create with INVALIDACL).
pub(crate) fn acl_policy(acl: crate::args::AclArg, g: &GlobalArgs) -> Result<AclPolicy, CliError> {
    use crate::args::AclArg;
    match acl {
        AclArg::Open => Ok(AclPolicy::Open),
        AclArg::Creator | AclArg::CreatorRead if g.digest.is_none() => Err(usage(
            "--acl creator and creator-read need --digest USER:PASSWORD (or SERVERSETS_ZK_DIGEST)",
        )),
        AclArg::Creator => Ok(AclPolicy::CreatorAll),
        AclArg::CreatorRead => Ok(AclPolicy::CreatorAllWorldRead),
    }
}

/// The ACLs of a node written with `--acl`, refused as [`acl_policy`] does.
pub(crate) fn acls(acl: crate::args::AclArg, g: &GlobalArgs) -> Result<Vec<zk::Acl>, CliError> {
    Ok(match acl_policy(acl, g)? {
        AclPolicy::CreatorAll => zk::Acls::creator_all().to_vec(),
        AclPolicy::CreatorAllWorldRead => {
            let mut acls = zk::Acls::creator_all().to_vec();
            acls.extend(zk::Acls::anyone_read().iter().cloned());
            acls
        }
        AclPolicy::Custom(acls) => acls,
        _ => zk::Acls::anyone_all().to_vec(),
    })
}

/// A plain ZooKeeper client, retrying until the connect timeout; the error
/// names the servers tried and the last reason.
pub(crate) async fn raw_client(g: &GlobalArgs) -> Result<zk::Client, CliError> {
    let zk = zk(g)?;
    let connect = zk.to_string();
    let deadline = Instant::now() + g.connect_timeout;
    let mut last = String::from("no answer");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let mut connector = zk::Client::connector()
            .with_session_timeout(g.session_timeout)
            .with_connection_timeout(g.session_timeout.min(Duration::from_secs(5)))
            .with_fail_eagerly();
        if let Some(digest) = &g.digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        match tokio::time::timeout(remaining, connector.connect(&connect)).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(zk::Error::AuthFailed)) => {
                return Err(CliError::Failed(format!(
                    "ZooKeeper at {} refused the --digest credentials",
                    zk.hosts_text()
                )))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "ZooKeeper connection attempt failed");
                last = e.to_string();
            }
            Err(_) => break,
        }
        let pause =
            Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
    }
    Err(CliError::Unreachable {
        hosts: zk.hosts_text(),
        timeout: g.connect_timeout,
        reason: last,
    })
}

/// Adds what a plain TCP connect to each server says to an "unreachable"
/// error, so the message tells a refused port from a silent host from a
/// server that accepts connections but opens no session (no quorum).
pub(crate) async fn explain_unreachable(e: CliError, zk: &ZkConnect) -> CliError {
    let CliError::Unreachable {
        hosts,
        timeout,
        reason,
    } = e
    else {
        return e;
    };
    if reason == zk::Error::NoAuth.to_string() {
        // Connected, but the first read of the set was refused.
        return CliError::Failed(
            "not allowed to read the server set (ZooKeeper ACLs; try --digest)".into(),
        );
    }
    let mut problems = Vec::new();
    for host in zk.hosts() {
        let connect = tokio::net::TcpStream::connect((host.host(), host.port()));
        match tokio::time::timeout(Duration::from_millis(500), connect).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems.push(format!("{host}: {e}")),
            Err(_) => problems.push(format!("{host}: no answer to a TCP connect within 500ms")),
        }
    }
    let reason = if problems.is_empty() {
        format!("{reason} (every server accepts TCP connections)")
    } else {
        problems.join("; ")
    };
    CliError::Unreachable {
        hosts,
        timeout,
        reason,
    }
}

/// A ZooKeeper error on `path` as a one-line failure.
pub(crate) fn zk_failed(op: &str, path: &str, e: zk::Error) -> CliError {
    CliError::Failed(match e {
        zk::Error::NoAuth => format!("not allowed to {op} {path} (ZooKeeper ACLs; try --digest)"),
        e => format!("cannot {op} {path}: {e}"),
    })
}
