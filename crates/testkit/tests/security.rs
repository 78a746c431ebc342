//! TLS and SASL test servers: the PKI is made at test time, the secure port
//! speaks TLS with the test CA, SASL logins are checked.

use std::time::Duration;

use testkit::{ClientAuth, TestPki, Validity, ZkCluster, ZkOptions, ZkSasl, ZkTls};
use zookeeper_client as zk;

#[test]
fn pki_makes_every_file() {
    let pki = TestPki::generate().expect("pki");
    for f in [
        pki.ca_pem(),
        pki.other_ca_pem(),
        pki.server_cert(),
        pki.server_key(),
        pki.client_cert(),
        pki.client_key(),
        pki.server_keystore(Validity::Valid),
        pki.server_keystore(Validity::Expired),
        pki.truststore(),
    ] {
        assert!(f.is_file(), "{} missing", f.display());
    }
    let key = std::fs::read_to_string(pki.client_key()).unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY"), "PKCS#8: {key}");
}

#[tokio::test(flavor = "current_thread")]
async fn secure_port_speaks_tls_with_the_test_ca_and_checks_client_certs() {
    let pki = TestPki::generate().expect("pki");
    let zk = ZkCluster::start(ZkOptions {
        tls: Some(ZkTls {
            client_auth: ClientAuth::Need,
            ..ZkTls::new(&pki)
        }),
        ..ZkOptions::default()
    })
    .expect("TLS ZooKeeper");
    let secure = zk.secure_connect_string().expect("a secure port");
    assert_ne!(secure, zk.connect_string());
    let ca = std::fs::read_to_string(pki.ca_pem()).unwrap();
    let cert = std::fs::read_to_string(pki.client_cert()).unwrap();
    let key = std::fs::read_to_string(pki.client_key()).unwrap();
    let tls = zk::TlsOptions::new()
        .with_pem_ca(&ca)
        .unwrap()
        .with_pem_identity(&cert, &key)
        .unwrap();
    let client = zk::Client::connector()
        .with_tls(tls)
        .with_session_timeout(Duration::from_secs(10))
        .secure_connect(&secure)
        .await
        .expect("mutual TLS session");
    let who = client.list_auth_users().await.expect("whoami");
    assert!(
        who.iter()
            .any(|u| u.scheme() == "x509" && u.user().contains("CN=client")),
        "{who:?}"
    );

    // Without a client certificate the server refuses the handshake.
    let no_cert = zk::TlsOptions::new().with_pem_ca(&ca).unwrap();
    let refused = zk::Client::connector()
        .with_tls(no_cert)
        .with_session_timeout(Duration::from_secs(2))
        .with_fail_eagerly()
        .secure_connect(&secure)
        .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn sasl_users_log_in() {
    let zk = ZkCluster::start(ZkOptions {
        sasl: Some(ZkSasl::user("alice", "s3cret")),
        ..ZkOptions::default()
    })
    .expect("SASL ZooKeeper");
    let client = zk::Client::connector()
        .with_sasl(zk::SaslOptions::digest_md5("alice", "s3cret"))
        .with_session_timeout(Duration::from_secs(10))
        .connect(&zk.connect_string())
        .await
        .expect("SASL session");
    let who = client.list_auth_users().await.expect("whoami");
    assert!(
        who.iter()
            .any(|u| u.scheme() == "sasl" && u.user() == "alice"),
        "{who:?}"
    );
    let wrong = zk::Client::connector()
        .with_sasl(zk::SaslOptions::digest_md5("alice", "wrong"))
        .with_session_timeout(Duration::from_secs(4))
        .connect(&zk.connect_string())
        .await;
    assert_eq!(wrong.err(), Some(zk::Error::AuthFailed));
}
