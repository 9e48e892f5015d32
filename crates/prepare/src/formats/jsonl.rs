use super::RawJoke;
use anyhow::{bail, Context, Result};
use std::io::BufRead;

/// One JSON object per line; the joke is `text_field`, the score (if any) `score`.
pub(super) fn read(reader: impl BufRead, text_field: &str, sink: &mut dyn FnMut(RawJoke)) -> Result<u64> {
    let mut count = 0;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("line {number}"))?;
        let line = line.trim_start_matches('\u{feff}');
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {number}: not valid JSON"))?;
        let Some(text) = value.get(text_field) else {
            bail!("line {number}: no field `{text_field}` (choose another with --text-field)")
        };
        let text = match text {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => bail!("line {number}: `{text_field}` is {other}, not a string"),
        };
        sink(RawJoke { text, score: value.get("score").and_then(|s| s.as_f64()) });
        count += 1;
    }
    Ok(count)
}
