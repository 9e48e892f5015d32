use super::{RawJoke, SourceCounts};
use anyhow::{bail, Context, Result};
use std::{
    cell::RefCell,
    io::{BufRead, Read},
    rc::Rc,
};

/// Reads the column named `text_column` (default `Joke`, any case) of each record, fields
/// separated by `delimiter`. A record whose quoting is broken is counted as malformed and left
/// out: the csv crate, like Python's default reader, lets a stray quote run on to the next one,
/// merging the jokes between them into one.
pub(super) fn read(
    mut reader: impl BufRead,
    text_column: Option<&str>,
    delimiter: u8,
    sink: &mut dyn FnMut(RawJoke),
) -> Result<SourceCounts> {
    super::skip_bom(&mut reader)?;
    let raw = Rc::new(RefCell::new(RawBytes::default()));
    let recording = Recording { inner: reader, raw: Rc::clone(&raw) };
    let mut csv = csv::ReaderBuilder::new().has_headers(true).delimiter(delimiter).from_reader(recording);
    let headers = csv.headers().context("reading the header row")?.clone();
    let wanted = text_column.unwrap_or("Joke");
    let Some(column) = headers.iter().position(|h| h.trim().eq_ignore_ascii_case(wanted)) else {
        bail!(
            "no column named `{wanted}` (columns: {}){}; pick one with --text-column",
            headers.iter().collect::<Vec<_>>().join(", "),
            if headers.len() == 1 { ", or the fields are separated by another character: set --delimiter" } else { "" }
        )
    };
    raw.borrow_mut().drop_before(csv.position().byte());
    let mut counts = SourceCounts::default();
    let mut record = csv::StringRecord::new();
    while csv.read_record(&mut record)? {
        counts.records += 1;
        let start = record.position().map_or(0, |p| p.byte());
        let line = record.position().map_or(0, |p| p.line());
        let end = csv.position().byte();
        let well_quoted = strictly_quoted(raw.borrow().between(start, end), delimiter);
        raw.borrow_mut().drop_before(end);
        if !well_quoted {
            counts.malformed += 1;
            counts.first_malformed_line.get_or_insert(line);
            continue;
        }
        let Some(text) = record.get(column) else { bail!("record on line {line} has no `{wanted}` field") };
        sink(RawJoke { text: text.to_string(), score: None });
    }
    Ok(counts)
}

/// The bytes the csv reader has taken from the source and not yet checked, from byte
/// `offset` of the source on: at most one record plus the reader's own buffer.
#[derive(Default)]
struct RawBytes {
    offset: u64,
    bytes: Vec<u8>,
}

impl RawBytes {
    fn between(&self, start: u64, end: u64) -> &[u8] {
        let clamp = |at: u64| (at.saturating_sub(self.offset) as usize).min(self.bytes.len());
        &self.bytes[clamp(start)..clamp(end)]
    }

    fn drop_before(&mut self, at: u64) {
        let n = (at.saturating_sub(self.offset) as usize).min(self.bytes.len());
        self.bytes.drain(..n);
        self.offset += n as u64;
    }
}

/// A reader that keeps a copy of what passes through it.
struct Recording<R> {
    inner: R,
    raw: Rc<RefCell<RawBytes>>,
}

impl<R: Read> Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.raw.borrow_mut().bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Whether a record's quoting is RFC 4180's: a field that opens with a quote ends with a quote
/// (doubled quotes inside are one quote) that is followed by the delimiter or the end of the
/// record. Python's reader with `strict=True` refuses the same records.
fn strictly_quoted(record: &[u8], delimiter: u8) -> bool {
    let mut at = 0;
    loop {
        if record.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match record.get(at) {
                    None => return false,
                    Some(b'"') if record.get(at + 1) == Some(&b'"') => at += 2,
                    Some(b'"') => break,
                    Some(_) => at += 1,
                }
            }
            at += 1;
            match record.get(at) {
                Some(&byte) if byte == delimiter => at += 1,
                None | Some(b'\r' | b'\n') => return true,
                Some(_) => return false,
            }
        } else {
            match record[at..].iter().position(|&b| b == delimiter || b == b'\n' || b == b'\r') {
                Some(n) if record[at + n] == delimiter => at += n + 1,
                _ => return true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strictly_quoted;

    #[test]
    fn quoting_is_checked_as_rfc_4180_has_it() {
        for good in ["1,plain\n", "1,\"quoted, with \"\"quotes\"\"\"\r\n", "1,\"a\nb\"", "1,,\n", "\"x\",\"y\""] {
            assert!(strictly_quoted(good.as_bytes(), b','), "{good:?}");
        }
        for bad in ["1,\"unterminated quote\n2,\"fine\"\n", "1,\"open", "1,\"a\"b,c\n"] {
            assert!(!strictly_quoted(bad.as_bytes(), b','), "{bad:?}");
        }
        assert!(strictly_quoted(b"1\t\"a,b\"\n", b'\t'));
    }
}
