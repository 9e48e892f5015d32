//! The most-likely-tokens kernel against sorting each row on the host, on burn's wgpu backend
//! (with and without fusion; Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test most_likely`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::prelude::*;
use cube_kernels::{MostLikely, MAX_MOST_LIKELY};
use support::{normal, primitive, Eager, Fused};

mod support;

/// Each row's `k` greatest logits and their ids, by sorting the row: greater logits first, of
/// equal logits the lower id.
fn sorted(logits: &[f32], vocab: usize, k: usize) -> Vec<(f32, u32)> {
    logits
        .chunks(vocab)
        .flat_map(|row| {
            let mut tokens: Vec<(f32, u32)> = row.iter().enumerate().map(|(id, &logit)| (logit, id as u32)).collect();
            tokens.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            tokens.truncate(k);
            tokens
        })
        .collect()
}

fn check<B: MostLikely>(what: &str, logits: Vec<f32>, rows: usize, k: usize) {
    let vocab = logits.len() / rows;
    let device = Default::default();
    let tensor = Tensor::<B, 2>::from_data(TensorData::new(logits.clone(), [rows, vocab]), &device);
    let best =
        Tensor::<B, 2>::from_primitive(burn::tensor::TensorPrimitive::Float(B::most_likely(primitive(tensor), k)));
    assert_eq!(best.dims(), [rows, 2 * k], "{what}");
    let best = best.into_data().to_vec::<f32>().unwrap();
    let actual: Vec<(f32, u32)> = best
        .chunks(2 * k)
        .flat_map(|row| row[..k].iter().zip(&row[k..]).map(|(&logit, &id)| (logit, id as u32)))
        .collect();
    assert_eq!(actual, sorted(&logits, vocab, k), "{what}, k {k}");
}

/// GPT-2's vocabulary, the decoding batches the sample stage takes and every `k` the kernel
/// does: logits drawn at random, and logits rounded to a few values, where most tokens tie
/// and the order among equals decides.
fn check_backend<B: MostLikely>() {
    let vocab = 50_257;
    for (rows, seed) in [(1, 1), (3, 2), (20, 3)] {
        let drawn = normal(rows * vocab, seed);
        let tied: Vec<f32> = drawn.iter().map(|x| (x * 2.0).round()).collect();
        for k in [1, 2, 3, 20, 63, MAX_MOST_LIKELY] {
            check::<B>(&format!("{rows} rows of drawn logits"), drawn.clone(), rows, k);
            check::<B>(&format!("{rows} rows of tied logits"), tied.clone(), rows, k);
        }
    }
    // Fewer tokens than units: most units keep nothing. Every logit equal: the ids decide.
    check::<B>("vocabulary of 10", normal(2 * 10, 4), 2, 10);
    check::<B>("equal logits", vec![0.5; 2 * 300], 2, 64);
    // The best tokens all read by one unit (ids 256 apart), so that its own list is what the
    // merge takes, in turn.
    let mut one_unit = vec![-1.0f32; 5_000];
    for (rank, id) in (7..5_000).step_by(256).enumerate() {
        one_unit[id] = 100.0 - rank as f32;
    }
    check::<B>("one unit's tokens", one_unit, 1, 19);
}

#[test]
fn most_likely_matches_sorting_on_cube_backend() {
    check_backend::<Eager>();
}

#[test]
fn most_likely_matches_sorting_with_fusion() {
    check_backend::<Fused>();
}
