//! Regenerating the committed Rust code for `thrift/echo.thrift`.
//!
//! The generator is Apache Thrift's compiler (Debian/Ubuntu package
//! `thrift-compiler`, version 0.17.0 to match the `thrift` crate). The
//! equivalent command line, from the workspace root, is:
//!
//! ```text
//! thrift --gen rs -out crates/serversets-thriftset/tests/support \
//!     crates/serversets-thriftset/thrift/echo.thrift
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate directory (tests and benches run from anywhere).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The service definition.
pub fn echo_thrift() -> PathBuf {
    crate_dir().join("thrift/echo.thrift")
}

/// The committed generated code.
pub fn echo_rs() -> PathBuf {
    crate_dir().join("tests/support/echo.rs")
}

/// Runs `thrift --gen rs -out <out_dir> <thrift_file>` and returns the path
/// of the generated `.rs` file (the IDL file's stem, lower-cased).
pub fn regenerate(thrift_file: &Path, out_dir: &Path) -> io::Result<PathBuf> {
    let output = Command::new("thrift")
        .args(["--gen", "rs", "-out"])
        .arg(out_dir)
        .arg(thrift_file)
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "running `thrift` ({e}); install Apache Thrift's compiler 0.17 \
                     (Debian/Ubuntu: `apt-get install thrift-compiler`)"
                ),
            )
        })?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "thrift --gen rs failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let stem = thrift_file
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| io::Error::other("thrift file has no name"))?
        .to_lowercase();
    Ok(out_dir.join(format!("{stem}.rs")))
}
