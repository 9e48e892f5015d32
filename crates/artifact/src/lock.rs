//! One writer per output: an advisory lock held for the whole run.

use anyhow::{bail, Context, Result};
use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

/// An exclusive lock on `target`, held until dropped: a second run writing the same output
/// would delete or mix into what the first is still writing. The lock is the operating
/// system's (`flock`), so it ends with its process, however that process ends: a killed
/// run's lock is free for the next one without any clean-up.
///
/// The lock file `.NAME.lock` lies beside `target`, not inside it, because stages swap
/// their output directories in whole. It stays there after the run: deleting it would let
/// two later runs lock two different files for the same output.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Take the lock on `target` for `stage`, or fail naming the process that holds it.
    pub fn acquire(target: &Path, stage: &str) -> Result<Self> {
        let path = lock_path(target)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another process".to_string() } else { holder.to_string() };
                bail!(
                    "{} is being written by {holder}: wait for it to finish, or choose another output \
                     (two runs on one output would overwrite each other)",
                    target.display()
                );
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("locking {}", path.display()));
            }
        }
        // Who holds it, for the message a second run prints.
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "{stage} (pid {})", std::process::id())?;
        Ok(Self { _file: file })
    }
}

fn lock_path(target: &Path) -> Result<PathBuf> {
    let name =
        target.file_name().with_context(|| format!("output {} has no file name", target.display()))?.to_string_lossy();
    Ok(target.with_file_name(format!(".{name}.lock")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_ends() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        let first = OutputLock::acquire(&target, "prepare").unwrap();
        let error = OutputLock::acquire(&target, "prepare").unwrap_err().to_string();
        assert!(error.contains("is being written by prepare (pid"), "{error}");
        drop(first);
        OutputLock::acquire(&target, "prepare").unwrap();
    }

    #[test]
    fn other_outputs_are_not_locked() {
        let root = tempfile::tempdir().unwrap();
        let _a = OutputLock::acquire(&root.path().join("a"), "train").unwrap();
        OutputLock::acquire(&root.path().join("b"), "train").unwrap();
    }
}
