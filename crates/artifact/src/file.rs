use crate::leftovers::{self, Leftovers};
use anyhow::{Context, Result};
use std::{fs, path::Path};

/// Write `bytes` to `path` through a hidden `.NAME.partial-PID` beside it, so that `path` is
/// never half-written; missing parent directories are created. A failed write removes its
/// partial file; those of killed processes are removed by the next write of the same file.
pub fn write_atomically(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    let parent = leftovers::parent_dir(path)?;
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?.to_string_lossy();
    leftovers::remove_dead_leftovers(&parent, Leftovers::Of(&name));
    let temporary = parent.join(leftovers::partial_name(&name));
    let written = fs::write(&temporary, bytes).with_context(|| format!("writing {}", path.display())).and_then(|()| {
        fs::rename(&temporary, path).with_context(|| format!("renaming {} into place", temporary.display()))
    });
    if written.is_err() {
        fs::remove_file(&temporary).ok();
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/out.jsonl");
        write_atomically(&path, "old").unwrap();
        write_atomically(&path, "new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go: the rename fails.
        let path = dir.path().join("out.jsonl");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "").unwrap();
        write_atomically(&path, "new").unwrap_err();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out.jsonl"]);
    }
}
