//! The repetition penalty (CTRL's, as transformers' `RepetitionPenaltyLogitsProcessor` applies
//! it) on the device: the logit of each token a row has seen is divided by the penalty where it
//! is positive and multiplied by it otherwise. With it on the device, a decoding step that
//! penalises repeats still reads back only each row's token or top k, not its 50,257 logits.

use crate::{
    fusion_op::{register_kernel_with_ints, Inputs, Launch},
    in_place::writable_in_order,
    reduce::{cube_a_row, cube_row},
};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeDim};

/// Units of a cube, one cube a row, each taking every `UNITS`-th seen token.
const UNITS: u32 = 128;

pub trait RepetitionPenalty: burn::tensor::backend::Backend {
    /// `logits` `[rows, vocab]` with the logits of the tokens `seen` `[rows, n]` penalised by
    /// `penalty`. Each row of `seen` names a token at most once (twice would penalise it twice);
    /// ids outside the vocabulary are skipped, so shorter rows are padded with `vocab`.
    fn penalise_seen(logits: FloatTensor<Self>, seen: IntTensor<Self>, penalty: f32) -> FloatTensor<Self>;
}

/// One cube a row, its units along the row's seen tokens. Each token is seen once, so no two
/// units write one logit.
#[cube(launch)]
fn repetition_penalty_kernel<F: Float, I: Int>(logits: &mut Tensor<F>, seen: &Tensor<I>, penalty: f32) {
    let row = cube_row();
    if row >= logits.shape(0) {
        terminate!();
    }
    let vocab = logits.shape(1);
    let penalty = F::cast_from(penalty);
    let mut i = UNIT_POS_X as usize;
    while i < seen.shape(1) {
        let token = seen[row * seen.stride(0) + i * seen.stride(1)];
        if token >= I::new(0) && usize::cast_from(token) < vocab {
            let at = row * logits.stride(0) + usize::cast_from(token) * logits.stride(1);
            let logit = logits[at];
            if logit > F::new(0.0) {
                logits[at] = logit / penalty;
            } else {
                logits[at] = logit * penalty;
            }
        }
        i += UNITS as usize;
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> RepetitionPenalty for CubeBackend<R, F, I, BT> {
    fn penalise_seen(logits: FloatTensor<Self>, seen: IntTensor<Self>, penalty: f32) -> FloatTensor<Self> {
        let logits = writable_in_order(logits);
        let rows = logits.meta.shape().dims::<2>()[0];
        assert_eq!(seen.meta.shape().dims::<2>()[0], rows, "a row of seen tokens for each row of logits");
        repetition_penalty_kernel::launch::<F, I, R>(
            &logits.client.clone(),
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            logits.clone().into_tensor_arg(),
            seen.into_tensor_arg(),
            penalty,
        );
        logits
    }
}

impl<B: FusionBackend + RepetitionPenalty> RepetitionPenalty for Fusion<B> {
    fn penalise_seen(logits: FloatTensor<Self>, seen: IntTensor<Self>, penalty: f32) -> FloatTensor<Self> {
        let outputs = [(logits.shape.clone(), logits.dtype)];
        let launch: Launch<B, _> =
            |&penalty, mut inputs: Inputs<B>| vec![B::penalise_seen(inputs.float(), inputs.int(), penalty)];
        let [penalised] = register_kernel_with_ints::<B, _>(
            "repetition_penalty",
            vec![logits],
            vec![seen],
            &outputs,
            penalty,
            launch,
        )
        .try_into()
        .expect("one output");
        penalised
    }
}
