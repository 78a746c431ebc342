//! TLS to ZooKeeper: the settings ([`ZkTls`]), the certificates a
//! session's connections use and rotate ([`TlsRuntime`]), and the probe
//! that names why a handshake fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use zookeeper_client as zk;

use super::{Probe, TlsProblem, PROBE_STEP};
use crate::zookeeper::error::{Error, Result};
use crate::zookeeper::session::show_host;

/// Where a PEM comes from: read once, or a file read again on rotation.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Pem {
    Bytes(Arc<[u8]>),
    File(PathBuf),
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>> {
        match self {
            Pem::Bytes(b) => Ok(b.to_vec()),
            Pem::File(path) => std::fs::read(path)
                .map_err(|e| Error::tls_config_by(format!("cannot read {}", path.display()), e)),
        }
    }

    fn path(&self) -> Option<&Path> {
        match self {
            Pem::File(p) => Some(p),
            Pem::Bytes(_) => None,
        }
    }
}

/// TLS settings for the connection to ZooKeeper (its `secureClientPort`):
/// the CA to trust, and a client certificate for mutual TLS.
///
/// Hostname verification is on: each server's certificate must name the
/// host as written in the connect string (a DNS name or an IP address in
/// its subjectAltName). PEMs given as files are read again when they
/// change (checked every 30 seconds, or at once with
/// [`Session::reload_tls`](crate::Session::reload_tls)); each new
/// connection then uses them, so certificates rotate without a restart.
///
/// Two sessions with different TLS settings are never shared.
///
/// ```
/// use serversets_core::{Environment, ServerSet, Watcher, ZkTls};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pki = testkit::TestPki::generate()?;
/// # let zk = testkit::ZkCluster::start(testkit::ZkOptions {
/// #     tls: Some(testkit::ZkTls { client_auth: testkit::ClientAuth::Need, ..testkit::ZkTls::new(&pki) }),
/// #     ..Default::default()
/// # })?;
/// # let zookeepers = zk.secure_connect_string().unwrap_or_default();
/// # let (ca, cert, key) = (pki.ca_pem(), pki.client_cert(), pki.client_key());
/// let tls = ZkTls::ca_file(&ca)?.client_cert_files(&cert, &key)?;
/// let set = ServerSet::builder(Environment::Production, "users", [zookeepers])
///     .tls(tls)
///     .build()?;
/// let registration = set.register_endpoint("10.0.0.3", 8080, None).await?;
/// assert_eq!(set.watch().await?.snapshot().len(), 1);
/// registration.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ZkTls {
    ca: Pem,
    identity: Option<(Pem, Pem)>,
    hostname_verification: bool,
}

impl std::fmt::Debug for ZkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |p: &Pem| match p {
            Pem::Bytes(_) => "<pem bytes>".to_string(),
            Pem::File(path) => path.display().to_string(),
        };
        f.debug_struct("ZkTls")
            .field("ca", &show(&self.ca))
            .field("client_cert", &self.identity.as_ref().map(|(c, _)| show(c)))
            .field("hostname_verification", &self.hostname_verification)
            .finish()
    }
}

impl ZkTls {
    /// Trusts the CA certificates in this PEM (one or more
    /// `CERTIFICATE` blocks; CRLs in it are honoured).
    ///
    /// # Errors
    ///
    /// [`Error::TlsConfig`] if it holds no certificate.
    ///
    /// ```
    /// use serversets_core::{Error, ZkTls};
    /// assert!(matches!(ZkTls::ca_pem("not a pem"), Err(Error::TlsConfig { .. })));
    /// ```
    pub fn ca_pem(pem: impl AsRef<[u8]>) -> Result<ZkTls> {
        ZkTls::with_ca(Pem::Bytes(pem.as_ref().into()))
    }

    /// Trusts the CA certificates in this PEM file, read now and again
    /// whenever it changes.
    ///
    /// # Errors
    ///
    /// [`Error::TlsConfig`] if it cannot be read or holds no certificate.
    ///
    /// ```
    /// use serversets_core::{Error, ZkTls};
    /// let missing = ZkTls::ca_file("/nonexistent/ca.pem").unwrap_err();
    /// assert!(missing.to_string().contains("/nonexistent/ca.pem"), "{missing}");
    /// ```
    pub fn ca_file(path: impl AsRef<Path>) -> Result<ZkTls> {
        ZkTls::with_ca(Pem::File(path.as_ref().to_path_buf()))
    }

    fn with_ca(ca: Pem) -> Result<ZkTls> {
        let tls = ZkTls {
            ca,
            identity: None,
            hostname_verification: true,
        };
        tls.certs()?;
        Ok(tls)
    }

    /// Presents this client certificate (chain) and key for mutual TLS.
    ///
    /// # Errors
    ///
    /// [`Error::TlsConfig`] if either holds nothing usable.
    pub fn client_cert_pem(self, cert: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<ZkTls> {
        self.with_identity(
            Pem::Bytes(cert.as_ref().into()),
            Pem::Bytes(key.as_ref().into()),
        )
    }

    /// Presents the client certificate and key in these PEM files for
    /// mutual TLS, read now and again whenever they change.
    ///
    /// # Errors
    ///
    /// [`Error::TlsConfig`] if either cannot be read or holds nothing
    /// usable.
    pub fn client_cert_files(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<ZkTls> {
        self.with_identity(
            Pem::File(cert.as_ref().to_path_buf()),
            Pem::File(key.as_ref().to_path_buf()),
        )
    }

    fn with_identity(mut self, cert: Pem, key: Pem) -> Result<ZkTls> {
        self.identity = Some((cert, key));
        self.certs()?;
        Ok(self)
    }

    /// Accepts any server certificate signed by the CA, whatever host it
    /// names. This lets anyone holding such a certificate (any server of
    /// the CA) impersonate ZooKeeper: use only when the CA signs nothing
    /// but ZooKeeper servers.
    pub fn danger_no_hostname_verification(mut self) -> ZkTls {
        self.hostname_verification = false;
        self
    }

    /// True when a client certificate is presented, which ZooKeeper's
    /// x509 provider turns into an identity (`x509:<subject>`).
    pub fn has_client_cert(&self) -> bool {
        self.identity.is_some()
    }

    /// The PEM files to watch for rotation.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.ca.path().map(Path::to_path_buf).into_iter().collect();
        if let Some((c, k)) = &self.identity {
            files.extend(c.path().map(Path::to_path_buf));
            files.extend(k.path().map(Path::to_path_buf));
        }
        files
    }

    /// Reads and checks everything, as zookeeper-client wants it.
    pub(crate) fn certs(&self) -> Result<zk::TlsCerts> {
        let ca = utf8(self.ca.read()?, "CA")?;
        if CertificateDer::pem_slice_iter(ca.as_bytes())
            .next()
            .is_none()
        {
            return Err(Error::tls_config("no CA certificate in the CA PEM"));
        }
        let ca = zk::TlsCa::from_pem(&ca).map_err(|e| Error::tls_config_by("bad CA PEM", e))?;
        let mut builder = zk::TlsCerts::builder().with_ca(ca);
        if let Some((cert, key)) = &self.identity {
            let (cert, key) = (
                utf8(cert.read()?, "client certificate")?,
                utf8(key.read()?, "client key")?,
            );
            if CertificateDer::pem_slice_iter(cert.as_bytes())
                .next()
                .is_none()
            {
                return Err(Error::tls_config(
                    "no certificate in the client certificate PEM",
                ));
            }
            if PrivateKeyDer::from_pem_slice(key.as_bytes()).is_err() {
                return Err(Error::tls_config("no private key in the client key PEM"));
            }
            let identity = zk::TlsIdentity::from_pem(&cert, &key)
                .map_err(|e| Error::tls_config_by("bad client certificate or key", e))?;
            builder = builder.with_identity(identity);
        }
        builder
            .build()
            .map_err(|e| Error::tls_config_by("cannot build the TLS settings", e))
    }

    /// The rustls configuration the probe uses: the same trust and
    /// identity as the client.
    fn client_config(&self) -> Result<rustls::ClientConfig> {
        install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca.read()?) {
            let cert = cert.map_err(|e| Error::tls_config_by("bad CA PEM", e))?;
            roots
                .add(cert)
                .map_err(|e| Error::tls_config_by("bad CA certificate", e))?;
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| Error::tls_config_by("cannot build the certificate verifier", e))?;
        let builder = rustls::ClientConfig::builder();
        let builder = if self.hostname_verification {
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
        };
        match &self.identity {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(&cert.read()?)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::tls_config_by("bad client certificate", e))?;
                let key = PrivateKeyDer::from_pem_slice(&key.read()?)
                    .map_err(|e| Error::tls_config_by("bad client key", e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::tls_config_by("bad client certificate or key", e))
            }
        }
    }
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| Error::tls_config_by(format!("the {what} PEM is not text"), e))
}

/// rustls needs one process-wide crypto provider; zookeeper-client asks
/// for the default one. Installing aws-lc-rs (the one its rustls is
/// built with) keeps that working even if another crate in the process
/// enables a second provider, which would leave no default.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err: another thread installed one first, which is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// The server verifier without the hostname check (see
/// [`ZkTls::danger_no_hostname_verification`]).
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS options zookeeper-client connects with, and the handle that
/// rotates their certificates.
pub(crate) struct TlsRuntime {
    certs: zk::TlsDynamicCerts,
    tls: ZkTls,
    /// Modification times of the PEM files when last read.
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl TlsRuntime {
    pub(crate) fn new(tls: &ZkTls) -> Result<TlsRuntime> {
        install_crypto_provider();
        let stamps = stamps(&tls.files());
        Ok(TlsRuntime {
            certs: zk::TlsDynamicCerts::new(tls.certs()?),
            tls: tls.clone(),
            stamps: Mutex::new(stamps),
        })
    }

    pub(crate) fn options(&self) -> zk::TlsOptions {
        let options = zk::TlsOptions::new().with_certs(self.certs.clone());
        if self.tls.hostname_verification {
            options
        } else {
            // SAFETY: not a memory-safety matter: zookeeper-client marks
            // turning off hostname verification `unsafe` for the
            // impersonation risk, which `danger_no_hostname_verification`
            // documents and its caller accepted.
            unsafe { options.with_no_hostname_verification() }
        }
    }

    /// True when some PEM comes from a file, which may rotate.
    pub(crate) fn watches_files(&self) -> bool {
        !self.tls.files().is_empty()
    }

    /// Reads the PEM files again if any changed, so the next connection
    /// uses them. Returns whether new certificates were installed.
    pub(crate) fn reload(&self) -> Result<bool> {
        let now = stamps(&self.tls.files());
        let mut last = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        if *last == now {
            return Ok(false);
        }
        let certs = self.tls.certs()?;
        self.certs.update(certs);
        *last = now;
        Ok(true)
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

pub(super) async fn probe(
    tls: &ZkTls,
    stream: tokio::net::TcpStream,
    host: &str,
    port: u16,
) -> Probe {
    use tokio::io::AsyncReadExt;
    let shown = show_host(host, port);
    let config = match tls.client_config() {
        Ok(c) => c,
        Err(e) => return Probe::Problem(e),
    };
    let name = match ServerName::try_from(host.to_string()) {
        Ok(n) => n,
        Err(e) => {
            return Probe::Problem(Error::tls_config_by(
                format!("{host} is no TLS server name"),
                e,
            ))
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let problem = |p: TlsProblem| {
        Probe::Problem(Error::Tls {
            host: shown.clone(),
            problem: p,
        })
    };
    let mut stream = match tokio::time::timeout(PROBE_STEP, connector.connect(name, stream)).await {
        Err(_) => return Probe::Unreachable(format!("no TLS handshake within {PROBE_STEP:?}")),
        Ok(Err(e)) => return problem(classify(&e, host, tls.has_client_cert())),
        Ok(Ok(stream)) => stream,
    };
    // With TLS 1.3 the server checks the client's certificate after the
    // client has finished its handshake: a refusal arrives as an alert
    // on the first read. A server that accepted waits for our request.
    let mut buf = [0u8; 64];
    match tokio::time::timeout(PROBE_STEP, stream.read(&mut buf)).await {
        Err(_) => Probe::Fine,
        Ok(Err(e)) => match rustls_error(&e) {
            Some(_) => problem(classify(&e, host, tls.has_client_cert())),
            None => Probe::Fine,
        },
        // Closed at once after the handshake: the server's x509
        // authentication refused the certificate (or its absence).
        Ok(Ok(0)) if tls.has_client_cert() => problem(TlsProblem::ClientCertificateRejected(
            "none; the connection was closed".into(),
        )),
        Ok(Ok(0)) => problem(TlsProblem::ClientCertificateRequired),
        Ok(Ok(_)) => Probe::Fine,
    }
}

fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn classify(e: &std::io::Error, host: &str, has_cert: bool) -> TlsProblem {
    use rustls::{AlertDescription as A, CertificateError as C};
    let Some(err) = rustls_error(e) else {
        return match e.kind() {
            // A plain ZooKeeper closes the connection on a ClientHello.
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                TlsProblem::NotTls
            }
            _ => TlsProblem::Other(e.to_string()),
        };
    };
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => TlsProblem::UnknownIssuer,
            C::Expired | C::ExpiredContext { .. } => TlsProblem::CertificateExpired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsProblem::CertificateNotValidYet,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                TlsProblem::NotValidForName(host.to_string())
            }
            other => TlsProblem::Other(format!("invalid server certificate: {other:?}")),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            A::CertificateRequired => TlsProblem::ClientCertificateRequired,
            A::HandshakeFailure | A::BadCertificate if !has_cert => {
                TlsProblem::ClientCertificateRequired
            }
            A::BadCertificate
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::UnknownCA
            | A::AccessDenied
            | A::HandshakeFailure => TlsProblem::ClientCertificateRejected(format!("{alert:?}")),
            other => TlsProblem::Other(format!("the server sent TLS alert {other:?}")),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            TlsProblem::NotTls
        }
        other => TlsProblem::Other(other.to_string()),
    }
}
