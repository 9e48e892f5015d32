//! A pipeline file is one TOML file per experiment with a table per stage (`[prepare]`,
//! `[train]`, `[sample]`) whose keys are that stage's flags. This crate turns a table into the
//! flags themselves, so a stage parses a pipeline file and its command line with one parser and
//! the two can never drift apart. Flags on the command line come after, and so win.

use anyhow::{bail, Context, Result};
use std::{ffi::OsString, path::Path};

/// The flag that names a pipeline file on every stage's command line.
pub const PIPELINE_FLAG: &str = "--pipeline";

/// The arguments a stage should parse: its program name, the flags from `[stage]` of the
/// pipeline file named by `--pipeline` (if any), then the command line as given.
pub fn stage_argv(stage: &str, argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(path) = pipeline_path(&argv) else { return Ok(argv) };
    let mut merged = vec![argv[0].clone()];
    merged.extend(table_flags(Path::new(&path), stage)?);
    merged.extend(argv.into_iter().skip(1));
    Ok(merged)
}

fn pipeline_path(argv: &[OsString]) -> Option<OsString> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == PIPELINE_FLAG {
            return args.next().cloned();
        }
        if let Some(value) = text.strip_prefix("--pipeline=") {
            return Some(value.into());
        }
    }
    None
}

/// The `[stage]` table of a pipeline file as flags: `key = "v"` → `--key=v`, `flag = true` →
/// `--flag`, `flag = false` → nothing, `key = [a, b]` → `--key=a --key=b`. Underscores in keys
/// read as dashes, so `seq_len` and `seq-len` both mean `--seq-len`.
pub fn table_flags(path: &Path, stage: &str) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading pipeline file {}", path.display()))?;
    let document: toml::Table = text.parse().with_context(|| format!("{}: not valid TOML", path.display()))?;
    let Some(table) = document.get(stage) else { return Ok(Vec::new()) };
    let Some(table) = table.as_table() else { bail!("{}: `{stage}` must be a table ([{stage}])", path.display()) };
    let mut flags = Vec::new();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            let text = match value {
                toml::Value::Boolean(true) => {
                    flags.push(flag.clone().into());
                    continue;
                }
                toml::Value::Boolean(false) => continue,
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => bail!("{}: [{stage}] {key}: unsupported value {other}", path.display()),
            };
            flags.push(format!("{flag}={text}").into());
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn table_becomes_flags_and_command_line_comes_last() {
        let file = write(
            "[prepare]\nsource = \"a.json\"\nseq_len = 550\nval-fraction = 0.1\nforce = true\nquiet = false\n\
             blocklist = [\"x\", \"y\"]\n[train]\nlr = 3e-5\n",
        );
        let argv = vec!["prepare".into(), "--pipeline".into(), file.path().into(), "--seq-len=64".into()];
        let merged = strings(stage_argv("prepare", argv).unwrap());
        assert_eq!(
            merged[..7],
            [
                "prepare",
                "--blocklist=x",
                "--blocklist=y",
                "--force",
                "--seq-len=550",
                "--source=a.json",
                "--val-fraction=0.1"
            ]
        );
        assert_eq!(merged[7..], ["--pipeline", &file.path().to_string_lossy(), "--seq-len=64"]);
    }

    #[test]
    fn missing_table_gives_no_flags_and_bad_files_are_named() {
        let file = write("[sample]\nprompt = \"JOKE:\"\n");
        assert!(table_flags(file.path(), "prepare").unwrap().is_empty());
        let bad = write("[prepare\n");
        let message = format!("{:#}", table_flags(bad.path(), "prepare").unwrap_err());
        assert!(message.contains("not valid TOML"), "{message}");
        let message = format!("{:#}", table_flags(Path::new("/no/such.toml"), "prepare").unwrap_err());
        assert!(message.contains("/no/such.toml"), "{message}");
    }
}
