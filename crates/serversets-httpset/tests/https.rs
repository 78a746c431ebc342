//! HTTPS through rustls against a real hyper TLS server whose certificate
//! comes from a test CA made at test time: HTTP/2 when ALPN picks it,
//! HTTP/1.1 otherwise, and a certificate the client must not trust.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Version;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serversets_fixedset::FixedSet;
use serversets_httpset::HttpSet;
use testkit::TestPki;

/// A hyper server (HTTP/1.1 and HTTP/2) behind TLS offering `alpn`; it
/// answers with the HTTP version of the request, or on `/host` with its
/// Host headers and URI authority.
async fn https_server(pki: &TestPki, alpn: &[&[u8]]) -> SocketAddr {
    let certs = CertificateDer::pem_file_iter(pki.server_cert())
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(pki.server_key()).expect("key");
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                    let body = if req.uri().path() == "/host" {
                        let hosts: Vec<_> =
                            req.headers().get_all(http::header::HOST).iter().collect();
                        format!("host {hosts:?} authority {:?}", req.uri().authority())
                    } else {
                        format!("{:?}", req.version())
                    };
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn client_config(ca: std::path::PathBuf) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn get(set: &HttpSet<serversets_httpset::RustlsConnector>) -> (Version, String) {
    let response = set.get("/").await.expect("https request");
    let version = response.version();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (version, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http2_when_alpn_picks_it() {
    let pki = TestPki::generate().expect("pki");
    let server = https_server(&pki, &[b"h2", b"http/1.1"]).await;
    let set = HttpSet::builder()
        .rustls(client_config(pki.ca_pem()))
        .build(FixedSet::new([server.to_string()]).expect("members"))
        .expect("set");
    for _ in 0..3 {
        assert_eq!(get(&set).await, (Version::HTTP_2, "HTTP/2.0".to_string()));
    }
}

/// What the server saw of the request's authority on `/host`.
async fn authority_seen(set: &HttpSet<serversets_httpset::RustlsConnector>) -> String {
    let response = set.get("/host").await.expect("https request");
    let body = response.into_body().collect().await.expect("body");
    String::from_utf8_lossy(&body.to_bytes()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_goes_as_host_over_http1_and_only_as_authority_over_http2() {
    let pki = TestPki::generate().expect("pki");
    let h2 = https_server(&pki, &[b"h2"]).await;
    let h1 = https_server(&pki, &[b"http/1.1"]).await;
    for (server, want) in [
        // As hyper-rustls sends it directly (RFC 9113, 8.3.1): no Host,
        // not even on the first request, before the set knows the protocol.
        (h2, format!("host [] authority Some({h2})")),
        // Once, whether hyper-util adds it (the first request) or the set.
        (h1, format!("host [\"{h1}\"] authority None")),
    ] {
        let set = HttpSet::builder()
            .rustls(client_config(pki.ca_pem()))
            .build(FixedSet::new([server.to_string()]).expect("members"))
            .expect("set");
        for _ in 0..3 {
            assert_eq!(authority_seen(&set).await, want);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http1_to_a_server_without_h2() {
    let pki = TestPki::generate().expect("pki");
    let server = https_server(&pki, &[b"http/1.1"]).await;
    let set = HttpSet::builder()
        .rustls(client_config(pki.ca_pem()))
        .build(FixedSet::new([server.to_string()]).expect("members"))
        .expect("set");
    assert_eq!(get(&set).await, (Version::HTTP_11, "HTTP/1.1".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_balances_over_several_tls_members() {
    let pki = TestPki::generate().expect("pki");
    let a = https_server(&pki, &[b"h2"]).await;
    let b = https_server(&pki, &[b"http/1.1"]).await;
    let set = HttpSet::builder()
        .rustls(client_config(pki.ca_pem()))
        .build(FixedSet::new([a.to_string(), b.to_string()]).expect("members"))
        .expect("set");
    let mut versions = Vec::new();
    for _ in 0..4 {
        versions.push(get(&set).await.0);
    }
    assert!(
        versions.contains(&Version::HTTP_2) && versions.contains(&Version::HTTP_11),
        "{versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_from_another_ca_is_refused() {
    let pki = TestPki::generate().expect("pki");
    let server = https_server(&pki, &[b"h2", b"http/1.1"]).await;
    let set = HttpSet::builder()
        .retries(0)
        .rustls(client_config(pki.other_ca_pem()))
        .build(FixedSet::new([server.to_string()]).expect("members"))
        .expect("set");
    let e = set.get("/").await.expect_err("an untrusted certificate");
    let chain = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate"),
        "{chain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_server_name_is_verified_instead_of_the_members_host() {
    let pki = TestPki::generate().expect("pki");
    let server = https_server(&pki, &[b"h2", b"http/1.1"]).await;
    let members = || FixedSet::new([server.to_string()]).expect("members");
    // The certificate names localhost (and 127.0.0.1).
    let good = HttpSet::builder()
        .rustls_for_name(
            client_config(pki.ca_pem()),
            ServerName::try_from("localhost").expect("name"),
        )
        .build(members())
        .expect("set");
    assert_eq!(get(&good).await.0, Version::HTTP_2);
    let wrong = HttpSet::builder()
        .retries(0)
        .rustls_for_name(
            client_config(pki.ca_pem()),
            ServerName::try_from("users.internal").expect("name"),
        )
        .build(members())
        .expect("set");
    assert!(
        wrong.get("/").await.is_err(),
        "a certificate for another name"
    );
}
