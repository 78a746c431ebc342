//! The generated greeter code: `tests/support/greeter.rs` is what
//! tonic-build (with prost-build and Debian's `protoc`, package
//! `protobuf-compiler`) makes of `proto/greeter.proto`. It is committed, so
//! neither the library nor its users need protoc; the `codegen` test checks
//! that it is current, and rewrites it when run with
//! `SERVERSETS_TOWER_REGENERATE=1`.

use std::io;
use std::path::{Path, PathBuf};

/// The crate directory (tests and benches run from anywhere).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The service definition.
pub fn greeter_proto() -> PathBuf {
    crate_dir().join("proto/greeter.proto")
}

/// The committed generated code.
pub fn greeter_rs() -> PathBuf {
    crate_dir().join("tests/support/greeter.rs")
}

/// Generates client and server code for `proto` into `out_dir` and returns
/// the generated file (named after the proto package).
pub fn regenerate(proto: &Path, out_dir: &Path) -> io::Result<PathBuf> {
    let include = proto
        .parent()
        .ok_or_else(|| io::Error::other("proto file has no directory"))?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out_dir)
        .compile_protos(&[proto], &[include])
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "tonic-build: {e}; it needs protoc \
                     (Debian/Ubuntu: `apt-get install protobuf-compiler`)"
                ),
            )
        })?;
    Ok(out_dir.join("greeter.rs"))
}
