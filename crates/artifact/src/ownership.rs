//! A stage replaces only what it wrote.

use crate::leftovers::is_interrupted_write;
use anyhow::{bail, Context, Result};
use std::{fs, path::Path};

/// What a stage's output directory may hold: the file that marks it as that stage's output,
/// and the names of everything the stage writes into it.
pub struct OutputDir {
    /// The stage, for messages.
    pub stage: &'static str,
    /// The file the stage writes into every output it makes (`manifest.json`, `run.json`).
    pub marker: &'static str,
    /// Whether the stage writes an entry of this name.
    pub writes: fn(&str) -> bool,
}

impl OutputDir {
    /// Succeed when `dir` may be replaced or written by this stage: it does not exist, is an
    /// empty directory, or is a directory with the stage's marker holding only what the stage
    /// writes (and the hidden leftovers of its interrupted writes). Anything else (a file,
    /// another directory with the user's files, another stage's output) is refused, naming
    /// what is there.
    pub fn check_replaceable(&self, dir: &Path) -> Result<()> {
        let metadata = match fs::symlink_metadata(dir) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
        };
        if !metadata.is_dir() {
            bail!(
                "{} is a file, not a directory {} wrote: {} leaves it alone; choose a new or empty directory",
                dir.display(),
                self.stage,
                self.stage
            );
        }
        let mut names: Vec<String> = fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display()))?;
        if names.is_empty() {
            return Ok(());
        }
        names.sort();
        if !names.iter().any(|name| name == self.marker) {
            bail!(
                "{} is not an output of {} (it has no {}) and holds {}: {} replaces only its own output; \
                 choose a new or empty directory",
                dir.display(),
                self.stage,
                self.marker,
                listing(&names),
                self.stage
            );
        }
        let foreign: Vec<String> =
            names.into_iter().filter(|name| !(self.writes)(name) && !is_interrupted_write(name)).collect();
        if !foreign.is_empty() {
            bail!(
                "{} holds {} besides what {} wrote there: move {} elsewhere first, or choose another directory",
                dir.display(),
                listing(&foreign),
                self.stage,
                if foreign.len() == 1 { "it" } else { "them" }
            );
        }
        Ok(())
    }
}

/// Up to three names, then how many more.
fn listing(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    match names.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREPARED: OutputDir = OutputDir {
        stage: "prepare",
        marker: "manifest.json",
        writes: |name| name == "manifest.json" || name.ends_with(".shard"),
    };

    #[test]
    fn absent_and_empty_directories_are_free() {
        let root = tempfile::tempdir().unwrap();
        PREPARED.check_replaceable(&root.path().join("new")).unwrap();
        PREPARED.check_replaceable(root.path()).unwrap();
    }

    #[test]
    fn the_stage_s_own_output_is_replaceable() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("manifest.json"), "{}").unwrap();
        fs::write(root.path().join("train-00000.shard"), "").unwrap();
        fs::create_dir(root.path().join(".x.partial-12")).unwrap();
        PREPARED.check_replaceable(root.path()).unwrap();
    }

    #[test]
    fn other_directories_and_files_are_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("jokes.csv"), "a").unwrap();
        let error = PREPARED.check_replaceable(root.path()).unwrap_err().to_string();
        assert!(error.contains("has no manifest.json") && error.contains("jokes.csv"), "{error}");

        fs::write(root.path().join("manifest.json"), "{}").unwrap();
        let error = PREPARED.check_replaceable(root.path()).unwrap_err().to_string();
        assert!(error.contains("holds jokes.csv besides what prepare wrote"), "{error}");

        let error = PREPARED.check_replaceable(&root.path().join("jokes.csv")).unwrap_err().to_string();
        assert!(error.contains("is a file"), "{error}");
    }
}
