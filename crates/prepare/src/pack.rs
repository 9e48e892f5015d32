//! Packing documents into rows of at most `seq_len` tokens.

use shards::{Row, Segment};
use std::collections::BTreeSet;

pub struct Packed {
    pub rows: Vec<Row>,
    /// Documents longer than a row, stored as consecutive chunks.
    pub split_documents: u64,
}

/// Pack documents (token ids, indexed by position) into rows.
///
/// A document longer than a row first gives up whole rows of consecutive chunks; the pieces that
/// remain (whole short documents and the tails of long ones) are packed best-fit decreasing:
/// longest first, each into the open row it fills most tightly. That wastes far less than
/// filling rows in corpus order (next-fit), at the cost of reordering documents, which training
/// shuffles anyway. Deterministic: ties keep document order.
pub fn pack(documents: &[Vec<u32>], seq_len: usize) -> Packed {
    assert!(seq_len > 0, "seq_len must be positive");
    let mut rows: Vec<Row> = Vec::new();
    let mut split_documents = 0;
    // (document, offset, length) of every piece still to place.
    let mut pieces: Vec<(usize, usize, usize)> = Vec::with_capacity(documents.len());
    for (doc, tokens) in documents.iter().enumerate() {
        if tokens.len() > seq_len {
            split_documents += 1;
        }
        let whole_rows = tokens.len() / seq_len;
        for chunk in 0..whole_rows {
            let offset = chunk * seq_len;
            rows.push(Row {
                tokens: tokens[offset..offset + seq_len].to_vec(),
                segments: vec![Segment { start: 0, doc: doc as u32, doc_offset: offset as u32 }],
            });
        }
        let tail = tokens.len() - whole_rows * seq_len;
        if tail > 0 {
            pieces.push((doc, whole_rows * seq_len, tail));
        }
    }
    pieces.sort_by_key(|&(doc, _, len)| (std::cmp::Reverse(len), doc));

    // Open rows as (free space, row index): the first entry at or above a piece's length is the
    // tightest fit, the oldest such row on ties.
    let mut open: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (doc, offset, len) in pieces {
        let row_index = match open.range((len, 0)..).next().copied() {
            Some(entry) => {
                open.remove(&entry);
                entry.1
            }
            None => {
                rows.push(Row { tokens: Vec::with_capacity(seq_len), segments: Vec::new() });
                rows.len() - 1
            }
        };
        let row = &mut rows[row_index];
        row.segments.push(Segment { start: row.tokens.len() as u32, doc: doc as u32, doc_offset: offset as u32 });
        row.tokens.extend_from_slice(&documents[doc][offset..offset + len]);
        let free = seq_len - row.tokens.len();
        if free > 0 {
            open.insert((free, row_index));
        }
    }
    Packed { rows, split_documents }
}

/// Tokens held over token capacity.
pub fn fill_ratio(rows: &[Row], seq_len: usize) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    rows.iter().map(|r| r.tokens.len()).sum::<usize>() as f64 / (rows.len() * seq_len) as f64
}
