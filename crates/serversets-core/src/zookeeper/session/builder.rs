//! Settings for a session ([`SessionBuilder`]), and a bare client with the
//! same settings for tools ([`SessionBuilder::connect_client`]).

use std::sync::Mutex;
use std::time::Duration;

use zookeeper_client as zk;

use super::config::{SessionConfig, TlsHandle};
use super::{within_connect_timeout, Session};
use crate::zookeeper::error::{Error, Result};
#[cfg(feature = "tls")]
use crate::zookeeper::security::ZkTls;

/// Builds a [`Session`]; see [`Session::builder`].
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    pub(super) cfg: Result<SessionConfig>,
}

impl SessionBuilder {
    /// The session timeout asked of ZooKeeper (default 10 s). Members vanish
    /// this long after a crashed process stops heart-beating; the server
    /// clamps it to its own minimum and maximum.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.session_timeout = timeout;
        }
        self
    }

    /// How long `watch()` and `register_endpoint()` wait for the first
    /// connection before failing (default 10 s). The session keeps trying
    /// in the background either way.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.connect_timeout = timeout;
        }
        self
    }

    /// Authenticates with ZooKeeper's digest scheme as `user:password`.
    pub fn digest_auth(mut self, user: &str, password: &str) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.digest = Some(format!("{user}:{password}"));
        }
        self
    }

    /// Connects with TLS to the servers' secure client port (every host of
    /// the connect string must be one), as [`ZkTls`](crate::ZkTls) says.
    ///
    /// A handshake that fails (wrong CA, expired certificate, a client
    /// certificate required or refused) makes `watch()` and
    /// `register_endpoint()` fail with [`Error::Tls`] after about a second,
    /// without waiting for the connect timeout.
    ///
    /// ```
    /// use serversets_core::{Error, Session, TlsProblem, ZkTls};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pki = testkit::TestPki::generate()?;
    /// # let zk = testkit::ZkCluster::start(testkit::ZkOptions {
    /// #     tls: Some(testkit::ZkTls::new(&pki)),
    /// #     ..Default::default()
    /// # })?;
    /// # let zookeepers = zk.secure_connect_string().unwrap_or_default();
    /// # let wrong_ca = std::fs::read(pki.other_ca_pem())?;
    /// let session = Session::builder([zookeepers]).tls(ZkTls::ca_pem(wrong_ca)?).build()?;
    /// match session.wait_connected().await {
    ///     Err(Error::Tls { problem: TlsProblem::UnknownIssuer, .. }) => {}
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: ZkTls) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.tls = Some(tls);
        }
        self
    }

    /// Logs in with SASL DIGEST-MD5 (a JAAS `DigestLoginModule` user on the
    /// server), next to or instead of [`digest_auth`](Self::digest_auth).
    /// Nodes created with creator ACLs then belong to `sasl:<user>`.
    ///
    /// A wrong user or password makes `watch()` and `register_endpoint()`
    /// fail at once with [`Error::SaslAuthFailed`].
    ///
    /// ```
    /// use serversets_core::{Error, Session};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let zk = testkit::ZkCluster::start(testkit::ZkOptions {
    /// #     sasl: Some(testkit::ZkSasl::user("app", "s3cret")),
    /// #     ..Default::default()
    /// # })?;
    /// # let zookeepers = [zk.connect_string()];
    /// let session = Session::builder(zookeepers.clone()).sasl_digest_md5("app", "s3cret").build()?;
    /// session.wait_connected().await?;
    ///
    /// let wrong = Session::builder(zookeepers).sasl_digest_md5("app", "guess").build()?;
    /// assert!(matches!(wrong.wait_connected().await, Err(Error::SaslAuthFailed { .. })));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sasl-digest-md5")]
    pub fn sasl_digest_md5(mut self, user: &str, password: &str) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.sasl = Some((user.to_string(), password.to_string()));
        }
        self
    }

    pub(crate) fn config(self) -> Result<SessionConfig> {
        self.cfg
    }

    /// Connects a bare zookeeper-client [`Client`](zk::Client) with these
    /// servers and settings (TLS, SASL, digest), for tools that read znodes
    /// this crate does not serve. Not shared, not supervised: the client is
    /// the caller's. Retries until the connect timeout, and fails early as
    /// [`Session::wait_connected`] does.
    ///
    /// # Errors
    ///
    /// As [`Session::wait_connected`], plus [`Error::ZooKeeper`] with
    /// `AuthFailed` when the server refuses the credentials.
    ///
    /// ```
    /// use serversets_core::Session;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let zk = testkit::ZkCluster::standalone()?;
    /// let client = Session::builder([zk.connect_string()]).connect_client().await?;
    /// assert!(client.list_children("/").await?.contains(&"zookeeper".to_string()));
    /// # Ok(()) }
    /// ```
    pub async fn connect_client(self) -> Result<zk::Client> {
        let cfg = self.cfg?;
        #[cfg(feature = "tls")]
        let tls = match &cfg.tls {
            Some(tls) => Some(TlsHandle::new(tls)?),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls: Option<TlsHandle> = None;
        // The last failure, shared with the attempts below.
        let last = Mutex::new(None);
        let attempts = async {
            loop {
                let connector = cfg.connector(tls.as_ref()).with_fail_eagerly();
                match cfg.connect(connector).await {
                    Ok(client) => return Ok(client),
                    Err(zk::Error::AuthFailed) => {
                        return Err(match cfg.sasl_user() {
                            Some(user) => Error::SaslAuthFailed {
                                hosts: cfg.hosts().to_string(),
                                user: user.to_string(),
                            },
                            None => Error::zk("authenticate to", "/", zk::Error::AuthFailed),
                        })
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "ZooKeeper connection attempt failed");
                        *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        within_connect_timeout(&cfg, attempts, || {
            last.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
        .await
    }

    /// Starts the session's supervisor on the current tokio runtime. Returns
    /// at once; the first connection is made in the background.
    ///
    /// # Errors
    ///
    /// [`Error::NoZooKeeperHosts`] when no server was given,
    /// [`Error::NoRuntime`] outside a tokio runtime, and
    /// [`Error::TlsConfig`] when the TLS files cannot be used.
    pub fn build(self) -> Result<Session> {
        Session::start(self.cfg?)
    }
}
