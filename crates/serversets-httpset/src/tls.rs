//! HTTPS through rustls (the `rustls` feature): hyper-rustls under each
//! member's pool, offering HTTP/2 and HTTP/1.1 by ALPN.

use hyper_util::client::legacy::connect::HttpConnector;

use crate::builder::HttpSetBuilder;

/// The connector [`HttpSetBuilder::rustls`] installs: hyper-rustls over the
/// built-in TCP connector.
pub type RustlsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

impl HttpSetBuilder<HttpConnector> {
    /// Sends every request over HTTPS with this rustls configuration (its
    /// trusted roots, and a client certificate if it has one), and speaks
    /// HTTP/2 to members whose server picks `h2` by ALPN, HTTP/1.1 to the
    /// others. Each member's certificate must name the member's host as
    /// announced (an IP address needs an IP subjectAltName); see
    /// [`rustls_for_name`](HttpSetBuilder::rustls_for_name) for members announced
    /// by address behind one service certificate.
    ///
    /// The TCP connector keeps the settings made before this call
    /// ([`connect_timeout`](HttpSetBuilder::connect_timeout), `TCP_NODELAY`). Any
    /// ALPN list in `config` is replaced.
    ///
    /// ```
    /// use rustls::pki_types::{pem::PemObject, CertificateDer};
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::HttpSet;
    ///
    /// let mut roots = rustls::RootCertStore::empty();
    /// # let pki = testkit::TestPki::generate()?;
    /// # let ca_pem = std::fs::read(pki.ca_pem())?;
    /// for cert in CertificateDer::pem_slice_iter(&ca_pem) {
    ///     roots.add(cert?)?;
    /// }
    /// let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    /// let set = HttpSet::builder().rustls(tls).build(FixedSet::new(["127.0.0.1:8443"])?)?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn rustls(self, config: rustls::ClientConfig) -> HttpSetBuilder<RustlsConnector> {
        self.with_rustls(config, None)
    }

    /// As [`rustls`](HttpSetBuilder::rustls), but every member's certificate is
    /// verified against `name` (and `name` is sent as SNI) instead of the
    /// member's host: for services whose members register by address and
    /// share one certificate for the service name.
    ///
    /// ```
    /// use rustls::pki_types::ServerName;
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::HttpSet;
    ///
    /// # let roots = rustls::RootCertStore::empty();
    /// let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    /// let name = ServerName::try_from("users.internal")?;
    /// let set = HttpSet::builder().rustls_for_name(tls, name).build(FixedSet::new(["10.0.0.1:8443"])?)?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn rustls_for_name(
        self,
        config: rustls::ClientConfig,
        name: rustls::pki_types::ServerName<'static>,
    ) -> HttpSetBuilder<RustlsConnector> {
        self.with_rustls(config, Some(name))
    }

    fn with_rustls(
        self,
        config: rustls::ClientConfig,
        name: Option<rustls::pki_types::ServerName<'static>>,
    ) -> HttpSetBuilder<RustlsConnector> {
        let (mut tcp, rest) = self.into_connector();
        // hyper-rustls refuses plain URIs itself (https_only); the TCP
        // connector must let the https ones through.
        tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only();
        let https = match name {
            Some(name) => {
                https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => https,
        };
        rest.connector(https.enable_all_versions().wrap_connector(tcp))
            .https()
    }
}
