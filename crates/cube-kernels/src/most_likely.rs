//! The `k` most likely tokens of each row of logits, for top-k sampling: the host draws among
//! them, so a decoding step reads back `k` logits and ids a row rather than all 50,257 logits
//! (burn 0.21's `topk` sorts each row, on the host for CubeCL backends).

use crate::{
    fusion_op::{register_kernel, Launch},
    reduce::{cube_a_row, cube_row},
};
use burn::tensor::{ops::FloatTensor, DType, Shape};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeDim};

/// Most tokens the kernel keeps a row: each unit holds its own best `k` while it reads, and
/// the cube merges them in `k` rounds. Top-k sampling keeps a few (the joke experiment: 20, then
/// 3); larger `k` is left to the host.
pub const MAX_MOST_LIKELY: usize = 64;

/// Ids are returned as floats, exact below 2²⁴: the kernel takes vocabularies smaller.
pub const MAX_MOST_LIKELY_VOCAB: usize = 1 << 24;

/// Units of a cube, one cube a row. A power of two (the merge halves it).
const UNITS: u32 = 256;

/// No token: a place in a unit's list not filled yet, and what the unit offers once its own
/// best are all taken. Worse than any token.
const NO_TOKEN: u32 = 0xFFFF_FFFF;

pub trait MostLikely: burn::tensor::backend::Backend {
    /// The `k` greatest logits of each row of `logits` `[rows, vocab]` (f32), greatest first,
    /// equal logits in the order of their ids, and those ids: `[rows, 2k]`, each row's `k`
    /// logits, then their ids (as floats). The order is that of sorting each row by logit, then
    /// id, so the host draws as it would from the whole row. `k` is at most
    /// [`MAX_MOST_LIKELY`] and the vocabulary's size, which is below [`MAX_MOST_LIKELY_VOCAB`].
    fn most_likely(logits: FloatTensor<Self>, k: usize) -> FloatTensor<Self>;
}

/// Whether the token `(logit, id)` comes before `(other, other_id)`: the greater logit, of
/// equal logits the lower id; any token before [`NO_TOKEN`].
#[cube]
fn before<F: Float>(logit: F, id: u32, other: F, other_id: u32) -> bool {
    let better = logit > other || (logit == other && id < other_id);
    other_id == NO_TOKEN || (id != NO_TOKEN && better)
}

/// One cube a row. Each unit reads every `UNITS`-th logit, keeping the best `k` it has seen in
/// order (an insertion into a short list, rarely past its first comparison); then `k` rounds,
/// each finding the best of the units' best untaken tokens in a tree in shared memory, whose
/// unit moves on to its next.
#[cube(launch)]
fn most_likely_kernel<F: Float>(logits: &Tensor<F>, best: &mut Tensor<F>, #[comptime] k: usize) {
    let row = cube_row();
    if row >= logits.shape(0) {
        terminate!();
    }
    let vocab = logits.shape(1);
    let start = row * logits.stride(0);
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;

    // The unit's best so far, best first; no token in the places not filled yet.
    let mut logits_kept = Array::<F>::new(k);
    let mut ids_kept = Array::<u32>::new(k);
    for place in 0..k {
        logits_kept[place] = F::min_value();
        ids_kept[place] = NO_TOKEN;
    }
    let last = k - 1;
    let mut i = unit;
    while i < vocab {
        let logit = logits[start + i * logits.stride(1)];
        let id = i as u32;
        if before::<F>(logit, id, logits_kept[last], ids_kept[last]) {
            // Counted down at run time (`last` is known when the kernel is compiled).
            let mut place = last.runtime();
            loop {
                if place == 0 {
                    break;
                }
                if !before::<F>(logit, id, logits_kept[place - 1], ids_kept[place - 1]) {
                    break;
                }
                logits_kept[place] = logits_kept[place - 1];
                ids_kept[place] = ids_kept[place - 1];
                place -= 1;
            }
            logits_kept[place] = logit;
            ids_kept[place] = id;
        }
        i += units;
    }

    let mut candidate_logits = SharedMemory::<F>::new(UNITS as usize);
    let mut candidate_ids = SharedMemory::<u32>::new(UNITS as usize);
    // The unit's best not taken yet: its offer in each round.
    let mut next = 0usize;
    for round in 0..k {
        let offered = usize::min(next, last);
        candidate_logits[unit] = logits_kept[offered];
        candidate_ids[unit] = select(next < k, ids_kept[offered], NO_TOKEN);
        sync_cube();
        let mut half = units / 2;
        while half > 0 {
            if unit < half {
                let other = candidate_logits[unit + half];
                let other_id = candidate_ids[unit + half];
                if before::<F>(other, other_id, candidate_logits[unit], candidate_ids[unit]) {
                    candidate_logits[unit] = other;
                    candidate_ids[unit] = other_id;
                }
            }
            sync_cube();
            half /= 2;
        }
        let winner = candidate_ids[0];
        if unit == 0 {
            best[row * best.stride(0) + round * best.stride(1)] = candidate_logits[0];
            best[row * best.stride(0) + (k + round) * best.stride(1)] = F::cast_from(winner);
        }
        // Ids are unique, and the vocabulary holds at least `k`: one unit's offer, a token, won.
        if next < k && ids_kept[offered] == winner {
            next += 1;
        }
        // Every unit has read the winner before the next round writes over it.
        sync_cube();
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> MostLikely for CubeBackend<R, F, I, BT> {
    fn most_likely(logits: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        let [rows, vocab] = logits.meta.shape().dims::<2>();
        assert_eq!(logits.dtype, DType::F32, "the most likely tokens of f32 logits");
        assert!((1..=MAX_MOST_LIKELY.min(vocab)).contains(&k), "{k} most likely of {vocab}");
        assert!(vocab < MAX_MOST_LIKELY_VOCAB, "ids of {vocab} tokens as f32");
        let best = empty_device_contiguous_dtype(
            logits.client.clone(),
            logits.device.clone(),
            Shape::new([rows, 2 * k]),
            DType::F32,
        );
        most_likely_kernel::launch::<f32, R>(
            &logits.client.clone(),
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            logits.into_tensor_arg(),
            best.clone().into_tensor_arg(),
            k,
        );
        best
    }
}

impl<B: FusionBackend + MostLikely> MostLikely for Fusion<B> {
    fn most_likely(logits: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        let rows = logits.shape.dims::<2>()[0];
        let launch: Launch<B, _> = |&k, mut inputs| vec![B::most_likely(inputs.float(), k)];
        let [best] = register_kernel::<B, _>("most_likely", vec![logits], &[Shape::new([rows, 2 * k])], k, launch)
            .try_into()
            .expect("one output");
        best
    }
}
