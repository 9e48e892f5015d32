//! Joke corpus readers. Each streams records to a callback so that a large file is never held
//! whole in memory next to the jokes taken from it.

mod csv;
mod jsonl;
mod taivop;
mod text;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
};

/// One record as read from the source, before cleaning.
#[derive(Debug, Clone, PartialEq)]
pub struct RawJoke {
    pub text: String,
    /// Reddit score, where the format has one.
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A JSON array of objects from the taivop joke-dataset (`reddit_jokes.json`: title + body +
    /// score; `stupidstuff.json`: body; `wocka.json`: title + body).
    TaivopJson,
    /// CSV with a header row, Short Jokes style `ID,Joke` (RFC 4180 quoting, BOM, CRLF); tab
    /// separated for `.tsv` files.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Plain text, documents separated by blank lines.
    Text,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::TaivopJson => "taivop-json",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Text => "text",
        }
    }

    /// Guess the format from the file's extension, then from its first bytes.
    pub fn detect(path: &Path) -> Result<Format> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match extension.as_str() {
            "csv" | "tsv" => return Ok(Format::Csv),
            "jsonl" | "ndjson" => return Ok(Format::Jsonl),
            "txt" | "text" | "md" => return Ok(Format::Text),
            _ => {}
        }
        let mut head = [0u8; 4096];
        let n = File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .with_context(|| format!("reading {}", path.display()))?;
        let head = head[..n].strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head[..n]);
        Ok(match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Format::TaivopJson,
            Some(b'{') => Format::Jsonl,
            Some(_) if extension == "json" => {
                bail!("{}: a .json file that is not a JSON array; pass --format", path.display())
            }
            _ => Format::Text,
        })
    }
}

/// Which fields hold the joke, for the formats that have named fields.
#[derive(Debug, Clone)]
pub struct Fields {
    /// CSV column holding the joke; `None`: a column named `Joke` (any case).
    pub text_column: Option<String>,
    /// JSONL field holding the joke.
    pub text_field: String,
    /// What separates CSV fields; `None`: a tab in a `.tsv` file, a comma otherwise.
    pub delimiter: Option<u8>,
}

/// What a source held.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SourceCounts {
    /// Every record, malformed ones included.
    pub records: u64,
    /// Records left out because they cannot be read as written (a CSV quote left open).
    pub malformed: u64,
    /// The line the first malformed record starts on.
    pub first_malformed_line: Option<u64>,
}

impl SourceCounts {
    fn records(records: u64) -> Self {
        Self { records, ..Self::default() }
    }
}

/// Read every record of `path` into `sink`.
pub fn read(path: &Path, format: Format, fields: &Fields, sink: &mut dyn FnMut(RawJoke)) -> Result<SourceCounts> {
    let file = File::open(path).with_context(|| format!("opening source {}", path.display()))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let result = match format {
        Format::TaivopJson => taivop::read(reader, sink).map(SourceCounts::records),
        Format::Csv => {
            let is_tsv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
            let delimiter = fields.delimiter.unwrap_or(if is_tsv { b'\t' } else { b',' });
            csv::read(reader, fields.text_column.as_deref(), delimiter, sink)
        }
        Format::Jsonl => jsonl::read(reader, &fields.text_field, sink).map(SourceCounts::records),
        Format::Text => text::read(reader, sink).map(SourceCounts::records),
    };
    result.with_context(|| format!("{}: reading as {}", path.display(), format.name()))
}

/// Skip a UTF-8 byte order mark at the start of a stream.
fn skip_bom(reader: &mut impl BufRead) -> std::io::Result<()> {
    if reader.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(())
}
