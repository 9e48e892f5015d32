//! Rows that pack several documents: with `Documents`, every document gets the logits it
//! gets when it is run alone.

use burn::{backend::NdArray, prelude::*, tensor::TensorData};
use gpt2::{hf, Documents, Gpt2};
use std::path::Path;

type B = NdArray<f32>;

fn tiny() -> Gpt2<B> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    hf::load_dir::<B>(&dir, &Default::default()).unwrap().1
}

fn tokens(ids: &[i64], batch: usize) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [batch, ids.len() / batch]), &Default::default())
}

fn max_difference(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn each_packed_document_gets_the_logits_it_gets_alone() {
    let model = tiny();
    // Row 0: documents of 5, 7 and 4 tokens, then 4 of padding. Row 1: one document.
    let documents =
        [(0..5).map(|i| 10 + i).collect::<Vec<i64>>(), (0..7).map(|i| 40 + 3 * i).collect(), vec![7, 8, 9, 7]];
    let width = 20;
    let mut ids: Vec<i64> = documents.concat();
    ids.resize(width, 0);
    ids.extend((0..width as i64).map(|i| (i * 13) % 97));
    let starts = vec![vec![0, 5, 12], vec![0]];
    let packed = model.forward_documents(tokens(&ids, 2), &Documents::new(&starts, width, &Default::default()));
    let vocab = packed.dims()[2];

    let mut start = 0;
    for document in &documents {
        let alone = model.forward(tokens(document, 1));
        let slice = packed.clone().slice([0..1, start..start + document.len(), 0..vocab]);
        assert!(
            max_difference(slice, alone) < 1e-5,
            "the document at offset {start} differs from the same document alone"
        );
        start += document.len();
    }
    // A row of one document is what a plain forward pass computes.
    let single = packed.clone().slice([1..2, 0..width, 0..vocab]);
    assert!(max_difference(single, model.forward(tokens(&ids[width..], 1))) < 1e-5);
    // Without the document mask the later documents see the earlier ones.
    let plain = model.forward(tokens(&ids, 2)).slice([0..1, 5..12, 0..vocab]);
    assert!(max_difference(plain, packed.slice([0..1, 5..12, 0..vocab])) > 1e-3);
}
