//! Attention's softmax over scores that matrix products wrote in full, `[batch, heads, time,
//! time]`: the weights from `q · kᵀ` in one launch forward, and backward, from the scores again
//! and the gradient of the weights, the weights and the scores' gradient in one launch. Under
//! `GPT2_ATTENTION=products` training's attention runs its products on tensor cores (burn's)
//! and these between them, where burn's operations took a mask, a scale, a maximum, an
//! exponential, a sum, a logarithm, a subtraction and dropout's mask and product forward, each
//! pass over a `time × time` tensor (at gpt2 4 × 1024, 201 MB in f32), and as many backward.
//! Each reads its `time × time` inputs once and writes its outputs once; the outputs come in
//! the type the next products read (bf16 under `--precision bf16`).
//!
//! Dropout's mask is drawn inside the kernels from the Philox words `kernels::dropout_keeps`
//! draws for the whole `[batch, heads, time, time]` mask, as the flash kernels draw it: the two
//! routes drop the same weights.

use crate::{
    draw::{assert_drawable, mask_args, Draw, DropoutDraw, MaskArgs},
    element::launch_for_element,
    flash_attention::{is_set, with_mask_element, LOWEST_SCORE},
    fusion_op::{register_kernel_with_bools, Inputs, Launch},
    reduce::{cube_a_row, cube_max, cube_row, cube_sum},
};
use burn::tensor::{
    ops::{BoolTensor, FloatTensor},
    DType, Shape,
};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
    FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeDim};

/// Units of a cube, one cube a row of scores (a query of a head). A power of two (the sums
/// halve it).
const UNITS: u32 = 256;

/// Neighbouring keys a unit takes at a time: the four elements one Philox call draws for.
const KEYS_A_BLOCK: usize = 4;

/// Most keys a row may have: the forward kernel keeps its row in registers, [`KEYS_A_BLOCK`]
/// keys a unit for every `UNITS × KEYS_A_BLOCK` keys (GPT-2's 1,024 positions: 4), and which it
/// sees as bits of one word.
pub const MAX_SOFTMAX_KEYS: usize = 4 * UNITS as usize * KEYS_A_BLOCK;

pub trait AttentionSoftmax: burn::tensor::backend::Backend {
    /// The attention weights `softmax(scores · scale)` over the keys each query sees, through
    /// dropout, with each query's log-sum-exp of its scaled scores (over the keys it sees),
    /// which the backward pass takes. `scores` `[batch, heads, time, time]` is `q · kᵀ`,
    /// `hidden` `[batch, time, time]` is `true` where a query must not see a key (keys after
    /// the query are never seen, whatever it holds; a query that sees no key gets no weight).
    /// Returns `(weights [batch, heads, time, time], logsumexp [batch, heads, time])`, the
    /// weights in the type `weights` (the product after it reads), zero where unseen or
    /// dropped, the kept ones scaled by `1 / (1 − p)`.
    fn attention_softmax(
        scores: FloatTensor<Self>,
        hidden: BoolTensor<Self>,
        scale: f32,
        dropout: Option<DropoutDraw>,
        weights: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// From the same `scores`, `hidden`, `scale` and `dropout` and the `logsumexp` that
    /// [`attention_softmax`] returned, with `d_weights` `[batch, heads, time, time]` the
    /// gradient of its weights (`d_output · vᵀ`) and `delta` `[batch, heads, time]` each
    /// query's `Σ d_output · output`: the weights again (for `v`'s gradient) and the scores'
    /// gradient, `p · (z · d_weights − delta) · scale` with `p` the softmax and `z` dropout's
    /// factor, both in the type `written`.
    ///
    /// [`attention_softmax`]: AttentionSoftmax::attention_softmax
    #[allow(clippy::too_many_arguments)]
    fn attention_softmax_backward(
        scores: FloatTensor<Self>,
        d_weights: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        hidden: BoolTensor<Self>,
        scale: f32,
        dropout: Option<DropoutDraw>,
        written: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// Where a cube's row lies: its (batch, head, query), and its first element in the whole
/// `[batch, heads, time, time]` (the outputs', written end to end, and dropout's mask's).
#[derive(CubeType)]
struct Row {
    batch: usize,
    head: usize,
    query: usize,
    keys: usize,
    first: usize,
}

#[cube]
impl Row {
    fn new<F: Float>(scores: &Tensor<F>, row: usize) -> Row {
        let (heads, time) = (scores.shape(1), scores.shape(2));
        let pair = row / time;
        Row {
            batch: pair / heads,
            head: pair % heads,
            query: row % time,
            keys: scores.shape(3),
            first: row * scores.shape(3),
        }
    }

    /// The row's start in `x` `[batch, heads, time, …]`.
    fn start<F: Float>(&self, x: &Tensor<F>) -> usize {
        self.batch * x.stride(0) + self.head * x.stride(1) + self.query * x.stride(2)
    }

    /// Whether the query sees `key`: not after it, and not hidden.
    fn sees<M: Int>(&self, hidden: &Tensor<M>, key: usize) -> bool {
        let mut sees = false;
        if key <= self.query {
            sees = hidden[self.batch * hidden.stride(0) + self.query * hidden.stride(1) + key * hidden.stride(2)]
                == M::from_int(0);
        }
        sees
    }
}

/// Key `n` of a unit's share of a row: blocks of [`KEYS_A_BLOCK`] neighbouring keys, the
/// units' blocks side by side.
#[cube]
fn unit_key(n: usize) -> usize {
    let block = n / KEYS_A_BLOCK;
    (block * UNITS as usize + UNIT_POS_X as usize) * KEYS_A_BLOCK + n % KEYS_A_BLOCK
}

/// One cube a row: its units read their keys' scores into registers (the seen ones scaled,
/// the others the lowest score), take the row's largest as a tree across the cube, then the
/// sum of the exponentials, and write each key's weight.
#[cube(launch)]
fn attention_softmax_kernel<F: Float, M: Int, O: Float>(
    scores: &Tensor<F>,
    hidden: &Tensor<M>,
    weights: &mut Tensor<O>,
    logsumexp: &mut Tensor<F>,
    scale: f32,
    mask: MaskArgs,
    #[comptime] blocks: usize,
    #[comptime] dropout: bool,
) {
    let row = cube_row();
    if row >= logsumexp.shape(0) * logsumexp.shape(1) * logsumexp.shape(2) {
        terminate!();
    }
    let at = Row::new::<F>(scores, row);
    let start = at.start::<F>(scores);
    let mut partial = SharedMemory::<F>::new(UNITS as usize);
    let mut scaled = Array::<F>::new(blocks * KEYS_A_BLOCK);
    // Bit `n` for the unit's key `n` that the query sees: the mask read once.
    let mut seen = 0u32;
    let mut largest = F::new(LOWEST_SCORE);
    #[unroll]
    for n in 0..blocks * KEYS_A_BLOCK {
        let key = unit_key(n);
        scaled[n] = F::new(LOWEST_SCORE);
        if at.sees::<M>(hidden, key) {
            seen |= 1u32 << n as u32;
            scaled[n] = scores[start + key * scores.stride(3)] * F::cast_from(scale);
            largest = F::max(largest, scaled[n]);
        }
    }
    let largest = cube_max::<F>(&mut partial, largest);
    let mut sum = F::new(0.0);
    #[unroll]
    for n in 0..blocks * KEYS_A_BLOCK {
        if is_set(seen, n) {
            sum += F::exp(scaled[n] - largest);
        }
    }
    let row_logsumexp = largest + F::ln(cube_sum::<F>(&mut partial, sum));

    let mut draw = Draw::new(&mask, at.first);
    #[unroll]
    for n in 0..blocks * KEYS_A_BLOCK {
        let key = unit_key(n);
        if key < at.keys {
            let mut weight = F::new(0.0);
            if is_set(seen, n) {
                weight = F::exp(scaled[n] - row_logsumexp) * draw.keep_scale::<F>(key, dropout);
            }
            weights[at.first + key] = O::cast_from(weight);
        }
    }
    if UNIT_POS_X == 0 {
        logsumexp[row] = row_logsumexp;
    }
}

/// One cube a row, its units along it as forward: each seen key's softmax again from its score
/// and the row's log-sum-exp, dropout's factor drawn again, then the weight and the score's
/// gradient written; zeros for the keys the query does not see.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_softmax_backward_kernel<F: Float, M: Int, O: Float>(
    scores: &Tensor<F>,
    d_weights: &Tensor<F>,
    logsumexp: &Tensor<F>,
    delta: &Tensor<F>,
    hidden: &Tensor<M>,
    weights: &mut Tensor<O>,
    d_scores: &mut Tensor<O>,
    scale: f32,
    mask: MaskArgs,
    #[comptime] blocks: usize,
    #[comptime] dropout: bool,
) {
    let row = cube_row();
    if row >= logsumexp.shape(0) * logsumexp.shape(1) * logsumexp.shape(2) {
        terminate!();
    }
    let at = Row::new::<F>(scores, row);
    let (start, d_start) = (at.start::<F>(scores), at.start::<F>(d_weights));
    let row_logsumexp = logsumexp[at.start::<F>(logsumexp)];
    let row_delta = delta[at.start::<F>(delta)];
    let scale = F::cast_from(scale);
    let mut draw = Draw::new(&mask, at.first);
    #[unroll]
    for n in 0..blocks * KEYS_A_BLOCK {
        let key = unit_key(n);
        if key < at.keys {
            let mut weight = F::new(0.0);
            let mut d_score = F::new(0.0);
            if at.sees::<M>(hidden, key) {
                let p = F::exp(scores[start + key * scores.stride(3)] * scale - row_logsumexp);
                let keep = draw.keep_scale::<F>(key, dropout);
                weight = p * keep;
                d_score = p * (keep * d_weights[d_start + key * d_weights.stride(3)] - row_delta) * scale;
            }
            weights[at.first + key] = O::cast_from(weight);
            d_scores[at.first + key] = O::cast_from(d_score);
        }
    }
}

/// The rows and the comptime blocks of a launch over `scores` `[batch, heads, time, keys]`.
fn rows_and_blocks<R: CubeRuntime>(scores: &CubeTensor<R>, hidden: &CubeTensor<R>) -> (usize, usize) {
    let [batch, heads, time, keys] = scores.meta.shape().dims::<4>();
    assert_eq!(hidden.meta.shape().dims::<3>(), [batch, time, keys], "attention's softmax: the mask's shape");
    assert!(keys <= MAX_SOFTMAX_KEYS, "attention's softmax takes rows of at most {MAX_SOFTMAX_KEYS} keys");
    assert_drawable(batch * heads * time * keys, "attention's softmax");
    (batch * heads * time, keys.div_ceil(UNITS as usize * KEYS_A_BLOCK))
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> AttentionSoftmax for CubeBackend<R, F, I, BT> {
    fn attention_softmax(
        scores: FloatTensor<Self>,
        hidden: BoolTensor<Self>,
        scale: f32,
        dropout: Option<DropoutDraw>,
        weights: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (rows, blocks) = rows_and_blocks(&scores, &hidden);
        let shape = scores.meta.shape().clone();
        let [batch, heads, time, _] = shape.dims::<4>();
        let (client, device) = (scores.client.clone(), scores.device.clone());
        let weights = empty_device_contiguous_dtype(client.clone(), device.clone(), shape, weights);
        let logsumexp =
            empty_device_contiguous_dtype(client.clone(), device, Shape::new([batch, heads, time]), scores.dtype);
        let own = scores.dtype;
        with_mask_element!(hidden, M => launch_for_element!(
            attention_softmax_kernel::<F, M, R>,
            weights.dtype,
            own,
            "attention's softmax: the weights"
        )(
            &client,
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            scores.into_tensor_arg(),
            hidden.into_tensor_arg(),
            weights.clone().into_tensor_arg(),
            logsumexp.clone().into_tensor_arg(),
            scale,
            mask_args(dropout),
            blocks,
            dropout.is_some(),
        ));
        (weights, logsumexp)
    }

    fn attention_softmax_backward(
        scores: FloatTensor<Self>,
        d_weights: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        hidden: BoolTensor<Self>,
        scale: f32,
        dropout: Option<DropoutDraw>,
        written: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (rows, blocks) = rows_and_blocks(&scores, &hidden);
        assert_eq!(d_weights.meta.shape(), scores.meta.shape(), "attention's softmax: the weights' gradient");
        let (client, device) = (scores.client.clone(), scores.device.clone());
        let shape = scores.meta.shape().clone();
        let empty = || empty_device_contiguous_dtype(client.clone(), device.clone(), shape.clone(), written);
        let (weights, d_scores) = (empty(), empty());
        let own = scores.dtype;
        with_mask_element!(hidden, M => launch_for_element!(
            attention_softmax_backward_kernel::<F, M, R>,
            written,
            own,
            "attention's softmax backward: the outputs"
        )(
            &client,
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            scores.into_tensor_arg(),
            d_weights.into_tensor_arg(),
            logsumexp.into_tensor_arg(),
            delta.into_tensor_arg(),
            hidden.into_tensor_arg(),
            weights.clone().into_tensor_arg(),
            d_scores.clone().into_tensor_arg(),
            scale,
            mask_args(dropout),
            blocks,
            dropout.is_some(),
        ));
        (weights, d_scores)
    }
}

impl<B: FusionBackend + AttentionSoftmax> AttentionSoftmax for Fusion<B> {
    fn attention_softmax(
        scores: FloatTensor<Self>,
        hidden: BoolTensor<Self>,
        scale: f32,
        dropout: Option<DropoutDraw>,
        weights: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, heads, time, _] = scores.shape.dims::<4>();
        let outputs = [(scores.shape.clone(), weights), (Shape::new([batch, heads, time]), scores.dtype)];
        let launch: Launch<B, _> = |&(scale, dropout, weights), mut inputs: Inputs<B>| {
            let (weights, logsumexp) = B::attention_softmax(inputs.float(), inputs.bool(), scale, dropout, weights);
            vec![weights, logsumexp]
        };
        let [weights, logsumexp] = register_kernel_with_bools::<B, _>(
            "attention_softmax",
            vec![scores],
            vec![hidden],
            &outputs,
            (scale, dropout, weights),
            launch,
        )
        .try_into()
        .expect("two outputs");
        (weights, logsumexp)
    }

    fn attention_softmax_backward(
        scores: FloatTensor<Self>,
        d_weights: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        hidden: BoolTensor<Self>,
        scale: f32,
        dropout: Option<DropoutDraw>,
        written: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let outputs = [(scores.shape.clone(), written), (scores.shape.clone(), written)];
        let launch: Launch<B, _> = |&(scale, dropout, written), mut inputs: Inputs<B>| {
            let (scores, d_weights, logsumexp, delta) =
                (inputs.float(), inputs.float(), inputs.float(), inputs.float());
            let hidden = inputs.bool();
            let (weights, d_scores) =
                B::attention_softmax_backward(scores, d_weights, logsumexp, delta, hidden, scale, dropout, written);
            vec![weights, d_scores]
        };
        let [weights, d_scores] = register_kernel_with_bools::<B, _>(
            "attention_softmax_backward",
            vec![scores, d_weights, logsumexp, delta],
            vec![hidden],
            &outputs,
            (scale, dropout, written),
            launch,
        )
        .try_into()
        .expect("two outputs");
        (weights, d_scores)
    }
}
