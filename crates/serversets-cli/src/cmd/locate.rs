//! `serversets locate KEY...`: which server each memcache key maps to, over
//! an explicit `--node` list or the members of a watched set.

use std::io::{BufRead, Write};

use serversets_mcset::{NodeIdentity, Ring, RingKind};

use crate::args::{GlobalArgs, IdentityArg, LocateArgs, RingArg};
use crate::error::{usage, Error};
use crate::target::server_set;

pub(crate) async fn run(
    g: &GlobalArgs,
    a: &LocateArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    let kind = match a.ring {
        RingArg::Ketama => RingKind::Ketama,
        RingArg::GoMcset => RingKind::GoMcset,
    };
    let identity = match a.identity {
        IdentityArg::Finagle => NodeIdentity::Finagle,
        IdentityArg::HostPort => NodeIdentity::HostPort,
    };
    let builder = Ring::builder().kind(kind).identity(identity);
    let ring = if a.node.is_empty() {
        let set = server_set(g)?;
        let mut wb = set.watch_builder();
        if let Some(endpoint) = &a.endpoint {
            wb = wb.endpoint(endpoint);
        }
        if let Some(shard) = a.shard {
            wb = wb.shard(shard);
        }
        let watch = wb.start().await?;
        let snapshot = watch.members();
        if snapshot.is_empty() {
            return Err(Error::Failed(format!(
                "{} has no members to place keys on",
                watch.path()
            )));
        }
        builder.build(snapshot.iter().cloned())
    } else {
        if a.endpoint.is_some() || a.shard.is_some() {
            return Err(usage(
                "--endpoint and --shard apply to a watched set, not to --node lists",
            ));
        }
        builder
            .build_nodes(a.node.iter().cloned())
            .map_err(|e| usage(e.to_string()))?
    };
    let mut locate = |key: &str| -> Result<(), Error> {
        match ring.pick(key) {
            Some(node) => writeln!(out, "{key}\t{}", node.addr())?,
            None => return Err(Error::Failed("no server owns any ring point".into())),
        }
        Ok(())
    };
    for key in &a.keys {
        if key == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(Error::ReadKeys)?;
                let key = line.trim_end_matches('\r');
                if !key.is_empty() {
                    locate(key)?;
                }
            }
        } else {
            locate(key)?;
        }
    }
    out.flush()?;
    Ok(())
}
