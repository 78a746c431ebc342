//! Turning the global options into a server set (through core) or a plain
//! ZooKeeper client (for `ls` and `dump`, which read znodes core does not
//! serve).

use std::time::Duration;

use serversets_core::zookeeper_client as zk;
use serversets_core::{AclPolicy, Environment, ServerSet, ServerSetBuilder, Session, ZkTls};

use crate::args::GlobalArgs;
use crate::error::{usage, Error};
use crate::zkconnect::ZkConnect;

/// Applies the session options of `$g` (timeouts, credentials, TLS) to
/// `$builder`, a `ServerSetBuilder` or a `SessionBuilder`: two types that
/// spell these options alike. Evaluates to the builder, or returns a usage
/// error from the enclosing function.
macro_rules! with_session_options {
    ($builder:expr, $g:expr) => {{
        let g: &GlobalArgs = $g;
        let mut builder = $builder
            .session_timeout(g.session_timeout)
            .connect_timeout(g.connect_timeout);
        if let Some((user, password)) = g.digest.as_deref().and_then(|d| d.split_once(':')) {
            builder = builder.digest_auth(user, password);
        }
        if let Some(tls) = tls(g)? {
            builder = builder.tls(tls);
        }
        if let Some((user, password)) = sasl(g)? {
            builder = builder.sasl_digest_md5(&user, &password);
        }
        builder
    }};
}

/// The `--zk` value, or a usage error naming both ways to give it.
pub(crate) fn zk(g: &GlobalArgs) -> Result<&ZkConnect, Error> {
    g.zk.as_ref()
        .ok_or_else(|| usage("no ZooKeeper servers given: use --zk SERVERS or set SERVERSETS_ZK"))
}

/// A builder for the set named by `--path` or `--env/--service`, with the
/// session options applied. Does not connect.
pub(crate) fn set_builder(g: &GlobalArgs) -> Result<ServerSetBuilder, Error> {
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
    Ok(with_session_options!(builder, g))
}

/// The TLS settings of `--tls-ca`, `--tls-cert` and `--tls-key`; a file
/// that cannot be used is a usage error.
fn tls(g: &GlobalArgs) -> Result<Option<ZkTls>, Error> {
    let Some(ca) = &g.tls_ca else {
        if g.tls_cert.is_some() || g.tls_key.is_some() {
            return Err(usage("--tls-cert and --tls-key need --tls-ca FILE"));
        }
        return Ok(None);
    };
    let bad = |e: serversets_core::Error| usage(e.to_string());
    let mut tls = ZkTls::ca_file(ca).map_err(bad)?;
    if let (Some(cert), Some(key)) = (&g.tls_cert, &g.tls_key) {
        tls = tls.client_cert_files(cert, key).map_err(bad)?;
    }
    Ok(Some(tls))
}

/// `--sasl-user` with its password from `SERVERSETS_ZK_SASL_PASSWORD` (never
/// a flag: it would show in `ps`).
fn sasl(g: &GlobalArgs) -> Result<Option<(String, String)>, Error> {
    let Some(user) = &g.sasl_user else {
        return Ok(None);
    };
    match std::env::var("SERVERSETS_ZK_SASL_PASSWORD") {
        Ok(password) => Ok(Some((user.clone(), password))),
        Err(_) => Err(usage(
            "--sasl-user needs the password in the SERVERSETS_ZK_SASL_PASSWORD variable",
        )),
    }
}

/// True when the options authenticate: `--digest`, `--sasl-user` or a TLS
/// client certificate.
fn has_credentials(g: &GlobalArgs) -> bool {
    g.digest.is_some() || g.sasl_user.is_some() || g.tls_cert.is_some()
}

/// A session builder with the global options (servers, timeouts,
/// credentials, TLS).
fn session_builder(g: &GlobalArgs) -> Result<serversets_core::SessionBuilder, Error> {
    Ok(with_session_options!(
        Session::builder([zk(g)?.to_string()]),
        g
    ))
}

/// The set named by the global options, with open ACLs.
pub(crate) fn server_set(g: &GlobalArgs) -> Result<ServerSet, Error> {
    Ok(set_builder(g)?.build()?)
}

/// The set's path without connecting (checks the options the same way).
pub(crate) fn set_path(g: &GlobalArgs) -> Result<String, Error> {
    Ok(server_set(g)?.path().to_string())
}

/// The ACL policy for `--acl`, refusing creator-only ACLs without
/// credentials (ZooKeeper would reject the create with INVALIDACL). No
/// `--acl` means creator-read with credentials and open without, as in the
/// library.
pub(crate) fn acl_policy(
    acl: impl Into<Option<crate::args::AclArg>>,
    g: &GlobalArgs,
) -> Result<AclPolicy, Error> {
    use crate::args::AclArg;
    match acl.into() {
        None if has_credentials(g) => Ok(AclPolicy::CreatorAllWorldRead),
        None | Some(AclArg::Open) => Ok(AclPolicy::Open),
        Some(AclArg::Creator | AclArg::CreatorRead) if !has_credentials(g) => Err(usage(
            "--acl creator and creator-read need credentials: --digest USER:PASSWORD (or SERVERSETS_ZK_DIGEST), --sasl-user USER or --tls-cert FILE",
        )),
        Some(AclArg::Creator) => Ok(AclPolicy::CreatorAll),
        Some(AclArg::CreatorRead) => Ok(AclPolicy::CreatorAllWorldRead),
    }
}

/// The ACLs of a znode written with `--acl`, refused as [`acl_policy`] does.
pub(crate) fn acls(
    acl: Option<crate::args::AclArg>,
    g: &GlobalArgs,
) -> Result<Vec<zk::Acl>, Error> {
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

/// A plain ZooKeeper client with the global options (TLS, SASL, digest),
/// retrying until the connect timeout; the error names the servers tried
/// and the last reason, or at once what no retry can change (a TLS
/// handshake refused, a SASL login refused).
pub(crate) async fn raw_client(g: &GlobalArgs) -> Result<zk::Client, Error> {
    match session_builder(g)?.connect_client().await {
        Ok(client) => Ok(client),
        Err(serversets_core::Error::ZooKeeper {
            source: zk::Error::AuthFailed,
            ..
        }) => Err(Error::Failed(format!(
            "ZooKeeper at {} refused the --digest credentials",
            zk(g)?.servers_text()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Adds what a plain TCP connect to each server says to an "unreachable"
/// error, so the message tells a refused port from a silent machine from a
/// server that accepts connections but opens no session (no quorum).
pub(crate) async fn explain_unreachable(e: Error, zk: &ZkConnect) -> Error {
    let Error::Unreachable {
        servers,
        timeout,
        reason,
    } = e
    else {
        return e;
    };
    if reason == zk::Error::NoAuth.to_string() {
        // Connected, but the first read of the set was refused.
        return Error::Failed(
            "not allowed to read the server set (ZooKeeper ACLs; try --digest)".into(),
        );
    }
    let mut problems = Vec::new();
    for server in zk.servers() {
        let connect = tokio::net::TcpStream::connect((server.host(), server.port()));
        match tokio::time::timeout(Duration::from_millis(500), connect).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems.push(format!("{server}: {e}")),
            Err(_) => problems.push(format!("{server}: no answer to a TCP connect within 500ms")),
        }
    }
    let reason = if problems.is_empty() {
        format!("{reason} (every server accepts TCP connections)")
    } else {
        problems.join("; ")
    };
    Error::Unreachable {
        servers,
        timeout,
        reason,
    }
}

/// A ZooKeeper error on `path` as a one-line failure.
pub(crate) fn zk_failed(op: &str, path: &str, e: zk::Error) -> Error {
    match e {
        zk::Error::NoAuth => Error::Failed(format!(
            "not allowed to {op} {path} (ZooKeeper ACLs; try --digest)"
        )),
        source => Error::ZooKeeper {
            op: op.to_string(),
            path: path.to_string(),
            source,
        },
    }
}
