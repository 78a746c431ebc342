//! A server set: a namespace in ZooKeeper plus the session that reaches it.

use std::sync::Arc;
use std::time::Duration;

use zookeeper_client as zk;

#[cfg(doc)]
use crate::zookeeper::error::Error;
use crate::zookeeper::error::Result;
use crate::zookeeper::namespace::{
    check_env, check_service, default_path, validate_path, Environment, PathFn,
};
use crate::zookeeper::registration::{Ping, Registration, RegistrationBuilder};
#[cfg(feature = "tls")]
use crate::zookeeper::security::ZkTls;
use crate::zookeeper::session::{Session, SessionBuilder, SessionConfig};
use crate::zookeeper::watch::{Watch, WatchBuilder};

/// Who may touch the znodes this library creates.
///
/// Without a policy set on the builder, a set whose session has credentials
/// (digest, SASL or a TLS client certificate) uses
/// [`CreatorAllWorldRead`](AclPolicy::CreatorAllWorldRead), and one without
/// uses [`Open`](AclPolicy::Open), as every other writer of server sets does.
///
/// ```
/// use serversets_core::{AclPolicy, Environment, ServerSet};
///
/// let open = ServerSet::new(Environment::Test, "svc", ["zk1:2181"])?;
/// assert_eq!(open.acl_policy(), &AclPolicy::Open);
///
/// let owned = ServerSet::builder(Environment::Test, "svc", ["zk1:2181"])
///     .digest_auth("deployer", "s3cret")
///     .build()?;
/// assert_eq!(owned.acl_policy(), &AclPolicy::CreatorAllWorldRead);
/// # Ok::<(), serversets_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AclPolicy {
    /// `world:anyone` with all permissions: what Finagle, commons and
    /// go.serversets write; the default without credentials.
    #[default]
    Open,
    /// Only the creating identity (needs credentials: digest, SASL or a TLS
    /// client certificate); others can neither read nor write.
    CreatorAll,
    /// The creator may do anything; everyone may read (so watchers without
    /// credentials still see members). The default with credentials.
    CreatorAllWorldRead,
    /// Exactly these ACLs.
    Custom(Vec<zk::Acl>),
}

impl AclPolicy {
    pub(crate) fn acls(&self) -> Vec<zk::Acl> {
        match self {
            AclPolicy::Open => zk::Acls::anyone_all().to_vec(),
            AclPolicy::CreatorAll => zk::Acls::creator_all().to_vec(),
            AclPolicy::CreatorAllWorldRead => {
                let mut acls = zk::Acls::creator_all().to_vec();
                acls.extend(zk::Acls::anyone_read().iter().cloned());
                acls
            }
            AclPolicy::Custom(acls) => acls.clone(),
        }
    }
}

pub(crate) struct SetInner {
    pub(crate) path: String,
    pub(crate) acls: Vec<zk::Acl>,
    /// The policy `acls` comes from, for [`ServerSet::acl_policy`].
    policy: AclPolicy,
    session_cfg: SessionConfig,
    explicit_session: Option<Session>,
}

/// A server set: the ZooKeeper path where members of one service register,
/// and the settings to reach it. Creating one does not connect; the first
/// [`register_endpoint`](ServerSet::register_endpoint) or
/// [`watch`](ServerSet::watch) does, through a session shared with every
/// other server set of the process that uses the same ZooKeeper settings.
///
/// ```
/// use serversets_core::{Environment, ServerSet, Watcher};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let zk = testkit::ZkCluster::standalone()?; // a real ZooKeeper for this example
/// # let zookeepers = [zk.connect_string()];
/// let set = ServerSet::new(Environment::Staging, "service_name", zookeepers)?;
/// assert_eq!(set.path(), "/discovery/staging/service_name");
///
/// // A server announces itself...
/// let registration = set.register_endpoint("10.0.0.3", 31781, None).await?;
/// // ...and a client follows the set.
/// let watch = set.watch().await?;
/// for member in &watch.snapshot() {
///     assert_eq!(member.addr().to_string(), "10.0.0.3:31781");
/// }
/// registration.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServerSet {
    pub(crate) inner: Arc<SetInner>,
}

impl ServerSet {
    /// The set `/discovery/<env>/<service>` on these ZooKeeper servers, with
    /// default settings. A service name that is empty or contains `/` is an
    /// error.
    ///
    /// ```
    /// use serversets_core::{Environment, Error, ServerSet};
    /// assert!(matches!(
    ///     ServerSet::new(Environment::Test, "a/b", ["localhost:2181"]),
    ///     Err(Error::InvalidServiceName(_))
    /// ));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ServerSetBuilder::build`].
    pub fn new<I, S>(env: Environment, service: &str, zookeepers: I) -> Result<ServerSet>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ServerSet::builder(env, service, zookeepers).build()
    }

    /// A builder for the set `/discovery/<env>/<service>` (path, session and
    /// ACL settings can be changed on it).
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_core::{Environment, ServerSet};
    ///
    /// let set = ServerSet::builder(Environment::Production, "users", ["zk1:2181", "zk2:2181/chroot"])
    ///     .base_path("/services")
    ///     .session_timeout(Duration::from_secs(6))
    ///     .build()?;
    /// assert_eq!(set.path(), "/services/prod/users");
    ///
    /// let aurora = ServerSet::builder(Environment::Production, "hello", ["zk1:2181"])
    ///     .path_fn(|env, svc| format!("/aurora/www-data/{env}/{svc}"))
    ///     .build()?;
    /// assert_eq!(aurora.path(), "/aurora/www-data/prod/hello");
    /// # Ok::<(), serversets_core::Error>(())
    /// ```
    pub fn builder<I, S>(env: Environment, service: &str, zookeepers: I) -> ServerSetBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ServerSetBuilder {
            target: Target::Named {
                env,
                service: service.to_string(),
                base: "/discovery".into(),
                path_fn: None,
            },
            session: Session::builder(zookeepers),
            explicit_session: None,
            acls: None,
        }
    }

    /// A builder for a set at an explicit path, such as Aurora's
    /// `/aurora/<role>/<env>/<job>`.
    ///
    /// ```
    /// use serversets_core::ServerSet;
    /// let set = ServerSet::at_path("/aurora/www-data/prod/hello", ["zk1:2181"]).build()?;
    /// assert_eq!(set.path(), "/aurora/www-data/prod/hello");
    /// assert!(ServerSet::at_path("relative/path", ["zk1:2181"]).build().is_err());
    /// # Ok::<(), serversets_core::Error>(())
    /// ```
    pub fn at_path<I, S>(path: &str, zookeepers: I) -> ServerSetBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ServerSetBuilder {
            target: Target::Path(path.to_string()),
            session: Session::builder(zookeepers),
            explicit_session: None,
            acls: None,
        }
    }

    /// The ZooKeeper path of the set (relative to any chroot).
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The ACL policy of the znodes this set creates: the one given to the
    /// builder, or the default for its credentials (see [`AclPolicy`]).
    pub fn acl_policy(&self) -> &AclPolicy {
        &self.inner.policy
    }

    /// The session this set uses, started on first use.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime when the session has to
    /// be started, and [`Error::TlsConfig`] when its TLS files cannot be
    /// used.
    pub fn session(&self) -> Result<Session> {
        match &self.inner.explicit_session {
            Some(s) => Ok(s.clone()),
            None => Session::shared(&self.inner.session_cfg),
        }
    }

    /// Registers a member at `host:port` (go.serversets' `RegisterEndpoint`).
    ///
    /// With a `ping`, the member is registered only while the ping passes:
    /// it runs every second with a one-second timeout; a failure (or a hung
    /// ping) removes the member at once and a later success registers it
    /// again. Use [`registration`](ServerSet::registration) for additional
    /// endpoints, shard, metadata or other ping timings.
    ///
    /// Returns once the member is created (or, with a failing ping, once the
    /// first ping has failed), or an error if ZooKeeper cannot be reached
    /// within the connect timeout.
    ///
    /// # Errors
    ///
    /// As [`RegistrationBuilder::register`].
    pub async fn register_endpoint(
        &self,
        host: &str,
        port: u16,
        ping: Option<Ping>,
    ) -> Result<Registration> {
        let mut b = self.registration(host, port);
        if let Some(ping) = ping {
            b = b.ping(ping);
        }
        b.register().await
    }

    /// A builder for a registration with more detail than
    /// [`register_endpoint`](ServerSet::register_endpoint).
    pub fn registration(&self, host: &str, port: u16) -> RegistrationBuilder {
        RegistrationBuilder::new(self.clone(), host, port)
    }

    /// Starts watching the set with default options: ALIVE members, served on
    /// their service endpoint. Returns once the current members are read, or
    /// an error if ZooKeeper cannot be reached within the connect timeout.
    ///
    /// # Errors
    ///
    /// As [`WatchBuilder::start`].
    pub async fn watch(&self) -> Result<Watch> {
        self.watch_builder().start().await
    }

    /// A builder for a watch serving a named additional endpoint, or one
    /// shard.
    pub fn watch_builder(&self) -> WatchBuilder {
        WatchBuilder::new(self.clone())
    }
}

impl std::fmt::Debug for ServerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSet")
            .field("path", &self.inner.path)
            .field("zookeepers", &self.inner.session_cfg.connect)
            .finish()
    }
}

enum Target {
    Named {
        env: Environment,
        service: String,
        base: String,
        path_fn: Option<PathFn>,
    },
    Path(String),
}

/// Builds a [`ServerSet`]; see [`ServerSet::builder`].
pub struct ServerSetBuilder {
    target: Target,
    session: SessionBuilder,
    explicit_session: Option<Session>,
    /// `None`: the default for the session's credentials.
    acls: Option<AclPolicy>,
}

impl ServerSetBuilder {
    /// The base of the default path (default `/discovery`).
    pub fn base_path(mut self, base: &str) -> Self {
        if let Target::Named { base: b, .. } = &mut self.target {
            *b = base.to_string();
        }
        self
    }

    /// Computes the path from environment and service (go.serversets'
    /// `BaseZnodePath`).
    pub fn path_fn(
        mut self,
        f: impl Fn(&Environment, &str) -> String + Send + Sync + 'static,
    ) -> Self {
        if let Target::Named { path_fn, .. } = &mut self.target {
            *path_fn = Some(Arc::new(f));
        }
        self
    }

    /// See [`SessionBuilder::session_timeout`].
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session = self.session.session_timeout(timeout);
        self
    }

    /// See [`SessionBuilder::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.session = self.session.connect_timeout(timeout);
        self
    }

    /// See [`SessionBuilder::digest_auth`].
    pub fn digest_auth(mut self, user: &str, password: &str) -> Self {
        self.session = self.session.digest_auth(user, password);
        self
    }

    /// See [`SessionBuilder::tls`].
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: ZkTls) -> Self {
        self.session = self.session.tls(tls);
        self
    }

    /// See [`SessionBuilder::sasl_digest_md5`].
    #[cfg(feature = "sasl-digest-md5")]
    pub fn sasl_digest_md5(mut self, user: &str, password: &str) -> Self {
        self.session = self.session.sasl_digest_md5(user, password);
        self
    }

    /// ACLs for the znodes this set creates (members and missing parents).
    /// Without this, [`CreatorAllWorldRead`](AclPolicy::CreatorAllWorldRead)
    /// when the session has credentials and [`Open`](AclPolicy::Open)
    /// otherwise.
    pub fn acls(mut self, acls: AclPolicy) -> Self {
        self.acls = Some(acls);
        self
    }

    /// Uses this session instead of the shared one for these settings (the
    /// ZooKeeper hosts and session options given to this builder are then
    /// ignored).
    pub fn session(mut self, session: Session) -> Self {
        self.explicit_session = Some(session);
        self
    }

    /// Checks everything and builds the set. Does not connect.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidServiceName`], [`Error::InvalidEnvironment`] or
    /// [`Error::InvalidPath`] for a path that cannot be a set, and
    /// [`Error::NoZooKeeperHosts`] when no server is given.
    pub fn build(self) -> Result<ServerSet> {
        let path = match self.target {
            Target::Named {
                env,
                service,
                base,
                path_fn,
            } => {
                check_service(&service)?;
                check_env(&env)?;
                match path_fn {
                    Some(f) => f(&env, &service),
                    None => default_path(&base, &env, &service),
                }
            }
            Target::Path(p) => p,
        };
        validate_path(&path)?;
        let session_cfg = self.session.config()?;
        let credentials = match &self.explicit_session {
            Some(session) => session.config().has_credentials(),
            None => session_cfg.has_credentials(),
        };
        let policy = self.acls.unwrap_or(if credentials {
            AclPolicy::CreatorAllWorldRead
        } else {
            AclPolicy::Open
        });
        Ok(ServerSet {
            inner: Arc::new(SetInner {
                path,
                acls: policy.acls(),
                policy,
                session_cfg,
                explicit_session: self.explicit_session,
            }),
        })
    }
}

impl std::fmt::Debug for ServerSetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSetBuilder").finish_non_exhaustive()
    }
}
