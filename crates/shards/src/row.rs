/// One packed row: the tokens of one or more documents laid end to end, at most `seq_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub tokens: Vec<u32>,
    /// The pieces of documents in this row, in order; the first starts at 0.
    pub segments: Vec<Segment>,
}

/// A run of one document's tokens inside a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the segment's first token within the row.
    pub start: u32,
    /// Index of the document among its split's documents.
    pub doc: u32,
    /// Offset of the segment's first token within the document: non-zero only for the later
    /// pieces of a document longer than a row.
    pub doc_offset: u32,
}

impl Row {
    /// Offsets within the row where each segment begins (document boundaries).
    pub fn doc_starts(&self) -> Vec<u32> {
        self.segments.iter().map(|s| s.start).collect()
    }

    /// The token range `[start, end)` of each segment within the row.
    pub fn segment_ranges(&self) -> impl Iterator<Item = (Segment, std::ops::Range<usize>)> + '_ {
        let ends = self.segments.iter().skip(1).map(|s| s.start as usize).chain([self.tokens.len()]);
        self.segments.iter().zip(ends).map(|(s, end)| (*s, s.start as usize..end))
    }
}
