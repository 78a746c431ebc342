//! The command line, as clap types. Values are checked while parsing, so
//! a malformed address, duration, path or ring name is a usage error
//! (exit 2) before anything connects.

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use serversets_core::vector::{Selector, DRAIN};
use serversets_core::HostPort;
use serversets_mcset::WeightedNode;

use crate::check::HttpUrl;
use crate::duration::{parse_check_interval, parse_duration};
use crate::zkconnect::ZkConnect;

const MAIN_EXAMPLES: &str = "\
Examples:
  export SERVERSETS_ZK=zk1:2181,zk2:2181,zk3:2181
  serversets ls
  serversets watch --env prod --service users
  serversets watch --path /aurora/www-data/prod/hello --endpoint http --json
  serversets dump --env prod --service users
  serversets register --env prod --service users --host 10.0.0.3 --port 8080 --check-http http://127.0.0.1:8080/health
  serversets locate user:42 --ring ketama --node 10.0.1.1:11211 --node 10.0.1.2:11211=2
  serversets drain 10.0.0.3:8080 --env prod --service users
  serversets weights --env prod --service users

Exit codes: 0 success, 1 failure (e.g. ZooKeeper unreachable), 2 usage error.";

const WATCH_EXAMPLES: &str = "\
Examples:
  serversets watch --zk 127.0.0.1:2181 --env prod --service users
  serversets watch --path /discovery/prod/users --endpoint http --shard 3
  serversets watch --env prod --service users --once --json | jq '.[].host'

Text output: the set, then one block per change: time, member count, each
added (+), removed (-) and reweighed (~) member, and connection changes.
Members drained by a Finagle vector_ znode (weight -1.0) are not served and
are reported with !. --json prints each snapshot as one line: an array of
{member, host, port, status, shard, additional_endpoints, metadata, weight};
connection changes then go to stderr.";

const REGISTER_EXAMPLES: &str = "\
Examples:
  serversets register --env prod --service users --host 10.0.0.3 --port 8080
  serversets register --path /discovery/prod/cache --host 10.0.0.3 --port 11211 \\
      --shard 2 --metadata weight=2 --check-tcp
  serversets register --env prod --service web --host 10.0.0.3 --port 8080 \\
      --additional http=10.0.0.3:8081 --check-http http://127.0.0.1:8081/health \\
      --check-interval 2s
  serversets register --env prod --service worker --host 10.0.0.3 --port 9000 \\
      --check-cmd 'test -f /var/run/worker.ready'

Runs until SIGINT or SIGTERM, then removes the member and exits 0. While a
check fails the member is removed; it is registered again when the check
passes. Each transition is printed with its time.";

const LS_EXAMPLES: &str = "\
Examples:
  serversets ls
  serversets ls /aurora
  serversets ls / --zk 127.0.0.1:2181

A znode with member_ children (or with no children at all) is shown as a
server set with its member count; other znodes are shown as directories.";

const DUMP_EXAMPLES: &str = "\
Examples:
  serversets dump --env prod --service users
  serversets dump --path /discovery/prod/users --shard 3 --endpoint http
  serversets dump --env prod --service users --json

Each child is shown with how a watch reads it: member (served, with its
weight), not served (and why: status, shard, endpoint, drained by a vector_
znode), malformed (and why, unusable vector_ znodes included), vector (a
Finagle weight znode, with notes such as integer weights, which Finagle reads
as 1.0), or ignored, followed by its raw data.";

const LOCATE_EXAMPLES: &str = "\
Examples:
  serversets locate user:42 session:abc --env prod --service memcache
  serversets locate user:42 --node 10.0.1.1:11211 --node 10.0.1.2:11211=2
  serversets locate user:42 --ring go-mcset --node 10.0.0.1:11211 --node 10.0.0.2:11211
  cut -f1 keys.txt | serversets locate - --node 10.0.1.1:11211 --node 10.0.1.2:11211

Prints KEY<TAB>HOST:PORT per key. A key of - reads keys from stdin, one per line.";

const WEIGHT_EXAMPLES: &str = "\
Examples:
  serversets weight --env prod --service users --select inet=10.0.0.3:8080 --weight 2
  serversets weight --env prod --service users --select shard=3 --weight 0.5
  serversets weight --path /aurora/www-data/prod/hello --select member=member_0000000007 --weight 1.5
  serversets weight --env prod --service users --select shard=3 --clear

Writes one Finagle vector_ znode holding this selector alone, and in the same
ZooKeeper transaction deletes the znode it replaces: every vector_ znode that
holds exactly one descriptor with the same selector. Vector znodes holding
several descriptors are left alone (their weights still multiply in). A
weight of -1 drains; --clear only deletes. If a replaced znode changes or
goes meanwhile, nothing is written and the command fails (exit 1).";

const DRAIN_EXAMPLES: &str = "\
Examples:
  serversets drain 10.0.0.3:8080 --env prod --service users
  serversets undrain 10.0.0.3:8080 --env prod --service users

drain is `weight --select inet=HOST:PORT --weight -1`: clients stop sending
to the address while its member stays registered. It replaces any weight
set for inet=HOST:PORT by `weight`.";

const UNDRAIN_EXAMPLES: &str = "\
Examples:
  serversets undrain 10.0.0.3:8080 --env prod --service users

Deletes the vector_ znodes that drain inet=HOST:PORT alone (what drain
writes), atomically. The address is then back at weight 1.0. A drain by
another selector (shard=, member=) or inside a znode with several
descriptors is not touched: undrain says so and exits 1.";

const WEIGHTS_EXAMPLES: &str = "\
Examples:
  serversets weights --env prod --service users
  serversets weights --path /discovery/prod/users --json | jq '.members[] | select(.drained)'

Lists the vector_ znodes (descriptors, and notes such as integer weights,
which Finagle reads as 1.0), then the weight of every member and which
descriptors gave it.";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  serversets completions bash > /etc/bash_completion.d/serversets
  serversets completions zsh > \"${fpath[1]}/_serversets\"
  serversets completions fish > ~/.config/fish/completions/serversets.fish";

/// The `serversets` command line.
///
/// ```
/// use clap::Parser;
/// use serversets_cli::{Cli, Command};
///
/// // Global options go before or after the subcommand.
/// let cli = Cli::try_parse_from([
///     "serversets", "--zk", "127.0.0.1:2181", "watch", "--env", "prod", "--service", "users", "--once",
/// ])?;
/// assert!(matches!(cli.command, Command::Watch(ref w) if w.once));
/// assert_eq!(cli.global.service.as_deref(), Some("users"));
/// # Ok::<(), clap::Error>(())
/// ```
#[derive(Debug, Parser)]
#[command(
    name = "serversets",
    version,
    about = "Watch, register and inspect Finagle-compatible server sets on ZooKeeper",
    long_about = "Watch, register and inspect Finagle-compatible server sets on ZooKeeper.\n\n\
        A server set is a ZooKeeper path (by default /discovery/<env>/<service>) whose \
        ephemeral member_ children each describe one live server in the JSON format \
        shared by Finagle, Twitter commons, Aurora and go.serversets.",
    after_help = MAIN_EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// ZooKeeper servers, comma-separated, optionally followed by a chroot
    /// (zk1:2181,zk2:2181/chroot; a missing port means 2181)
    #[arg(
        long,
        global = true,
        env = "SERVERSETS_ZK",
        value_name = "SERVERS",
        value_parser = parse_zk
    )]
    pub zk: Option<ZkConnect>,

    /// Environment of the set: local, staging, prod, test or any name
    /// (the set is /discovery/ENV/SERVICE; needs --service)
    #[arg(long, global = true, value_name = "ENV")]
    pub env: Option<String>,

    /// Service name of the set (needs --env)
    #[arg(long, global = true, value_name = "NAME")]
    pub service: Option<String>,

    /// Full ZooKeeper path of the set, instead of --env/--service
    /// (e.g. /aurora/www-data/prod/hello)
    #[arg(long, global = true, value_name = "PATH", value_parser = parse_set_path)]
    pub path: Option<String>,

    /// ZooKeeper session timeout: how long after this process dies its
    /// registration disappears (the server may clamp it)
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub session_timeout: Duration,

    /// How long to wait for the first ZooKeeper connection before giving up
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Authenticate with ZooKeeper's digest scheme
    #[arg(
        long,
        global = true,
        env = "SERVERSETS_ZK_DIGEST",
        hide_env_values = true,
        value_name = "USER:PASSWORD",
        value_parser = parse_digest
    )]
    pub digest: Option<String>,

    /// Connect with TLS, trusting the CA certificates in this PEM file (the
    /// --zk ports must be ZooKeeper's secureClientPort)
    #[arg(long, global = true, env = "SERVERSETS_ZK_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// Client certificate (PEM) for mutual TLS (needs --tls-ca and --tls-key)
    #[arg(
        long,
        global = true,
        env = "SERVERSETS_ZK_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The client certificate's private key (PEM)
    #[arg(
        long,
        global = true,
        env = "SERVERSETS_ZK_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    /// Log in with SASL DIGEST-MD5 as USER; the password is read from
    /// SERVERSETS_ZK_SASL_PASSWORD
    #[arg(
        long,
        global = true,
        env = "SERVERSETS_ZK_SASL_USER",
        value_name = "USER"
    )]
    pub sasl_user: Option<String>,

    /// Log what the library does to stderr (-v info, -vv debug; RUST_LOG overrides)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the members of a set, then every change as it happens
    #[command(after_help = WATCH_EXAMPLES)]
    Watch(WatchArgs),
    /// Register a member and keep it registered while a health check passes (a sidecar)
    #[command(after_help = REGISTER_EXAMPLES)]
    Register(RegisterArgs),
    /// List the server sets under a path, as a tree with member counts
    #[command(after_help = LS_EXAMPLES)]
    Ls(LsArgs),
    /// Show every child of a set with its raw data and how a watch reads it
    #[command(after_help = DUMP_EXAMPLES)]
    Dump(DumpArgs),
    /// Print which server each memcache key maps to
    #[command(after_help = LOCATE_EXAMPLES)]
    Locate(LocateArgs),
    /// Set the weight of some members with a Finagle vector_ znode (replacing the previous one)
    #[command(after_help = WEIGHT_EXAMPLES)]
    Weight(WeightArgs),
    /// Stop clients sending to HOST:PORT while it stays registered (weight -1)
    #[command(after_help = DRAIN_EXAMPLES)]
    Drain(DrainArgs),
    /// Remove the drain of HOST:PORT
    #[command(after_help = UNDRAIN_EXAMPLES)]
    Undrain(UndrainArgs),
    /// List the vector_ znodes of a set and the resulting weight of every member
    #[command(after_help = WEIGHTS_EXAMPLES)]
    Weights(WeightsArgs),
    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
}

/// `serversets watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Serve each member's named additional endpoint (members without it are skipped)
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Only members of this shard
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shard: Option<i32>,
    /// Print each snapshot as one JSON line
    #[arg(long)]
    pub json: bool,
    /// Print the current members and exit
    #[arg(long)]
    pub once: bool,
    /// Serve metrics (Prometheus text over HTTP) on this address
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_listen)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// `serversets register`.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("check").multiple(false))]
pub struct RegisterArgs {
    /// Host to announce (name or IP address)
    #[arg(long, value_name = "HOST", value_parser = parse_host)]
    pub host: String,
    /// Port to announce (1-65535)
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// An additional named endpoint (repeatable)
    #[arg(long, value_name = "NAME=HOST:PORT", value_parser = parse_additional)]
    pub additional: Vec<(String, HostPort)>,
    /// Shard id to announce
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shard: Option<i32>,
    /// A metadata entry (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_metadata)]
    pub metadata: Vec<(String, String)>,
    /// Healthy while a TCP connection to HOST:PORT succeeds
    #[arg(long, group = "check")]
    pub check_tcp: bool,
    /// Healthy while GET URL answers 2xx (http:// only)
    #[arg(long, group = "check", value_name = "URL")]
    pub check_http: Option<HttpUrl>,
    /// Healthy while `sh -c CMD` exits 0
    #[arg(long, group = "check", value_name = "CMD")]
    pub check_cmd: Option<String>,
    /// How often the check runs (at least 10ms)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_check_interval)]
    pub check_interval: Duration,
    /// How long one check may take before it counts as failed
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// ACL of the member znode and of any parent this creates (creator and
    /// creator-read need credentials; default: creator-read with
    /// --digest, --sasl-user or --tls-cert, open without)
    #[arg(long, value_enum)]
    pub acl: Option<AclArg>,
    /// Serve metrics (Prometheus text over HTTP) on this address
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_listen)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// ACL choices for `register --acl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AclArg {
    /// world:anyone, all permissions (what Finagle and go.serversets write).
    Open,
    /// Only the authenticated creator.
    Creator,
    /// The creator may do anything, anyone may read.
    CreatorRead,
}

/// `serversets ls`.
#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Where to start (absolute)
    #[arg(value_name = "PATH", default_value = "/discovery", value_parser = parse_any_path)]
    pub root: String,
}

/// `serversets dump`.
#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// Judge members as a watch serving this named endpoint would
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Judge members as a watch of this shard would
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shard: Option<i32>,
    /// One JSON object per child, one per line
    #[arg(long)]
    pub json: bool,
}

/// `serversets weight`.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("change").required(true).multiple(false))]
pub struct WeightArgs {
    /// Which members: inet=HOST:PORT, member=NAME (a member_ znode) or shard=N
    #[arg(long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub select: Selector,
    /// Their weight: 0 or more (1.0 is the default share), or -1 to drain
    #[arg(
        long,
        group = "change",
        value_name = "W",
        allow_negative_numbers = true,
        value_parser = parse_weight
    )]
    pub weight: Option<f64>,
    /// Remove the weight set for this selector instead (back to 1.0)
    #[arg(long, group = "change")]
    pub clear: bool,
    /// ACL of the vector znode (default: creator-read with credentials, open
    /// without; creator and creator-read need credentials)
    #[arg(long, value_enum)]
    pub acl: Option<AclArg>,
}

/// `serversets drain`.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// The address to drain, as members announce it
    #[arg(value_name = "HOST:PORT", value_parser = parse_addr)]
    pub addr: HostPort,
    /// ACL of the vector znode (default: creator-read with credentials, open
    /// without; creator and creator-read need credentials)
    #[arg(long, value_enum)]
    pub acl: Option<AclArg>,
}

/// `serversets undrain`.
#[derive(Debug, Clone, Args)]
pub struct UndrainArgs {
    /// The drained address
    #[arg(value_name = "HOST:PORT", value_parser = parse_addr)]
    pub addr: HostPort,
}

/// `serversets weights`.
#[derive(Debug, Clone, Args)]
pub struct WeightsArgs {
    /// Weigh members as a watch serving this named endpoint would
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Weigh members as a watch of this shard would
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shard: Option<i32>,
    /// One JSON object (vectors and members)
    #[arg(long)]
    pub json: bool,
}

/// `serversets locate`.
#[derive(Debug, Clone, Args)]
pub struct LocateArgs {
    /// Keys to locate (- reads keys from stdin, one per line)
    #[arg(value_name = "KEY", required = true)]
    pub keys: Vec<String>,
    /// Hash ring: ketama (Finagle, libmemcached) or go-mcset (go.serversets)
    #[arg(long, value_enum, default_value_t = RingArg::Ketama)]
    pub ring: RingArg,
    /// Use these servers instead of a watched set (repeatable; no ZooKeeper needed)
    #[arg(long, value_name = "HOST:PORT[=WEIGHT]", value_parser = parse_node)]
    pub node: Vec<WeightedNode>,
    /// Ketama node names: finagle (the shard id when present, else the
    /// address) or host-port (the address, as libmemcached)
    #[arg(long, value_enum, default_value_t = IdentityArg::Finagle)]
    pub identity: IdentityArg,
    /// With a watched set: use each member's named additional endpoint
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// With a watched set: only members of this shard
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shard: Option<i32>,
}

/// Ring choices for `locate --ring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RingArg {
    /// Finagle / libmemcached ketama.
    Ketama,
    /// go.serversets' mcset ring.
    GoMcset,
}

/// Node naming for `locate --identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdentityArg {
    /// The shard id when present, else the address (host, or host:port
    /// when the port is not 11211).
    Finagle,
    /// The address (host, or host:port when the port is not 11211),
    /// ignoring shards.
    HostPort,
}

/// `serversets completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

fn parse_zk(s: &str) -> Result<ZkConnect, String> {
    s.parse()
}

fn parse_set_path(s: &str) -> Result<String, String> {
    serversets_core::validate_path(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_any_path(s: &str) -> Result<String, String> {
    if s == "/" {
        return Ok(s.to_string());
    }
    parse_set_path(s)
}

fn parse_host(s: &str) -> Result<String, String> {
    HostPort::new(s, 1)
        .map(|_| s.to_string())
        .map_err(|_| format!("invalid host {s:?}"))
}

fn parse_additional(s: &str) -> Result<(String, HostPort), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=HOST:PORT"))?;
    if name.is_empty() {
        return Err(format!("{s:?} has an empty endpoint name"));
    }
    let addr = addr.parse::<HostPort>().map_err(|e| e.to_string())?;
    Ok((name.to_string(), addr))
}

fn parse_metadata(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_digest(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((user, _)) if !user.is_empty() => Ok(s.to_string()),
        _ => Err("expected USER:PASSWORD".into()),
    }
}

/// `inet=HOST:PORT`, `member=member_NNN` or `shard=N`, as Finagle reads
/// them. The address is written back as members announce it, so the
/// selector compares equal to theirs.
fn parse_selector(s: &str) -> Result<Selector, String> {
    let Some((kind, arg)) = s.split_once('=') else {
        return Err(format!(
            "{s:?} is not a selector: use inet=HOST:PORT, member=NAME or shard=N"
        ));
    };
    match kind {
        "inet" => {
            let addr = arg.parse::<HostPort>().map_err(|e| e.to_string())?;
            Ok(Selector::Inet(addr.to_string()))
        }
        "member" => {
            if !arg.starts_with("member_") || arg.len() == "member_".len() || arg.contains('/') {
                return Err(format!(
                    "{arg:?} is not a member znode name (member_0000000007, as `watch` and `dump` show)"
                ));
            }
            Ok(Selector::Member(arg.to_string()))
        }
        "shard" => arg
            .parse::<i32>()
            .map(Selector::Shard)
            .map_err(|_| format!("shard {arg:?} is not a number")),
        _ => Err(format!(
            "unknown selector {kind:?}: use inet=HOST:PORT, member=NAME or shard=N"
        )),
    }
}

/// A weight as Finagle applies it: finite and not negative, or exactly -1
/// (drain).
fn parse_weight(s: &str) -> Result<f64, String> {
    let w: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !w.is_finite() || (w < 0.0 && w != DRAIN) {
        return Err(format!(
            "{s} is neither a weight (0 or more) nor -1 (drain)"
        ));
    }
    Ok(w)
}

/// An address to listen on: `IP:PORT`, or a name that resolves (the
/// first address it resolves to), such as `localhost:9100`.
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("expected HOST:PORT to listen on: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s} resolves to no address"))
}

fn parse_addr(s: &str) -> Result<HostPort, String> {
    s.parse::<HostPort>().map_err(|e| e.to_string())
}

fn parse_node(s: &str) -> Result<WeightedNode, String> {
    // The address error is the source of `RingError::InvalidAddress`, not
    // part of its message: print both.
    s.parse::<WeightedNode>()
        .map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_go_anywhere() {
        let a = Cli::try_parse_from(["serversets", "--path", "/a/b", "dump"]).unwrap();
        let b = Cli::try_parse_from(["serversets", "dump", "--path", "/a/b"]).unwrap();
        assert_eq!(a.global.path, b.global.path);
        assert_eq!(a.global.session_timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_are_parse_errors() {
        let bad: &[&[&str]] = &[
            &["serversets", "--path", "rel/x", "dump"],
            &["serversets", "--zk", "h:0", "dump"],
            &["serversets", "locate", "k", "--ring", "jump"],
            &["serversets", "locate", "k", "--node", "h"],
            &["serversets", "register", "--host", "h", "--port", "0"],
            &["serversets", "register", "--host", "a b", "--port", "1"],
            &[
                "serversets",
                "register",
                "--host",
                "h",
                "--port",
                "1",
                "--check-tcp",
                "--check-cmd",
                "true",
            ],
            &[
                "serversets",
                "register",
                "--host",
                "h",
                "--port",
                "1",
                "--additional",
                "http",
            ],
            &[
                "serversets",
                "register",
                "--host",
                "h",
                "--port",
                "1",
                "--check-http",
                "https://x/",
            ],
            &["serversets", "watch", "--session-timeout", "0s"],
            &["serversets", "ls", "relative"],
        ];
        for args in bad {
            let err = Cli::try_parse_from(*args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn register_values() {
        let cli = Cli::try_parse_from([
            "serversets",
            "register",
            "--host",
            "10.0.0.3",
            "--port",
            "8080",
            "--additional",
            "http=10.0.0.3:8081",
            "--metadata",
            "weight=2",
            "--shard",
            "-1",
            "--check-http",
            "http://127.0.0.1:8081/health",
        ])
        .unwrap();
        let Command::Register(r) = cli.command else {
            panic!("register")
        };
        assert_eq!(r.additional[0].0, "http");
        assert_eq!(r.metadata, vec![("weight".to_string(), "2".to_string())]);
        assert_eq!(r.shard, Some(-1));
        assert_eq!(r.check_interval, Duration::from_secs(1));
        assert!(r.check_http.is_some() && !r.check_tcp);
    }
}
