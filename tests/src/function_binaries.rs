//! Where the function binaries come from: `scripts/build-functions.sh` (this machine's architecture, the
//! `lambda-test` profile described there), or a directory of prebuilt ones named by `BELLHOP_FUNCTION_BIN_DIR`,
//! such as release builds for a benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A directory of prebuilt binaries to use instead of building: `<dir>/<package>` (cargo's layout) or
/// `<dir>/<package>/bootstrap` (cargo-lambda's).
pub const BIN_DIR_VARIABLE: &str = "BELLHOP_FUNCTION_BIN_DIR";

#[derive(Debug, Clone, thiserror::Error)]
pub enum BinaryError {
    #[error("scripts/build-functions.sh failed: {0}")]
    Build(String),
    #[error("no binary for {package} in {dir} (looked for {dir}/{package} and {dir}/{package}/bootstrap)")]
    Missing { package: String, dir: String },
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The directory of the function binaries. Without `BELLHOP_FUNCTION_BIN_DIR`, builds them once per process
/// through `scripts/build-functions.sh`; when they are up to date, that is cargo's no-op check.
pub fn binary_dir() -> Result<PathBuf, BinaryError> {
    static DIR: OnceLock<Result<PathBuf, BinaryError>> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os(BIN_DIR_VARIABLE) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => build(),
    })
    .clone()
}

/// The binary of `package`.
pub fn binary(package: &str) -> Result<PathBuf, BinaryError> {
    let dir = binary_dir()?;
    [dir.join(package), dir.join(package).join("bootstrap")]
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| BinaryError::Missing { package: package.to_owned(), dir: dir.display().to_string() })
}

fn build() -> Result<PathBuf, BinaryError> {
    let script = workspace_root().join("scripts/build-functions.sh");
    // The cargo running these tests, so that the build uses the same toolchain.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let output = Command::new("bash")
        .arg(&script)
        .env("CARGO", cargo)
        .output()
        .map_err(|e| BinaryError::Build(format!("cannot run {}: {e}", script.display())))?;
    if !output.status.success() {
        return Err(BinaryError::Build(format!("{}\n{}", output.status, String::from_utf8_lossy(&output.stderr))));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().map(str::trim).filter(|line| !line.is_empty());
    dir.map(PathBuf::from).ok_or_else(|| BinaryError::Build("the script printed no directory".to_owned()))
}
