//! The attention-softmax kernels against the same sums in f64 on the host, on burn's wgpu
//! backend (with and without fusion; Mesa's software Vulkan driver on a machine without a GPU):
//! causal, with documents packed in a row, with and without dropout (the mask
//! `kernels::dropout_keeps` draws), a row past 1,024 keys, scores read through the strides of
//! a transposed view; and the outputs written in f16 (bf16's path; wgpu has no bf16) against
//! the f32 ones rounded.
//! `cargo test -p cube-kernels --features wgpu --test attention_softmax`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{
    prelude::*,
    tensor::{ops::FloatTensor, DType, TensorPrimitive},
};
use cube_kernels::{AttentionSoftmax, DropoutDraw};
use kernels::MaskStream;
use support::{assert_close, host_primitive, primitive, uniform, Eager, Fused, HALF, HALF_FLOAT};

mod support;

/// One case: `[batch, heads, time]`, where each row's documents start (after the one at 0),
/// dropout's probability, and whether the scores come as a transposed view.
struct Case {
    dims: [usize; 3],
    starts: Vec<Vec<usize>>,
    p: f64,
    transposed: bool,
}

const SCALE: f32 = 0.125;

impl Case {
    /// Whether query `i` of row `b` sees key `j`: not after it, in its document.
    fn sees(&self, b: usize, i: usize, j: usize) -> bool {
        let starts = &self.starts[b % self.starts.len()];
        let document = |i: usize| starts.iter().filter(|&&start| start <= i).count();
        j <= i && document(j) == document(i)
    }

    fn what(&self, part: &str) -> String {
        format!(
            "{part}, {:?}, documents {:?}, dropout {}, transposed {}",
            self.dims, self.starts, self.p, self.transposed
        )
    }
}

/// Dropout's factor for each element of the `[batch, heads, time, time]` weights.
fn keep_scales(case: &Case, dropout: Option<DropoutDraw>) -> Vec<f64> {
    let [batch, heads, time] = case.dims;
    let mut keeps = vec![1.0f32; batch * heads * time * time];
    if let Some(DropoutDraw { stream, p }) = dropout {
        kernels::dropout_keeps(stream, p, &mut keeps);
        return keeps.iter().map(|&keep| f64::from(keep) / (1.0 - p)).collect();
    }
    keeps.iter().map(|&keep| f64::from(keep)).collect()
}

fn values<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Vec<f32> {
    Tensor::<B, D>::from_primitive(TensorPrimitive::Float(tensor)).into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn rounded<B: Backend>(tensor: FloatTensor<B>) -> Vec<f32> {
    let tensor = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(tensor));
    values::<B, 4>(primitive(tensor.cast(HALF_FLOAT)))
}

fn check<B: AttentionSoftmax>(case: &Case) {
    let device = Default::default();
    let [batch, heads, time] = case.dims;
    let shape = [batch, heads, time, time];
    let elements = batch * heads * time * time;
    let dropout = (case.p > 0.0).then_some(DropoutDraw {
        stream: MaskStream { key: [0x1234_5678, 0x9abc_def0], stream: [3, 7, 11] },
        p: case.p,
    });
    // Scores of the spread a model's scaled scores have; the gradients' anything.
    let drawn = uniform(elements, -40.0, 40.0, time as u64);
    let d_drawn = uniform(elements, -2.0, 2.0, time as u64 + 1);
    let delta_drawn = uniform(batch * heads * time, -1.0, 1.0, time as u64 + 2);
    let element = |b: usize, h: usize, i: usize, j: usize| ((b * heads + h) * time + i) * time + j;
    // The scores as given, and as the kernels see them: a transposed view reads `drawn` with
    // queries and keys swapped.
    let score =
        |b, h, i, j| f64::from(if case.transposed { drawn[element(b, h, j, i)] } else { drawn[element(b, h, i, j)] });
    let as_given = |data: &[f32]| {
        let tensor = Tensor::<B, 4>::from_data(TensorData::new(data.to_vec(), shape), &device);
        primitive(if case.transposed { tensor.swap_dims(2, 3) } else { tensor })
    };
    let scores = || as_given(&drawn);
    let d_weights = || as_given(&d_drawn);
    let d_weight = |b, h, i, j| {
        f64::from(if case.transposed { d_drawn[element(b, h, j, i)] } else { d_drawn[element(b, h, i, j)] })
    };
    let delta = || primitive(Tensor::<B, 3>::from_data(TensorData::new(delta_drawn.clone(), case.dims), &device));
    let hidden = || {
        let mut hidden = Vec::with_capacity(batch * time * time);
        for b in 0..batch {
            for i in 0..time {
                hidden.extend((0..time).map(|j| !case.sees(b, i, j)));
            }
        }
        Tensor::<B, 3, Bool>::from_data(TensorData::new(hidden, [batch, time, time]), &device).into_primitive()
    };

    let keeps = keep_scales(case, dropout);
    let mut expected_logsumexp = vec![0.0; batch * heads * time];
    let mut expected_weights = vec![0.0; elements];
    let mut expected_d_scores = vec![0.0; elements];
    let scale = f64::from(SCALE);
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..time {
                let seen: Vec<usize> = (0..time).filter(|&j| case.sees(b, i, j)).collect();
                let largest = seen.iter().map(|&j| score(b, h, i, j) * scale).fold(f64::MIN, f64::max);
                let sum: f64 = seen.iter().map(|&j| (score(b, h, i, j) * scale - largest).exp()).sum();
                let row = (b * heads + h) * time + i;
                let logsumexp = largest + sum.ln();
                expected_logsumexp[row] = logsumexp;
                for j in seen {
                    let at = element(b, h, i, j);
                    let p = (score(b, h, i, j) * scale - logsumexp).exp();
                    expected_weights[at] = p * keeps[at];
                    let d_kept = keeps[at] * d_weight(b, h, i, j);
                    expected_d_scores[at] = p * (d_kept - f64::from(delta_drawn[row])) * scale;
                }
            }
        }
    }
    let host = |x: Vec<f32>| x.into_iter().map(f64::from).collect::<Vec<_>>();

    let (weights, logsumexp) = B::attention_softmax(scores(), hidden(), SCALE, dropout, DType::F32);
    assert_close(&case.what("weights"), &expected_weights, &host(values::<B, 4>(weights.clone())), 1e-6);
    assert_close(&case.what("log-sum-exps"), &expected_logsumexp, &host_primitive::<B, 3>(logsumexp.clone()), 1e-6);
    let backward = |written| {
        let (scores, d_weights, logsumexp, delta) = (scores(), d_weights(), logsumexp.clone(), delta());
        B::attention_softmax_backward(scores, d_weights, logsumexp, delta, hidden(), SCALE, dropout, written)
    };
    let (again, d_scores) = backward(DType::F32);
    assert_eq!(values::<B, 4>(again), values::<B, 4>(weights.clone()), "{}", case.what("weights again"));
    assert_close(&case.what("scores' gradient"), &expected_d_scores, &host(values::<B, 4>(d_scores.clone())), 1e-6);

    // Written in f16, as a product of 16-bit operands reads them: the f32 outputs rounded.
    let (weights_half, logsumexp_half) = B::attention_softmax(scores(), hidden(), SCALE, dropout, HALF);
    assert_eq!(values::<B, 4>(weights_half), rounded::<B>(weights), "{}", case.what("weights in f16"));
    assert_eq!(
        values::<B, 3>(logsumexp_half),
        values::<B, 3>(logsumexp.clone()),
        "{}",
        case.what("log-sum-exps, f16 weights")
    );
    let (_, d_scores_half) = backward(HALF);
    assert_eq!(values::<B, 4>(d_scores_half), rounded::<B>(d_scores), "{}", case.what("scores' gradient in f16"));
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for p in [0.0, 0.3] {
        let case = |dims, starts: &[&[usize]], transposed| Case {
            dims,
            starts: starts.iter().map(|starts| starts.to_vec()).collect(),
            p,
            transposed,
        };
        cases.push(case([1, 1, 1], &[&[]], false));
        // Rows not a multiple of four keys (a Philox call's) long; documents in the second.
        cases.push(case([2, 3, 37], &[&[], &[5, 33]], false));
        cases.push(case([1, 2, 70], &[&[40]], true));
        // Past 1,024 keys: a unit's second block.
        cases.push(case([1, 1, 1030], &[&[1000]], false));
    }
    cases
}

#[test]
fn attention_softmax_matches_f64() {
    for case in cases() {
        check::<Eager>(&case);
        check::<Fused>(&case);
    }
}
