//! One shard file: a zstd frame holding a fixed header, then the token rows (fixed width,
//! little-endian, padded to `seq_len`), each row's true length, and its document segments.
//!
//! ```text
//! magic "GPT2ROWS" | version u32 | token_bytes u32 | seq_len u32 | rows u32 | segments u32 | pad_id u32
//! tokens   rows × seq_len × token_bytes
//! lengths  rows × u32
//! counts   rows × u32              segments per row
//! segments segments × (start u32, doc u32, doc_offset u32)
//! ```

use crate::{Row, Segment, ShardError, SplitRows, FORMAT_VERSION};
use std::path::Path;

const MAGIC: &[u8; 8] = b"GPT2ROWS";
const HEADER_BYTES: usize = 8 + 6 * 4;
const ZSTD_LEVEL: i32 = 3;

/// Serialise rows into the uncompressed shard layout.
pub fn encode(rows: &[Row], seq_len: u32, token_bytes: u32, pad_id: u32) -> Vec<u8> {
    let total_segments: usize = rows.iter().map(|r| r.segments.len()).sum();
    let mut out = Vec::with_capacity(
        HEADER_BYTES + rows.len() * (seq_len as usize * token_bytes as usize + 8) + total_segments * 12,
    );
    out.extend_from_slice(MAGIC);
    for field in [FORMAT_VERSION, token_bytes, seq_len, rows.len() as u32, total_segments as u32, pad_id] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    for row in rows {
        assert!(row.tokens.len() <= seq_len as usize, "row longer than seq_len");
        let padding = std::iter::repeat_n(pad_id, seq_len as usize - row.tokens.len());
        for token in row.tokens.iter().copied().chain(padding) {
            match token_bytes {
                2 => out.extend_from_slice(&u16::try_from(token).expect("token id fits u16").to_le_bytes()),
                _ => out.extend_from_slice(&token.to_le_bytes()),
            }
        }
    }
    for row in rows {
        out.extend_from_slice(&(row.tokens.len() as u32).to_le_bytes());
    }
    for row in rows {
        out.extend_from_slice(&(row.segments.len() as u32).to_le_bytes());
    }
    for segment in rows.iter().flat_map(|r| &r.segments) {
        for field in [segment.start, segment.doc, segment.doc_offset] {
            out.extend_from_slice(&field.to_le_bytes());
        }
    }
    out
}

/// Compress and write a shard; returns the sha256 of the file as written.
pub fn write(path: &Path, rows: &[Row], seq_len: u32, token_bytes: u32, pad_id: u32) -> Result<String, ShardError> {
    let compressed =
        zstd::encode_all(&encode(rows, seq_len, token_bytes, pad_id)[..], ZSTD_LEVEL).map_err(ShardError::io(path))?;
    std::fs::write(path, &compressed).map_err(ShardError::io(path))?;
    Ok(artifact::sha256_bytes(&compressed))
}

/// Read a shard, check it against its expected sha256, and append its rows to `into`.
pub fn read_into(path: &Path, expected_sha256: &str, into: &mut SplitRows) -> Result<(), ShardError> {
    let compressed = std::fs::read(path).map_err(ShardError::io(path))?;
    let actual = artifact::sha256_bytes(&compressed);
    if actual != expected_sha256 {
        return Err(ShardError::Checksum { path: path.into(), expected: expected_sha256.into(), actual });
    }
    let bytes = zstd::decode_all(&compressed[..]).map_err(|e| corrupt(path, format!("zstd: {e}")))?;
    decode_into(&bytes, into).map_err(|reason| corrupt(path, reason))
}

fn corrupt(path: &Path, reason: String) -> ShardError {
    ShardError::Corrupt { path: path.into(), reason }
}

/// Parse the uncompressed layout, validating every length and offset.
pub fn decode_into(bytes: &[u8], into: &mut SplitRows) -> Result<(), String> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(8)? != MAGIC {
        return Err("bad magic bytes: not a shard file".into());
    }
    let version = reader.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!("shard format version {version}, this build reads {FORMAT_VERSION}"));
    }
    let (token_bytes, seq_len, rows, total_segments, _pad_id) =
        (reader.u32()?, reader.u32()?, reader.u32()? as usize, reader.u32()? as usize, reader.u32()?);
    if token_bytes != 2 && token_bytes != 4 {
        return Err(format!("token width {token_bytes} bytes (expected 2 or 4)"));
    }
    if seq_len != into.seq_len {
        return Err(format!("rows of {seq_len} tokens, the manifest says {}", into.seq_len));
    }
    let width = seq_len as usize;
    let token_block = reader.take(rows.checked_mul(width * token_bytes as usize).ok_or("row count overflows")?)?;
    let lengths = reader.u32s(rows)?;
    let counts = reader.u32s(rows)?;
    let segments = reader.u32s(total_segments.checked_mul(3).ok_or("segment count overflows")?)?;
    if reader.at != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - reader.at));
    }
    if counts.iter().map(|&c| c as usize).sum::<usize>() != total_segments {
        return Err("per-row segment counts do not add up to the header's total".into());
    }

    match token_bytes {
        2 => into.tokens.extend(token_block.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)),
        _ => into.tokens.extend(token_block.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
    }
    let mut segment_fields = segments.chunks_exact(3);
    for (row, (&length, &count)) in lengths.iter().zip(&counts).enumerate() {
        if length > seq_len {
            return Err(format!("row {row} claims {length} tokens, more than seq_len {seq_len}"));
        }
        let mut previous_start = None;
        for _ in 0..count {
            let f = segment_fields.next().expect("counted above");
            let segment = Segment { start: f[0], doc: f[1], doc_offset: f[2] };
            let in_order = match previous_start {
                None => segment.start == 0,
                Some(previous) => segment.start > previous,
            };
            if !in_order || segment.start >= length {
                return Err(format!("row {row}: segment starts out of order or past the row's end"));
            }
            previous_start = Some(segment.start);
            into.segments.push(segment);
        }
        if length > 0 && count == 0 {
            return Err(format!("row {row} holds tokens but no segment"));
        }
        into.lengths.push(length);
        into.segment_ends.push(into.segments.len());
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| {
            format!("truncated: needed {n} bytes at offset {}, file has {}", self.at, self.bytes.len())
        })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(self.u32s(1)?[0])
    }

    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, String> {
        let block = self.take(n.checked_mul(4).ok_or("length overflows")?)?;
        Ok(block.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}
