//! TLS, mutual TLS and SASL against a real ZooKeeper: watches and
//! registrations work, every misconfiguration fails fast with a typed
//! error, and members made with credentials are readable but not writable
//! by anyone else.

mod support;

use std::time::{Duration, Instant};

use serversets_core::zookeeper_client as zk;
use serversets_core::{
    AclPolicy, Environment, Error, Registration, ServerSet, Session, TlsProblem, Watcher, ZkTls,
};
use testkit::{ClientAuth, TestPki, Validity, ZkCluster};

use support::{set_builder, wait_for};

/// A misconfiguration must be reported well before the connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const FAST: Duration = Duration::from_secs(8);

fn tls_cluster(pki: &TestPki, client_auth: ClientAuth, server_cert: Validity) -> ZkCluster {
    ZkCluster::with_tls(pki, client_auth, server_cert).expect("TLS ZooKeeper")
}

/// A ZooKeeper whose SASL login knows the user `app` (password `s3cret`).
fn sasl_cluster() -> ZkCluster {
    ZkCluster::with_sasl_user("app", "s3cret").expect("SASL ZooKeeper")
}

fn secure(zk: &ZkCluster) -> String {
    zk.secure_connect_string().expect("a TLS port")
}

/// The set `service` at `zk`'s TLS port, connecting with `tls`.
fn tls_set(zk: &ZkCluster, service: &str, tls: ZkTls) -> ServerSet {
    set_builder(&secure(zk), service)
        .tls(tls)
        .build()
        .expect("set")
}

/// The set `service` on `zk`, logged in as `app` with `password`.
fn sasl_set(zk: &ZkCluster, service: &str, password: &str) -> ServerSet {
    set_builder(&zk.connect_string(), service)
        .sasl_digest_md5("app", password)
        .build()
        .expect("set")
}

/// TLS trusting the test CA and showing the client certificate `cert`
/// (with `key`).
fn mutual_tls(pki: &TestPki, cert: &std::path::Path, key: &std::path::Path) -> ZkTls {
    ZkTls::ca_file(pki.ca_pem())
        .and_then(|t| t.client_cert_files(cert, key))
        .expect("TLS settings")
}

/// A session to `hosts` (with `tls`, if any) whose connection must fail
/// fast: returns the error.
async fn connection_fails_fast(hosts: String, tls: Option<ZkTls>) -> Error {
    let builder = Session::builder([hosts]).connect_timeout(CONNECT_TIMEOUT);
    let builder = match tls {
        Some(tls) => builder.tls(tls),
        None => builder,
    };
    let session = builder.build().expect("session");
    fails_fast(session.wait_connected(), "the connection must fail").await
}

/// Registers a member, watches it arrive and leave.
async fn register_and_watch(set: &ServerSet) {
    let watch = set.watch().await.expect("watch");
    let registration = set
        .register_endpoint("10.0.0.7", 8080, None)
        .await
        .expect("register");
    wait_for(&watch, Duration::from_secs(10), "the member", |s| {
        s.len() == 1
    })
    .await;
    registration.close().await.expect("close");
    wait_for(&watch, Duration::from_secs(10), "no member", |s| {
        s.is_empty()
    })
    .await;
}

/// Waits for `failing` to fail, checks that it failed well before the
/// connect timeout, and returns the error.
async fn fails_fast<T: std::fmt::Debug>(
    failing: impl std::future::Future<Output = Result<T, Error>>,
    what: &str,
) -> Error {
    let started = Instant::now();
    let e = failing.await.expect_err(what);
    println!("error after {:?}: {e}", started.elapsed());
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    e
}

/// What a TLS failure says went wrong (any other error fails the test).
fn tls_problem(e: &Error) -> &TlsProblem {
    match e {
        Error::Tls { problem, .. } => problem,
        other => panic!("not a TLS failure: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_registration_work_over_tls() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::None, Validity::Valid);
    let set = tls_set(&zk, "tls", ZkTls::ca_file(pki.ca_pem()).expect("CA"));
    // TLS alone is no identity: members stay open, as without TLS.
    assert_eq!(set.acl_policy(), &AclPolicy::Open);
    register_and_watch(&set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_registration_work_over_mutual_tls_with_pem_bytes() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::Need, Validity::Valid);
    let read = |p: std::path::PathBuf| std::fs::read(p).expect("read pem");
    let tls = ZkTls::ca_pem(read(pki.ca_pem()))
        .and_then(|t| t.client_cert_pem(read(pki.client_cert()), read(pki.client_key())))
        .expect("TLS settings");
    let set = tls_set(&zk, "mtls", tls);
    // The client certificate is an identity (x509:CN=client).
    assert_eq!(set.acl_policy(), &AclPolicy::CreatorAllWorldRead);
    register_and_watch(&set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_registration_work_with_sasl() {
    let zk = sasl_cluster();
    let set = sasl_set(&zk, "sasl", "s3cret");
    assert_eq!(set.acl_policy(), &AclPolicy::CreatorAllWorldRead);
    register_and_watch(&set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_fast_naming_the_ca() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::None, Validity::Valid);
    let tls = ZkTls::ca_file(pki.other_ca_pem()).expect("CA");
    let e = connection_fails_fast(secure(&zk), Some(tls)).await;
    assert!(
        matches!(tls_problem(&e), TlsProblem::UnknownIssuer),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("not signed by the configured CA"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_fails_fast() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::None, Validity::Expired);
    let set = tls_set(&zk, "expired", ZkTls::ca_file(pki.ca_pem()).expect("CA"));
    let e = fails_fast(set.watch(), "no watch over an expired certificate").await;
    assert!(
        matches!(tls_problem(&e), TlsProblem::CertificateExpired),
        "{e:?}"
    );
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_client_certificate_fails_fast_when_one_is_required() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::Need, Validity::Valid);
    let set = tls_set(&zk, "nocert", ZkTls::ca_file(pki.ca_pem()).expect("CA"));
    let e = fails_fast(
        set.register_endpoint("10.0.0.7", 8080, None),
        "no registration without a client certificate",
    )
    .await;
    assert!(
        matches!(tls_problem(&e), TlsProblem::ClientCertificateRequired),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("requires a client certificate"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_client_certificate_is_refused_fast() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::Need, Validity::Valid);
    let (cert, key) = pki.issue_client("old", Validity::Expired).expect("cert");
    let e = connection_fails_fast(secure(&zk), Some(mutual_tls(&pki, &cert, &key))).await;
    assert!(
        matches!(tls_problem(&e), TlsProblem::ClientCertificateRejected(_)),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sasl_password_fails_fast() {
    let zk = sasl_cluster();
    let set = sasl_set(&zk, "wrongpw", "guess");
    let e = fails_fast(set.watch(), "no watch with a wrong password").await;
    assert!(
        matches!(&e, Error::SaslAuthFailed { user, .. } if user == "app"),
        "{e:?}"
    );
    assert!(e.to_string().contains("wrong user or password"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_at_the_tls_port_is_told_the_server_may_require_tls() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::None, Validity::Valid);
    let e = connection_fails_fast(secure(&zk), None).await;
    assert!(matches!(&e, Error::TlsRequired { .. }), "{e:?}");
    assert!(e.to_string().contains("may require TLS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_at_a_plain_port_is_told_the_port_does_not_speak_tls() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::None, Validity::Valid);
    let tls = ZkTls::ca_file(pki.ca_pem()).expect("CA");
    let e = connection_fails_fast(zk.connect_string(), Some(tls)).await;
    assert!(matches!(tls_problem(&e), TlsProblem::NotTls), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_with_different_security_are_not_shared() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::Want, Validity::Valid);
    let hosts = secure(&zk);
    let ca = || ZkTls::ca_file(pki.ca_pem()).expect("CA");
    let with_cert = || {
        ca().client_cert_files(pki.client_cert(), pki.client_key())
            .expect("cert")
    };
    let a = set_builder(&hosts, "a").tls(ca()).build().expect("set");
    let b = set_builder(&hosts, "b").tls(ca()).build().expect("set");
    let c = set_builder(&hosts, "c")
        .tls(with_cert())
        .build()
        .expect("set");
    let plain = set_builder(&zk.connect_string(), "d").build().expect("set");
    let (a, b, c, plain) = (
        a.session().expect("session"),
        b.session().expect("session"),
        c.session().expect("session"),
        plain.session().expect("session"),
    );
    for s in [&a, &b, &c, &plain] {
        s.wait_connected().await.expect("connects");
    }
    assert_eq!(a.session_id(), b.session_id(), "same settings, one session");
    assert_ne!(
        a.session_id(),
        c.session_id(),
        "a client certificate is another identity"
    );
    assert_ne!(a.session_id(), plain.session_id());
}

/// What another writer without credentials (an operator's script, a
/// misconfigured client) can do to our members: read, not delete or
/// overwrite.
async fn foreigner_can_read_but_not_write(plain_hosts: &str, member: &str) {
    let foreign = support::raw(plain_hosts).await;
    let (data, _) = foreign.get_data(member).await.expect("world-readable");
    assert!(!data.is_empty());
    assert_eq!(foreign.delete(member, None).await, Err(zk::Error::NoAuth));
    assert_eq!(
        foreign.set_data(member, b"{}", None).await.map(|_| ()),
        Err(zk::Error::NoAuth)
    );
    let parent = member.rsplit_once('/').map(|(p, _)| p).unwrap_or("/");
    let (acls, _) = foreign.get_acl(parent).await.expect("parent ACL");
    assert!(
        !acls
            .iter()
            .any(|a| a.scheme() == "world" && a.permission() == zk::Permission::ALL),
        "the parent was created with the same policy: {acls:?}"
    );
    let squat = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    assert_eq!(
        foreign
            .create(&format!("{parent}/member_9999999999"), b"{}", &squat)
            .await
            .map(|_| ()),
        Err(zk::Error::NoAuth),
        "nobody else adds members"
    );
}

/// Registers a member of `set` on `zk`, checks that a client without
/// credentials can read it but not write it, and leaves the registration
/// open (the caller closes it).
async fn register_guarded(set: &ServerSet, zk: &ZkCluster) -> Registration {
    let registration = set
        .register_endpoint("10.0.0.7", 8080, None)
        .await
        .expect("register");
    let member = registration.path().expect("registered");
    foreigner_can_read_but_not_write(&zk.connect_string(), &member).await;
    registration
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_made_with_sasl_are_readable_but_not_writable_by_others() {
    let zk = sasl_cluster();
    let set = sasl_set(&zk, "guarded", "s3cret");
    let registration = register_guarded(&set, &zk).await;
    // A watcher without credentials still sees the member.
    let reader = set_builder(&zk.connect_string(), "guarded")
        .build()
        .expect("set");
    assert_eq!(reader.watch().await.expect("watch").snapshot().len(), 1);
    registration.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_made_over_mutual_tls_are_readable_but_not_writable_by_others() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::Need, Validity::Valid);
    let tls = mutual_tls(&pki, &pki.client_cert(), &pki.client_key());
    let set = tls_set(&zk, "guarded", tls);
    let registration = register_guarded(&set, &zk).await;
    registration.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_client_certificate_files_are_used_by_the_next_connection() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, ClientAuth::Need, Validity::Valid);
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(pki.client_cert(), &cert).expect("copy");
    std::fs::copy(pki.client_key(), &key).expect("copy");
    let session = Session::builder([secure(&zk)])
        .session_timeout(Duration::from_secs(20))
        .connect_timeout(CONNECT_TIMEOUT)
        .tls(mutual_tls(&pki, &cert, &key))
        .build()
        .expect("session");
    session.wait_connected().await.expect("connects");
    let id = session.session_id();
    assert!(
        !session.reload_tls().expect("reload"),
        "nothing changed yet"
    );

    // Rotate to a new certificate: the running connection stays.
    let (new_cert, new_key) = pki.issue_client("rotated", Validity::Valid).expect("cert");
    std::thread::sleep(Duration::from_millis(20)); // a newer mtime
    std::fs::copy(&new_cert, &cert).expect("copy");
    std::fs::copy(&new_key, &key).expect("copy");
    assert!(session.reload_tls().expect("reload"), "the files changed");

    // A reconnect (server restart) handshakes with the new certificate and
    // keeps the session.
    zk.restart(0).expect("restart");
    let raw = support::raw(&zk.connect_string()).await;
    drop(raw);
    let set = ServerSet::builder(Environment::Test, "rotated", [secure(&zk)])
        .session(session.clone())
        .build()
        .expect("set");
    let registration = set
        .register_endpoint("10.0.0.7", 8080, None)
        .await
        .expect("register after the reconnect");
    assert_eq!(
        session.session_id(),
        id,
        "the session survived the rotation"
    );
    let member = registration.path().expect("registered");
    let foreign = support::raw(&zk.connect_string()).await;
    let (acls, _) = foreign.get_acl(&member).await.expect("acl");
    assert!(
        acls.iter()
            .any(|a| a.scheme() == "x509" && a.id().contains("CN=rotated")),
        "created by the rotated identity: {acls:?}"
    );
    registration.close().await.expect("close");
}
