//! The repetition-penalty kernel against the penalty applied on the host, on burn's wgpu backend
//! (with and without fusion; Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test repetition_penalty`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{prelude::*, tensor::TensorPrimitive};
use cube_kernels::RepetitionPenalty;
use support::{normal, primitive, Eager, Fused};

mod support;

/// transformers' rule, on the host: each seen token's logit divided by the penalty where
/// positive, multiplied by it otherwise.
fn penalised(logits: &[f32], vocab: usize, seen: &[Vec<i64>], penalty: f32) -> Vec<f32> {
    let mut out = logits.to_vec();
    for (row, tokens) in seen.iter().enumerate() {
        for &token in tokens {
            let logit = &mut out[row * vocab + token as usize];
            *logit = if *logit > 0.0 { *logit / penalty } else { *logit * penalty };
        }
    }
    out
}

/// Rows of unique seen tokens of several lengths (one with none), padded with `vocab` as the
/// sample stage pads them; the logits include zeros, which are multiplied (and stay zero).
fn check_backend<B: RepetitionPenalty>() {
    let device = Default::default();
    let (rows, vocab, penalty) = (4, 50_257, 1.3);
    let mut logits = normal(rows * vocab, 5);
    logits[vocab + 7] = 0.0;
    let seen: Vec<Vec<i64>> = vec![
        vec![0, 7, 50_256, 1_000],
        vec![7, 3, 9, 12, 200, 40_000, 5, 6, 11],
        vec![],
        (0..300).map(|i| i * 167).collect(),
    ];
    let width = seen.iter().map(Vec::len).max().unwrap();
    let padded: Vec<i64> =
        seen.iter().flat_map(|row| row.iter().copied().chain(std::iter::repeat(vocab as i64)).take(width)).collect();
    let tensor = Tensor::<B, 2>::from_data(TensorData::new(logits.clone(), [rows, vocab]), &device);
    // Another holder of the logits: the kernel must not write them in place.
    let held = tensor.clone();
    let seen_tensor = Tensor::<B, 2, Int>::from_data(TensorData::new(padded, [rows, width]), &device);
    let out = B::penalise_seen(primitive(tensor), seen_tensor.into_primitive(), penalty);
    let out = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(out)).into_data().to_vec::<f32>().unwrap();
    assert_eq!(out, penalised(&logits, vocab, &seen, penalty));
    assert_eq!(held.into_data().to_vec::<f32>().unwrap(), logits, "the held logits are as they were");
}

#[test]
fn repetition_penalty_matches_the_host_on_cube_backend() {
    check_backend::<Eager>();
}

#[test]
fn repetition_penalty_matches_the_host_with_fusion() {
    check_backend::<Fused>();
}
