//! Free disk space, checked before a large write: a full disk otherwise surfaces as whatever
//! the serializer that hit it says ("error while writing multi-byte MessagePack value").

use anyhow::{bail, Result};
use std::path::Path;

/// Bytes an unprivileged process may still write on the filesystem holding `path` (or its
/// nearest existing ancestor); `None` where the platform does not say.
fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists() && !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    free_bytes_at(existing)
}

#[cfg(unix)]
fn free_bytes_at(path: &Path) -> Option<u64> {
    let stats = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stats.blocks_available() as u64 * stats.fragment_size() as u64)
}

#[cfg(not(unix))]
fn free_bytes_at(_: &Path) -> Option<u64> {
    None
}

/// Refuse to write `what` (about `needed` bytes) into `dir` when its disk has less free.
pub fn ensure_free(dir: &Path, needed: u64, what: &str) -> Result<()> {
    match free_bytes(dir) {
        Some(free) if free < needed => bail!(
            "the disk holding {} is full: {what} needs about {}, and {} is free; free some space (or choose \
             an output on another disk) and run again",
            dir.display(),
            size(needed),
            size(free)
        ),
        _ => Ok(()),
    }
}

/// A size as a person reads it: `1.5 GiB`, `12.0 MiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_larger_than_the_disk_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|free| free > 0));
        ensure_free(dir.path(), 1, "a checkpoint").unwrap();
        let error = ensure_free(&dir.path().join("not/yet"), u64::MAX / 2, "a checkpoint").unwrap_err().to_string();
        assert!(error.contains("is full: a checkpoint needs about") && error.contains("GiB"), "{error}");
    }
}
