use super::RawJoke;
use anyhow::{Context, Result};
use std::io::BufRead;

/// Documents separated by one or more blank (or whitespace-only) lines.
pub(super) fn read(mut reader: impl BufRead, sink: &mut dyn FnMut(RawJoke)) -> Result<u64> {
    super::skip_bom(&mut reader)?;
    let mut count = 0;
    let mut document = String::new();
    let mut flush = |document: &mut String, count: &mut u64| {
        if !document.trim().is_empty() {
            sink(RawJoke { text: std::mem::take(document), score: None });
            *count += 1;
        }
        document.clear();
    };
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("line {}", index + 1))?;
        if line.trim().is_empty() {
            flush(&mut document, &mut count);
        } else {
            document.push_str(&line);
            document.push('\n');
        }
    }
    flush(&mut document, &mut count);
    Ok(count)
}
