//! A throw-away public key infrastructure for TLS tests, made at test time
//! with Debian's `openssl` and the JRE's `keytool`: nothing private is ever
//! committed.
//!
//! One [`TestPki`] holds, in its own temporary directory:
//!
//! - a test CA (`ca.pem`), and an unrelated one (`other-ca.pem`) to play a
//!   wrong CA;
//! - a server certificate for `127.0.0.1` and `localhost`, valid for a
//!   month, and an expired one, each also as a PKCS12 keystore for Java;
//! - a PKCS12 truststore holding the test CA (what a ZooKeeper server needs
//!   to verify client certificates);
//! - a client certificate (`CN=client`), and more on demand with
//!   [`TestPki::issue_client`].
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM, which both Java and rustls read.
//!
//! ```no_run
//! let pki = testkit::TestPki::generate()?;
//! let ca = std::fs::read(pki.ca_pem())?;
//! let (cert, key) = (pki.client_cert(), pki.client_key());
//! # let _ = (ca, cert, key);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::{io, Error, Result};

/// The password of every keystore and truststore a [`TestPki`] writes.
pub const STORE_PASSWORD: &str = "serversets-test";

const OPENSSL_HINT: &str = "`openssl` is needed to make test certificates. On Debian or Ubuntu: \
`sudo apt-get install -y openssl` (or run `cargo xtask test`, which installs it when run as root).";
const KEYTOOL_HINT: &str = "`keytool` (from the JRE that Debian's zookeeper package brings) is \
needed to make test truststores. On Debian or Ubuntu: `sudo apt-get install -y zookeeper`.";

/// How long a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From now for 30 days.
    Valid,
    /// From 2020-01-01 to 2020-01-02: expired.
    Expired,
}

/// Certificates, keys and Java stores for one test, in a temporary
/// directory removed when the last clone is dropped. See the
/// module documentation of `pki.rs`.
#[derive(Debug, Clone)]
pub struct TestPki {
    dir: Arc<tempfile::TempDir>,
}

impl TestPki {
    /// Makes a new CA, server and client certificates and the Java stores.
    /// Takes about a second (most of it `keytool`'s JVM).
    pub fn generate() -> Result<TestPki> {
        let dir = tempfile::Builder::new()
            .prefix("serversets-pki-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        let pki = TestPki { dir: Arc::new(dir) };
        let d = pki.dir();
        std::fs::write(d.join("index.txt"), "").map_err(io("write index.txt"))?;
        std::fs::write(d.join("serial"), "1000\n").map_err(io("write serial"))?;
        std::fs::write(d.join("ca.cnf"), ca_config(d)).map_err(io("write ca.cnf"))?;
        pki.self_signed_ca("ca", "serversets test CA")?;
        pki.self_signed_ca("other-ca", "some other CA")?;
        let san = "subjectAltName=IP:127.0.0.1,DNS:localhost";
        pki.issue(
            "server",
            "localhost",
            Validity::Valid,
            san,
            "serverAuth,clientAuth",
        )?;
        pki.issue(
            "server-expired",
            "localhost",
            Validity::Expired,
            san,
            "serverAuth,clientAuth",
        )?;
        pki.issue_client("client", Validity::Valid)?;
        for name in ["server", "server-expired"] {
            pki.keystore(name)?;
        }
        pki.make_truststore()?;
        Ok(pki)
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The test CA's certificate (PEM).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// An unrelated CA's certificate (PEM): trusting it instead of
    /// [`ca_pem`](Self::ca_pem) is trusting the wrong CA.
    pub fn other_ca_pem(&self) -> PathBuf {
        self.dir().join("other-ca.pem")
    }

    /// The valid server certificate (PEM; `127.0.0.1` and `localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir().join("server.pem")
    }

    /// The server certificate's key (PKCS#8 PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir().join("server.key")
    }

    /// The client certificate `CN=client` (PEM).
    pub fn client_cert(&self) -> PathBuf {
        self.dir().join("client.pem")
    }

    /// The client certificate's key (PKCS#8 PEM).
    pub fn client_key(&self) -> PathBuf {
        self.dir().join("client.key")
    }

    /// The server's PKCS12 keystore (certificate, key and CA), valid or
    /// expired; its password is [`STORE_PASSWORD`].
    pub fn server_keystore(&self, validity: Validity) -> PathBuf {
        match validity {
            Validity::Valid => self.dir().join("server.p12"),
            Validity::Expired => self.dir().join("server-expired.p12"),
        }
    }

    /// A PKCS12 truststore with the test CA; its password is
    /// [`STORE_PASSWORD`].
    pub fn truststore(&self) -> PathBuf {
        self.dir().join("truststore.p12")
    }

    /// Issues a client certificate `CN=<name>` signed by the test CA and
    /// returns `(certificate, key)`, both PEM, named `<name>.pem` and
    /// `<name>.key` in [`dir`](Self::dir) (an existing pair is replaced).
    pub fn issue_client(&self, name: &str, validity: Validity) -> Result<(PathBuf, PathBuf)> {
        self.issue(
            name,
            name,
            validity,
            "subjectAltName=IP:127.0.0.1",
            "clientAuth",
        )?;
        Ok((
            self.dir().join(format!("{name}.pem")),
            self.dir().join(format!("{name}.key")),
        ))
    }

    fn self_signed_ca(&self, name: &str, cn: &str) -> Result<()> {
        let d = self.dir();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "30",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        )
    }

    fn issue(&self, name: &str, cn: &str, validity: Validity, san: &str, eku: &str) -> Result<()> {
        let d = self.dir();
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        )?;
        let ext = format!("{name}.ext");
        std::fs::write(
            d.join(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage={eku}\n{san}\n"
            ),
        )
        .map_err(io("write an extensions file"))?;
        let mut args = vec![
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert",
            "ca.pem", "-in", &csr, "-out", &pem, "-extfile", &ext,
        ];
        match validity {
            Validity::Valid => args.extend(["-days", "30"]),
            Validity::Expired => args.extend([
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
            ]),
        }
        openssl(d, &args)
    }

    fn keystore(&self, name: &str) -> Result<()> {
        openssl(
            self.dir(),
            &[
                "pkcs12",
                "-export",
                "-in",
                &format!("{name}.pem"),
                "-inkey",
                &format!("{name}.key"),
                "-certfile",
                "ca.pem",
                "-name",
                "server",
                "-out",
                &format!("{name}.p12"),
                "-passout",
                &format!("pass:{STORE_PASSWORD}"),
            ],
        )
    }

    fn make_truststore(&self) -> Result<()> {
        let d = self.dir();
        let out = Command::new("keytool")
            .current_dir(d)
            .args([
                "-importcert",
                "-noprompt",
                "-alias",
                "ca",
                "-file",
                "ca.pem",
                "-keystore",
                "truststore.p12",
                "-storetype",
                "PKCS12",
                "-storepass",
                STORE_PASSWORD,
            ])
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotInstalled(KEYTOOL_HINT.into()),
                _ => Error::Io("run keytool".into(), e),
            })?;
        if !out.status.success() {
            return Err(Error::BadServer(format!(
                "keytool -importcert failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }
}

fn ca_config(dir: &Path) -> String {
    format!(
        "[ca]\ndefault_ca = test\n\n[test]\ndir = {dir}\ndatabase = $dir/index.txt\n\
         new_certs_dir = $dir\nserial = $dir/serial\ndefault_md = sha256\n\
         unique_subject = no\npolicy = any\ncopy_extensions = none\n\n\
         [any]\ncommonName = supplied\n",
        dir = dir.display()
    )
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotInstalled(OPENSSL_HINT.into()),
            _ => Error::Io("run openssl".into(), e),
        })?;
    if !out.status.success() {
        return Err(Error::BadServer(format!(
            "openssl {} failed: {}{}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}
