//! The decoded rows of one split, as the shard codec fills them and training reads them.

use crate::{Row, Segment};
use std::collections::BTreeMap;

/// All rows of one split, decoded: a flat `rows × seq_len` token block (padded) with each row's
/// true length and document segments.
#[derive(Debug, Clone, Default)]
pub struct SplitRows {
    pub seq_len: u32,
    pub tokens: Vec<u32>,
    pub lengths: Vec<u32>,
    pub segments: Vec<Segment>,
    /// `segments[segment_ends[i-1]..segment_ends[i]]` belong to row `i`.
    pub segment_ends: Vec<usize>,
}

impl SplitRows {
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Tokens actually held (padding excluded).
    pub fn token_count(&self) -> u64 {
        self.lengths.iter().map(|&l| l as u64).sum()
    }

    /// Row `i` padded to `seq_len`.
    pub fn padded_row(&self, i: usize) -> &[u32] {
        let width = self.seq_len as usize;
        &self.tokens[i * width..(i + 1) * width]
    }

    /// Row `i` without padding.
    pub fn row_tokens(&self, i: usize) -> &[u32] {
        &self.padded_row(i)[..self.lengths[i] as usize]
    }

    pub fn row_segments(&self, i: usize) -> &[Segment] {
        let start = if i == 0 { 0 } else { self.segment_ends[i - 1] };
        &self.segments[start..self.segment_ends[i]]
    }

    pub fn row(&self, i: usize) -> Row {
        Row { tokens: self.row_tokens(i).to_vec(), segments: self.row_segments(i).to_vec() }
    }

    /// Every document's tokens, reassembled from its segments (the pieces of a document longer
    /// than a row joined back together), in order of first appearance: packing order.
    pub fn documents(&self) -> Vec<Vec<u32>> {
        let mut first_seen = Vec::new();
        let mut pieces: BTreeMap<u32, Vec<(u32, Vec<u32>)>> = BTreeMap::new();
        for i in 0..self.len() {
            let row = self.row(i);
            for (segment, range) in row.segment_ranges() {
                let entry = pieces.entry(segment.doc).or_default();
                if entry.is_empty() {
                    first_seen.push(segment.doc);
                }
                entry.push((segment.doc_offset, row.tokens[range].to_vec()));
            }
        }
        first_seen
            .into_iter()
            .map(|doc| {
                let mut parts = pieces.remove(&doc).expect("recorded above");
                parts.sort_by_key(|(offset, _)| *offset);
                parts.into_iter().flat_map(|(_, tokens)| tokens).collect()
            })
            .collect()
    }
}
