use shards::{shard, Row, Segment, SplitRows};

fn rows() -> Vec<Row> {
    vec![
        Row {
            tokens: vec![1, 2, 3, 70_000, 5],
            segments: vec![Segment { start: 0, doc: 0, doc_offset: 0 }, Segment { start: 3, doc: 7, doc_offset: 12 }],
        },
        Row { tokens: vec![9; 8], segments: vec![Segment { start: 0, doc: 2, doc_offset: 0 }] },
    ]
}

#[test]
fn rows_survive_encoding_at_both_widths() {
    for (width, mut rows) in [(4, rows()), (2, rows())] {
        if width == 2 {
            rows[0].tokens[3] = 65_535;
        }
        let bytes = shard::encode(&rows, 8, width, 0);
        let mut decoded = SplitRows { seq_len: 8, ..Default::default() };
        shard::decode_into(&bytes, &mut decoded).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!((0..2).map(|i| decoded.row(i)).collect::<Vec<_>>(), rows);
        assert_eq!(decoded.padded_row(0)[5..], [0, 0, 0]);
        assert_eq!(decoded.row(0).doc_starts(), [0, 3]);
    }
}

#[test]
fn damaged_layouts_are_rejected_with_a_reason() {
    let bytes = shard::encode(&rows(), 8, 4, 0);
    let decode = |bytes: &[u8], seq_len: u32| {
        let mut into = SplitRows { seq_len, ..Default::default() };
        shard::decode_into(bytes, &mut into).unwrap_err()
    };
    assert!(decode(&bytes[..bytes.len() - 1], 8).contains("truncated"));
    assert!(decode(&[&bytes[..], &[0]].concat(), 8).contains("trailing"));
    assert!(decode(&bytes, 16).contains("the manifest says 16"));
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert!(decode(&magic, 8).contains("magic"));
    let mut version = bytes.clone();
    version[8] = 9;
    assert!(decode(&version, 8).contains("version 9"));
    // Row 0 claims 9 tokens in rows of 8: the lengths block follows 2 rows × 8 tokens × 4 bytes.
    let mut length = bytes.clone();
    let at = 32 + 2 * 8 * 4;
    length[at] = 9;
    assert!(decode(&length, 8).contains("more than seq_len"));
}
