//! The hidden leftovers of writes that a killed process never finished.

use anyhow::{Context, Result};
use std::{
    fs,
    path::{Path, PathBuf},
};

/// The hidden name a write of `name` by this process goes under (`.NAME.partial-PID`).
pub(crate) fn partial_name(name: &str) -> String {
    format!(".{name}.partial-{}", std::process::id())
}

/// The hidden name the output `name` is moved to while this process replaces it (`.NAME.old-PID`).
pub(crate) fn old_name(name: &str) -> String {
    format!(".{name}.old-{}", std::process::id())
}

/// Whether `name` is one of the two names above, of any output and process.
pub(crate) fn is_interrupted_write(name: &str) -> bool {
    name.starts_with('.') && (name.contains(".partial-") || name.contains(".old-"))
}

/// The directory `path` is written in (`.` for a bare name), created when missing.
pub(crate) fn parent_dir(path: &Path) -> Result<PathBuf> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    Ok(parent)
}

/// Which leftovers to look at.
pub enum Leftovers<'a> {
    /// Only those of writes of this name (`.NAME.partial-PID`, `.NAME.old-PID`): the directory
    /// around an output may be the user's, with anything in it.
    Of(&'a str),
    /// Every one: the directory is the caller's own (a run's `checkpoints/`).
    All,
}

/// Remove from `dir` the staging files and directories of processes that no longer run. Those
/// of live processes are theirs: another stage may be writing beside us.
pub fn remove_dead_leftovers(dir: &Path, which: Leftovers) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let chosen = match which {
            Leftovers::Of(target) => {
                [".partial-", ".old-"].iter().any(|kind| name.starts_with(&format!(".{target}{kind}")))
            }
            Leftovers::All => is_interrupted_write(&name),
        };
        if !chosen || !writer_is_gone(&name) {
            continue;
        }
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path).ok(),
            _ => fs::remove_file(&path).ok(),
        };
    }
}

/// Whether the process named at the end of a staging name (`….partial-PID`) has ended. Only
/// where the process table can be read (`/proc`); elsewhere leftovers stay.
fn writer_is_gone(name: &str) -> bool {
    let Some(pid) = name.rsplit('-').next().and_then(|pid| pid.parse::<u32>().ok()) else { return false };
    let proc = Path::new("/proc");
    pid != std::process::id() && proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}
