//! TLS and SASL to ZooKeeper, and telling the user precisely why a secure
//! connection failed.
//!
//! zookeeper-client retries a failed TLS handshake or a connection the
//! server closed like any lost connection (it logs the cause at debug level
//! and answers `connect()` with a timeout once its deadline passes), so the
//! cause never reaches its caller. When a session is slow to open,
//! [`diagnose`] therefore makes its own connection to each server, the way
//! the client would, and names what stops it: a certificate from another
//! CA, an expired certificate, a server that wants a client certificate, a
//! plain client at a TLS port.

use std::time::Duration;

use crate::zookeeper::error::Error;
use crate::zookeeper::session::{show_host, SessionConfig};

#[cfg(feature = "tls")]
pub(crate) use self::tls::TlsRuntime;
#[cfg(feature = "tls")]
pub use self::tls::ZkTls;

/// Why a server refused, or could not be given, a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The server's certificate is not signed by the configured CA.
    UnknownIssuer,
    /// The server's certificate has expired.
    CertificateExpired,
    /// The server's certificate is not valid yet.
    CertificateNotValidYet,
    /// The server's certificate does not name the host connected to
    /// (hostname verification).
    NotValidForName(String),
    /// The server requires a client certificate (mutual TLS) and none is
    /// configured.
    ClientCertificateRequired,
    /// The server refused the configured client certificate.
    ClientCertificateRejected(String),
    /// The port does not speak TLS.
    NotTls,
    /// Anything else the TLS library reported.
    Other(String),
}

impl std::fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsProblem::UnknownIssuer => {
                f.write_str("its certificate is not signed by the configured CA (wrong CA?)")
            }
            TlsProblem::CertificateExpired => f.write_str("its certificate has expired"),
            TlsProblem::CertificateNotValidYet => f.write_str("its certificate is not valid yet"),
            TlsProblem::NotValidForName(host) => write!(
                f,
                "its certificate is not valid for {host} (hostname verification)"
            ),
            TlsProblem::ClientCertificateRequired => f.write_str(
                "it requires a client certificate (mutual TLS) and none is configured",
            ),
            TlsProblem::ClientCertificateRejected(alert) => write!(
                f,
                "it refused the client certificate (TLS alert {alert}): expired, or not signed by a CA the server trusts?"
            ),
            TlsProblem::NotTls => f.write_str("the port does not speak TLS"),
            TlsProblem::Other(e) => f.write_str(e),
        }
    }
}

/// What probing the servers found.
#[derive(Debug, Clone)]
pub(crate) enum Finding {
    /// A reason no retry can change: every server that answered gave one.
    Definite(Error),
    /// Nothing conclusive; a line for the "could not connect" message.
    Unsure(String),
}

/// How long one probe step may take: a TCP connect, a handshake, a reply.
const PROBE_STEP: Duration = Duration::from_millis(1500);

/// Probes every server of `cfg` as its client would connect, and says what
/// stops the connection if it is a TLS matter.
pub(crate) async fn diagnose(cfg: &SessionConfig) -> Finding {
    let hosts = cfg.host_ports();
    let mut definite = None;
    let mut notes = Vec::new();
    let mut any_fine = false;
    // All servers at once: a diagnosis takes one probe's time, not the sum.
    let probes =
        futures::future::join_all(hosts.iter().map(|(host, port)| probe(cfg, host, *port))).await;
    for ((host, port), found) in hosts.iter().zip(probes) {
        let shown = show_host(host, *port);
        match found {
            Probe::Fine => any_fine = true,
            Probe::Unreachable(why) => notes.push(format!("{shown}: {why}")),
            Probe::Problem(e) => {
                notes.push(format!("{shown}: {e}"));
                definite.get_or_insert(e);
            }
        }
    }
    match definite {
        Some(e) if !any_fine => Finding::Definite(e),
        _ if notes.is_empty() => Finding::Unsure(String::new()),
        _ => Finding::Unsure(notes.join("; ")),
    }
}

enum Probe {
    /// The connection works as far as a probe can tell.
    Fine,
    /// No TCP connection (refused, silent): not a TLS matter.
    Unreachable(String),
    /// A definite TLS problem.
    Problem(Error),
}

async fn probe(cfg: &SessionConfig, host: &str, port: u16) -> Probe {
    let connect = tokio::net::TcpStream::connect((host, port));
    let stream = match tokio::time::timeout(PROBE_STEP, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Probe::Unreachable(e.to_string()),
        Err(_) => {
            return Probe::Unreachable(format!("no answer to a TCP connect within {PROBE_STEP:?}"))
        }
    };
    #[cfg(feature = "tls")]
    if let Some(tls) = &cfg.tls {
        return tls::probe(tls, stream, host, port).await;
    }
    #[cfg(not(feature = "tls"))]
    let _ = cfg;
    probe_plain(stream, host, port).await
}

/// A plain client: does the port answer a TLS ClientHello? A plain
/// ZooKeeper reads its first four bytes as a frame length far above
/// `jute.maxbuffer` and closes the connection; a TLS port answers with a
/// handshake or an alert record.
async fn probe_plain(mut stream: tokio::net::TcpStream, host: &str, port: u16) -> Probe {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.write_all(&client_hello()).await.is_err() {
        return Probe::Fine;
    }
    let mut first = [0u8; 1];
    match tokio::time::timeout(PROBE_STEP, stream.read(&mut first)).await {
        // 0x16: a handshake record (ServerHello); 0x15: an alert.
        Ok(Ok(1)) if first[0] == 0x16 || first[0] == 0x15 => Probe::Problem(Error::TlsRequired {
            host: show_host(host, port),
        }),
        _ => Probe::Fine,
    }
}

/// A minimal TLS 1.2 ClientHello: two ECDHE AES-GCM suites, P-256, two
/// signature schemes. Any TLS server answers it, with a ServerHello or a
/// handshake-failure alert.
fn client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend((0..32).map(|_| fastrand::u8(..)));
    body.push(0); // no session id
    body.extend([0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // cipher suites
    body.extend([0x01, 0x00]); // null compression
    let extensions: [u8; 24] = [
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported groups: P-256
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // point formats: uncompressed
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04, // signature schemes
    ];
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![0x01];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

#[cfg(feature = "tls")]
mod tls;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_hello_is_one_well_formed_record() {
        let hello = client_hello();
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01]);
        let record_len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], 0x01, "a ClientHello");
        let body_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
        assert_eq!(body_len, hello.len() - 9);
    }

    #[test]
    fn problems_read_as_sentences() {
        assert_eq!(
            TlsProblem::ClientCertificateRequired.to_string(),
            "it requires a client certificate (mutual TLS) and none is configured"
        );
        assert!(TlsProblem::UnknownIssuer.to_string().contains("wrong CA"));
    }
}
