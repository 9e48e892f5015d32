use super::RawJoke;
use anyhow::{bail, Context, Result};
use std::io::BufRead;

/// Reads the column named `text_column` (default `Joke`, any case) of each record.
pub(super) fn read(mut reader: impl BufRead, text_column: Option<&str>, sink: &mut dyn FnMut(RawJoke)) -> Result<u64> {
    super::skip_bom(&mut reader)?;
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
    let headers = csv.headers().context("reading the header row")?.clone();
    let wanted = text_column.unwrap_or("Joke");
    let Some(column) = headers.iter().position(|h| h.trim().eq_ignore_ascii_case(wanted)) else {
        bail!(
            "no column named `{wanted}` (columns: {}); pick one with --text-column",
            headers.iter().collect::<Vec<_>>().join(", ")
        )
    };
    let mut count = 0;
    for record in csv.records() {
        let record = record?;
        let Some(text) = record.get(column) else {
            bail!("record on line {} has no `{wanted}` field", record.position().map_or(0, |p| p.line()))
        };
        sink(RawJoke { text: text.to_string(), score: None });
        count += 1;
    }
    Ok(count)
}
