//! The committed greeter code is what tonic-build makes of
//! `proto/greeter.proto` today.

#[allow(dead_code)]
mod support {
    pub mod codegen;
}

use support::codegen;

#[test]
fn committed_greeter_code_matches_tonic_build() {
    let out = tempfile::tempdir().unwrap();
    let generated = codegen::regenerate(&codegen::greeter_proto(), out.path())
        .expect("protoc (apt-get install protobuf-compiler)");
    let fresh = std::fs::read_to_string(&generated).unwrap();
    if std::env::var_os("SERVERSETS_TOWER_REGENERATE").is_some() {
        std::fs::write(codegen::greeter_rs(), &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(codegen::greeter_rs()).unwrap_or_default();
    assert!(fresh.contains("pub struct HelloRequest"), "{fresh}");
    assert!(
        fresh == committed,
        "tests/support/greeter.rs is stale: regenerate it with \
         `SERVERSETS_TOWER_REGENERATE=1 cargo test -p serversets-tower --test codegen`"
    );
}
