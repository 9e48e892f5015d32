//! Building an output directory out of sight and swapping it in whole.

use crate::leftovers::{self, Leftovers};
use anyhow::{Context, Result};
use std::{
    fs,
    path::{Path, PathBuf},
};

/// A hidden directory beside `target` that becomes `target` on [`Staging::commit`]. Dropped
/// without a commit (an error, a panic), it is removed and `target` is left as it was.
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn new(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .with_context(|| format!("output {} has no directory name", target.display()))?
            .to_string_lossy()
            .into_owned();
        let parent = leftovers::parent_dir(target)?;
        // A killed run leaves its staging directory behind; it never looks like an output.
        leftovers::remove_dead_leftovers(&parent, Leftovers::Of(&name));
        let dir = parent.join(leftovers::partial_name(&name));
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, target: target.to_path_buf(), committed: false })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Replace `target` with the staged directory.
    pub fn commit(mut self) -> Result<()> {
        let previous = self
            .dir
            .with_file_name(leftovers::old_name(&self.target.file_name().expect("checked in new").to_string_lossy()));
        let had_previous = self.target.exists();
        if had_previous {
            fs::rename(&self.target, &previous)
                .with_context(|| format!("moving the previous {} aside", self.target.display()))?;
        }
        if let Err(error) = fs::rename(&self.dir, &self.target) {
            if had_previous {
                fs::rename(&previous, &self.target).ok();
            }
            return Err(error).with_context(|| format!("moving the new output into {}", self.target.display()));
        }
        self.committed = true;
        if had_previous {
            fs::remove_dir_all(&previous).with_context(|| format!("removing {}", previous.display()))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            fs::remove_dir_all(&self.dir).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncommitted_stage_leaves_the_previous_output_alone() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("manifest.json"), "old").unwrap();
        {
            let staging = Staging::new(&target).unwrap();
            fs::write(staging.path().join("manifest.json"), "half").unwrap();
            // dropped here, as when a run fails midway
        }
        assert_eq!(fs::read_to_string(target.join("manifest.json")).unwrap(), "old");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1, "staging directory left behind");

        let staging = Staging::new(&target).unwrap();
        fs::write(staging.path().join("manifest.json"), "new").unwrap();
        staging.commit().unwrap();
        assert_eq!(fs::read_to_string(target.join("manifest.json")).unwrap(), "new");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_killed_run_s_leftovers_are_cleared() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        // No process has so high an id (Linux allows at most 2^22).
        fs::create_dir(root.path().join(".out.partial-99999999")).unwrap();
        fs::create_dir(root.path().join(".out.old-99999998")).unwrap();
        // Another output's, in a directory that may be the user's: not ours to judge.
        fs::write(root.path().join(".notes.txt.partial-99999997"), "").unwrap();
        Staging::new(&target).unwrap().commit().unwrap();
        let mut names: Vec<_> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, [".notes.txt.partial-99999997", "out"]);

        // In a directory of the caller's own, every dead process's leftover goes.
        fs::create_dir(root.path().join(".step-0000010.partial-99999996")).unwrap();
        leftovers::remove_dead_leftovers(root.path(), Leftovers::All);
        let names: Vec<_> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out"]);
    }

    #[test]
    fn a_live_process_s_staging_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let live = root.path().join(".other.partial-1");
        fs::create_dir(&live).unwrap();
        Staging::new(&root.path().join("out")).unwrap().commit().unwrap();
        assert!(live.is_dir());
    }
}
