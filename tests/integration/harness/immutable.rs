//! Files that even root cannot write, for the faults of a read-only state directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes files immutable (`chattr +i`) so that even root cannot write them, until dropped.
pub struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// Sets the immutable attribute; panics with the reason when the filesystem refuses.
    pub fn new(paths: &[&Path]) -> Self {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        for path in &paths {
            let output = Command::new("chattr")
                .arg("+i")
                .arg(path)
                .output()
                .expect("chattr runs");
            assert!(
                output.status.success(),
                "cannot make {} immutable (this test needs root and chattr support): {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Self(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(path).output();
        }
    }
}
