//! A session's settings: the connect string, timeouts and credentials, and
//! how they become a zookeeper-client connection. Two server sets with equal
//! settings share one session.

use std::time::Duration;

use zookeeper_client as zk;

use crate::zookeeper::error::{Error, Result};
#[cfg(feature = "tls")]
use crate::zookeeper::security::ZkTls;

/// Connection settings; two server sets with equal settings share a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionConfig {
    /// `host:port,host:port[/chroot]`.
    pub(crate) connect: String,
    pub(crate) session_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Digest credentials, `user:password`.
    pub(crate) digest: Option<String>,
    /// TLS to the servers' secure client port.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<ZkTls>,
    /// SASL DIGEST-MD5 `(user, password)`.
    #[cfg(feature = "sasl-digest-md5")]
    pub(crate) sasl: Option<(String, String)>,
}

impl SessionConfig {
    pub(crate) fn new(hosts: Vec<String>) -> Result<SessionConfig> {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if hosts.is_empty() {
            return Err(Error::NoZooKeeperHosts);
        }
        Ok(SessionConfig {
            connect: hosts.join(","),
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            digest: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "sasl-digest-md5")]
            sasl: None,
        })
    }

    /// Each server as `(host, port)` (IPv6 without brackets; 2181 when no
    /// port is given, as zookeeper-client reads it).
    pub(crate) fn host_ports(&self) -> Vec<(String, u16)> {
        self.hosts()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                let h = h.split_once("://").map_or(h, |(_, rest)| rest);
                let (host, port) = match h.strip_prefix('[') {
                    Some(rest) => match rest.split_once(']') {
                        Some((host, port)) => (host, port.strip_prefix(':')),
                        None => (rest, None),
                    },
                    None => match h.rsplit_once(':') {
                        Some((host, port)) => (host, Some(port)),
                        None => (h, None),
                    },
                };
                let port = port.and_then(|p| p.parse().ok()).unwrap_or(2181);
                (host.to_string(), port)
            })
            .collect()
    }

    /// True when the session authenticates: digest, SASL or a TLS client
    /// certificate (which ZooKeeper's x509 provider makes an identity).
    pub(crate) fn has_credentials(&self) -> bool {
        #[allow(unused_mut)]
        let mut any = self.digest.is_some();
        #[cfg(feature = "tls")]
        {
            any |= self.tls.as_ref().is_some_and(ZkTls::has_client_cert);
        }
        #[cfg(feature = "sasl-digest-md5")]
        {
            any |= self.sasl.is_some();
        }
        any
    }

    /// A zookeeper-client connector with these credentials and timeouts.
    pub(super) fn connector(&self, tls: Option<&TlsHandle>) -> zk::Connector {
        let mut connector = zk::Client::connector()
            .with_session_timeout(self.session_timeout)
            .with_connection_timeout(self.session_timeout.min(Duration::from_secs(5)));
        if let Some(digest) = &self.digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        #[cfg(feature = "sasl-digest-md5")]
        if let Some((user, password)) = &self.sasl {
            connector =
                connector.with_sasl(zk::SaslOptions::digest_md5(user.clone(), password.clone()));
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            connector = connector.with_tls(tls.options());
        }
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        connector
    }

    /// Connects `connector` to the servers, over TLS when configured.
    pub(super) async fn connect(
        &self,
        connector: zk::Connector,
    ) -> std::result::Result<zk::Client, zk::Error> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return connector.secure_connect(&self.connect).await;
        }
        connector.connect(&self.connect).await
    }

    /// True when the session connects with TLS.
    pub(super) fn uses_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        false
    }

    /// The SASL user, for messages.
    pub(super) fn sasl_user(&self) -> Option<&str> {
        #[cfg(feature = "sasl-digest-md5")]
        if let Some((user, _)) = &self.sasl {
            return Some(user);
        }
        None
    }

    /// The hosts, without the chroot, for messages.
    pub(crate) fn hosts(&self) -> &str {
        self.connect.split('/').next().unwrap_or(&self.connect)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn show_host(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The certificates a session's connections use, rotated in place.
#[cfg(feature = "tls")]
pub(super) type TlsHandle = crate::zookeeper::security::TlsRuntime;
#[cfg(not(feature = "tls"))]
pub(super) enum TlsHandle {}
