//! Causal self-attention's core for training, forward and backward, without a `time × time`
//! tensor: one launch forward and two backward, where burn takes two products, the softmax's
//! reductions and element-wise kernels forward, and five products and more backward, and
//! writes the scores and weights out in full (flash attention's tiling, after Dao et al.).
//!
//! A cube takes a tile of queries (forward, and the queries' gradients) or of keys (the keys'
//! and values' gradients), one unit a row with the row in registers, and walks the other side's
//! tiles through shared memory: each row of k and v is read from memory once a query tile, not
//! once a query. The forward pass keeps each query's log-sum-exp of its scores, from which the
//! backward pass computes the weights again. Dropout's keep mask is drawn inside the kernels
//! from Philox counters, the words `kernels::dropout_keeps` draws for the whole
//! `[batch, heads, time, time]` mask, so the CPU's operations stay the reference.

use crate::philox::{philox4x32_10, word, Words};
use burn::tensor::{ops::FloatTensor, Shape, TensorMetadata};
use burn_cubecl::{ops::numeric::empty_device_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::{prelude::*, CubeCount, CubeDim};
use kernels::{drop_threshold, MaskStream};
use std::marker::PhantomData;

/// Widest head the kernels take: a tile of k and one of v (or of q and of the output's gradient)
/// fill 16 KiB of shared memory at 64, what every backend offers (WebGPU's minimum). Every
/// GPT-2 has heads 64 wide.
pub const MAX_FLASH_HEAD_DIM: usize = 64;

/// Rows of a tile, and units of a cube (one a row).
const TILE: usize = 32;

/// Dropout on the attention weights: each element dropped with probability `p` as `stream`
/// draws it for the whole `[batch, heads, time, time]` weights (`kernels::dropout_keeps`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightsDropout {
    pub stream: MaskStream,
    pub p: f64,
}

pub trait FlashAttention: burn::tensor::backend::Backend {
    /// `softmax(q · kᵀ / √head_dim)` over the keys each query may see, dropout on those weights,
    /// times `v`; with each query's log-sum-exp of its scaled scores, which the backward pass
    /// takes. `q`, `k`, `v` are `[batch, heads, time, head_dim]` (`head_dim` at most
    /// [`MAX_FLASH_HEAD_DIM`]), `hidden` `[batch, time, time]` is non-zero where a query must not
    /// see a key (keys after the query are never seen, whatever it holds). Returns `(output
    /// [batch, heads, time, head_dim], logsumexp [batch, heads, time])`.
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        dropout: Option<WeightsDropout>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients of q, k and v from that of the output, `d_output`, and what
    /// [`flash_attention`] took and returned: `(d_q, d_k, d_v)`, each `[batch, heads, time,
    /// head_dim]`.
    ///
    /// [`flash_attention`]: FlashAttention::flash_attention
    #[allow(clippy::too_many_arguments)]
    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        dropout: Option<WeightsDropout>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Below every score: where a row's running maximum starts.
const LOWEST_SCORE: f32 = -1.0e30;

/// One cube a tile of queries of one (batch, head), one unit a query: over the key tiles up to
/// its own, the unit keeps a running maximum of its scores, their exponentials' sum and the
/// weighted sum of values, rescaled when the maximum grows (online softmax).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_forward_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    hidden: &Tensor<F>,
    output: &mut Tensor<F>,
    logsumexp: &mut Tensor<F>,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let heads = q.shape(1);
    let time = q.shape(2);
    let pair = CUBE_POS_Y as usize;
    let (batch, head) = (pair / heads, pair % heads);
    let query_tile = CUBE_POS_X as usize;
    let query = query_tile * TILE + UNIT_POS_X as usize;
    let active = query < time;

    let mut q_row = Array::<F>::new(head_dim);
    let mut weighted = Array::<F>::new(head_dim);
    read_row::<F>(q, batch, head, query, active, F::cast_from(scale), &mut q_row, head_dim);
    #[unroll]
    for d in 0..head_dim {
        weighted[d] = F::new(0.0);
    }
    let mut k_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut v_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut max = F::new(LOWEST_SCORE);
    let mut sum = F::new(0.0);
    let hidden_row = batch * hidden.stride(0) + query * hidden.stride(1);
    let mut draw = Draw::new(mask, (pair * time + query) * time);

    for key_tile in 0..query_tile + 1 {
        load_tile::<F>(k, batch, head, key_tile * TILE, &mut k_tile, head_dim);
        load_tile::<F>(v, batch, head, key_tile * TILE, &mut v_tile, head_dim);
        sync_cube();
        if active {
            for j in 0..TILE {
                let key = key_tile * TILE + j;
                if key <= query && hidden[hidden_row + key * hidden.stride(2)] == F::new(0.0) {
                    let score = dot_shared::<F>(&q_row, &k_tile, j, head_dim);
                    if score > max {
                        let rescale = F::exp(max - score);
                        sum *= rescale;
                        #[unroll]
                        for d in 0..head_dim {
                            weighted[d] *= rescale;
                        }
                        max = score;
                    }
                    let weight = F::exp(score - max);
                    sum += weight;
                    let kept = weight * draw.keep_scale::<F>(key, dropout);
                    #[unroll]
                    for d in 0..head_dim {
                        weighted[d] += kept * v_tile[j * head_dim + d];
                    }
                }
            }
        }
        sync_cube();
    }
    if active {
        let start = batch * output.stride(0) + head * output.stride(1) + query * output.stride(2);
        #[unroll]
        for d in 0..head_dim {
            output[start + d * output.stride(3)] = weighted[d] / sum;
        }
        logsumexp[pair * time + query] = max + F::ln(sum);
    }
}

/// One cube a tile of queries, one unit a query: with `p` the weight of a key, `z` dropout's
/// scale for it (`1/(1 − p_drop)` or 0) and `D = Σ d_output · output` over the query's row,
/// the score's gradient is `p · (z · d_output · v − D)` and `d_q = Σ_keys that · k · scale`.
/// Writes `D` for the keys' kernel.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_query_gradient_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    output: &Tensor<F>,
    logsumexp: &Tensor<F>,
    d_output: &Tensor<F>,
    hidden: &Tensor<F>,
    d_q: &mut Tensor<F>,
    delta: &mut Tensor<F>,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let heads = q.shape(1);
    let time = q.shape(2);
    let pair = CUBE_POS_Y as usize;
    let (batch, head) = (pair / heads, pair % heads);
    let query_tile = CUBE_POS_X as usize;
    let query = query_tile * TILE + UNIT_POS_X as usize;
    let active = query < time;
    let scale = F::cast_from(scale);

    let mut q_row = Array::<F>::new(head_dim);
    let mut d_output_row = Array::<F>::new(head_dim);
    let mut output_row = Array::<F>::new(head_dim);
    let mut gradient = Array::<F>::new(head_dim);
    read_row::<F>(q, batch, head, query, active, scale, &mut q_row, head_dim);
    read_row::<F>(d_output, batch, head, query, active, F::new(1.0), &mut d_output_row, head_dim);
    read_row::<F>(output, batch, head, query, active, F::new(1.0), &mut output_row, head_dim);
    let mut row_delta = F::new(0.0);
    #[unroll]
    for d in 0..head_dim {
        row_delta += d_output_row[d] * output_row[d];
        gradient[d] = F::new(0.0);
    }
    let mut row_logsumexp = F::new(0.0);
    if active {
        delta[pair * time + query] = row_delta;
        row_logsumexp = logsumexp[pair * time + query];
    }
    let mut k_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut v_tile = SharedMemory::<F>::new(TILE * head_dim);
    let hidden_row = batch * hidden.stride(0) + query * hidden.stride(1);
    let mut draw = Draw::new(mask, (pair * time + query) * time);

    for key_tile in 0..query_tile + 1 {
        load_tile::<F>(k, batch, head, key_tile * TILE, &mut k_tile, head_dim);
        load_tile::<F>(v, batch, head, key_tile * TILE, &mut v_tile, head_dim);
        sync_cube();
        if active {
            for j in 0..TILE {
                let key = key_tile * TILE + j;
                if key <= query && hidden[hidden_row + key * hidden.stride(2)] == F::new(0.0) {
                    let weight = F::exp(dot_shared::<F>(&q_row, &k_tile, j, head_dim) - row_logsumexp);
                    let d_weight = dot_shared::<F>(&d_output_row, &v_tile, j, head_dim);
                    let d_score = weight * (draw.keep_scale::<F>(key, dropout) * d_weight - row_delta);
                    #[unroll]
                    for d in 0..head_dim {
                        gradient[d] += d_score * k_tile[j * head_dim + d];
                    }
                }
            }
        }
        sync_cube();
    }
    if active {
        let start = batch * d_q.stride(0) + head * d_q.stride(1) + query * d_q.stride(2);
        #[unroll]
        for d in 0..head_dim {
            d_q[start + d * d_q.stride(3)] = gradient[d] * scale;
        }
    }
}

/// One cube a tile of keys, one unit a key, over the query tiles from its own on: `d_v = Σ p ·
/// z · d_output` and `d_k = Σ p · (z · d_output · v − D) · q · scale` over the queries that see
/// the key.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_key_value_gradient_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    logsumexp: &Tensor<F>,
    delta: &Tensor<F>,
    d_output: &Tensor<F>,
    hidden: &Tensor<F>,
    d_k: &mut Tensor<F>,
    d_v: &mut Tensor<F>,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let heads = q.shape(1);
    let time = q.shape(2);
    let pair = CUBE_POS_Y as usize;
    let (batch, head) = (pair / heads, pair % heads);
    let key_tile = CUBE_POS_X as usize;
    let key = key_tile * TILE + UNIT_POS_X as usize;
    let active = key < time;
    let scale = F::cast_from(scale);

    let mut k_row = Array::<F>::new(head_dim);
    let mut v_row = Array::<F>::new(head_dim);
    let mut d_k_row = Array::<F>::new(head_dim);
    let mut d_v_row = Array::<F>::new(head_dim);
    read_row::<F>(k, batch, head, key, active, scale, &mut k_row, head_dim);
    read_row::<F>(v, batch, head, key, active, F::new(1.0), &mut v_row, head_dim);
    #[unroll]
    for d in 0..head_dim {
        d_k_row[d] = F::new(0.0);
        d_v_row[d] = F::new(0.0);
    }
    let mut q_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut d_output_tile = SharedMemory::<F>::new(TILE * head_dim);
    let hidden_column = batch * hidden.stride(0) + key * hidden.stride(2);

    for query_tile in key_tile..time.div_ceil(TILE) {
        load_tile::<F>(q, batch, head, query_tile * TILE, &mut q_tile, head_dim);
        load_tile::<F>(d_output, batch, head, query_tile * TILE, &mut d_output_tile, head_dim);
        sync_cube();
        if active {
            for i in 0..TILE {
                let query = query_tile * TILE + i;
                if query < time && key <= query && hidden[hidden_column + query * hidden.stride(1)] == F::new(0.0) {
                    let weight = F::exp(dot_shared::<F>(&k_row, &q_tile, i, head_dim) - logsumexp[pair * time + query]);
                    // Each query's row of the mask is its own Philox stream position: no word
                    // of a call serves two queries.
                    let mut draw = Draw::new(mask, (pair * time + query) * time);
                    let keep_scale = draw.keep_scale::<F>(key, dropout);
                    let d_weight = dot_shared::<F>(&v_row, &d_output_tile, i, head_dim);
                    let d_score = weight * (keep_scale * d_weight - delta[pair * time + query]);
                    #[unroll]
                    for d in 0..head_dim {
                        d_v_row[d] += weight * keep_scale * d_output_tile[i * head_dim + d];
                        d_k_row[d] += d_score * q_tile[i * head_dim + d];
                    }
                }
            }
        }
        sync_cube();
    }
    if active {
        let start = batch * d_k.stride(0) + head * d_k.stride(1) + key * d_k.stride(2);
        let v_start = batch * d_v.stride(0) + head * d_v.stride(1) + key * d_v.stride(2);
        #[unroll]
        for d in 0..head_dim {
            d_k[start + d * d_k.stride(3)] = d_k_row[d] * scale;
            d_v[v_start + d * d_v.stride(3)] = d_v_row[d];
        }
    }
}

/// Dropout's draw for the kernels: Philox's key and stream, the threshold a word must reach to
/// keep its element, and the kept elements' scale.
#[derive(CubeLaunch, CubeType, Clone, Copy)]
struct MaskArgs {
    key0: u32,
    key1: u32,
    stream0: u32,
    stream1: u32,
    stream2: u32,
    threshold: u32,
    keep_scale: f32,
}

/// The draw along one query's row of the mask, which starts at element `row_start` of the
/// whole mask; keeps the last Philox call's words, which serve four neighbouring keys.
#[derive(CubeType)]
struct Draw {
    key0: u32,
    key1: u32,
    stream0: u32,
    stream1: u32,
    stream2: u32,
    threshold: u32,
    keep_scale: f32,
    row_start: u32,
    block: u32,
    w0: u32,
    w1: u32,
    w2: u32,
    w3: u32,
}

#[cube]
impl Draw {
    fn new(mask: &MaskArgs, row_start: usize) -> Draw {
        Draw {
            key0: mask.key0,
            key1: mask.key1,
            stream0: mask.stream0,
            stream1: mask.stream1,
            stream2: mask.stream2,
            threshold: mask.threshold,
            keep_scale: mask.keep_scale,
            row_start: row_start as u32,
            // No element's block is u32::MAX: masks have fewer than 2³² elements.
            block: 0xFFFF_FFFFu32,
            w0: 0u32,
            w1: 0u32,
            w2: 0u32,
            w3: 0u32,
        }
    }

    /// Dropout's factor for `key`'s weight: `1 / (1 − p)` where the mask keeps it, 0 where it
    /// drops it; 1 without dropout.
    fn keep_scale<F: Float>(&mut self, key: usize, #[comptime] dropout: bool) -> F {
        let mut scale = F::new(1.0);
        if dropout {
            let element = self.row_start + key as u32;
            let block = element / 4;
            if block != self.block {
                let words = philox4x32_10(block, self.stream0, self.stream1, self.stream2, self.key0, self.key1);
                self.block = block;
                self.w0 = words.w0;
                self.w1 = words.w1;
                self.w2 = words.w2;
                self.w3 = words.w3;
            }
            let words = Words { w0: self.w0, w1: self.w1, w2: self.w2, w3: self.w3 };
            let kept = word(words, element % 4) >= self.threshold;
            scale = select(kept, F::cast_from(self.keep_scale), F::new(0.0));
        }
        scale
    }
}

/// Row `row` of head `head` of `from` `[batch, heads, rows, head_dim]`, times `scale`, into
/// `into`; zeros for a unit past the last row.
#[cube]
#[allow(clippy::too_many_arguments)]
fn read_row<F: Float>(
    from: &Tensor<F>,
    batch: usize,
    head: usize,
    row: usize,
    active: bool,
    scale: F,
    into: &mut Array<F>,
    #[comptime] head_dim: usize,
) {
    #[unroll]
    for d in 0..head_dim {
        into[d] = F::new(0.0);
    }
    if active {
        let start = batch * from.stride(0) + head * from.stride(1) + row * from.stride(2);
        #[unroll]
        for d in 0..head_dim {
            into[d] = from[start + d * from.stride(3)] * scale;
        }
    }
}

/// Rows `first … first + TILE` of head `head` of `from` `[batch, heads, rows, head_dim]` into
/// `tile`, shared out among the cube's units; zeros past the last row.
#[cube]
fn load_tile<F: Float>(
    from: &Tensor<F>,
    batch: usize,
    head: usize,
    first: usize,
    tile: &mut SharedMemory<F>,
    #[comptime] head_dim: usize,
) {
    let start = batch * from.stride(0) + head * from.stride(1);
    let rows = from.shape(2);
    let mut i = UNIT_POS_X as usize;
    while i < TILE * head_dim {
        let row = first + i / head_dim;
        let mut value = F::new(0.0);
        if row < rows {
            value = from[start + row * from.stride(2) + (i % head_dim) * from.stride(3)];
        }
        tile[i] = value;
        i += TILE;
    }
}

/// `row · tile[j]`, with `tile` rows of `head_dim`.
#[cube]
fn dot_shared<F: Float>(row: &Array<F>, tile: &SharedMemory<F>, j: usize, #[comptime] head_dim: usize) -> F {
    let mut sum = F::new(0.0);
    #[unroll]
    for d in 0..head_dim {
        sum += row[d] * tile[j * head_dim + d];
    }
    sum
}

fn mask_args<R: CubeRuntime>(dropout: Option<WeightsDropout>) -> MaskArgsLaunch<R> {
    let (stream, p) = dropout.map_or((MaskStream { key: [0; 2], stream: [0; 3] }, 0.0), |d| (d.stream, d.p));
    MaskArgsLaunch::new(
        stream.key[0],
        stream.key[1],
        stream.stream[0],
        stream.stream[1],
        stream.stream[2],
        drop_threshold(p),
        (1.0 / (1.0 - p)) as f32,
    )
}

/// `[batch, heads, time, head_dim]` of `q`, checked against what the kernels take.
fn dims<R: CubeRuntime>(q: &burn_cubecl::tensor::CubeTensor<R>) -> [usize; 4] {
    let [batch, heads, time, head_dim] = q.meta.shape().dims::<4>();
    assert!(head_dim <= MAX_FLASH_HEAD_DIM, "flash attention takes heads at most {MAX_FLASH_HEAD_DIM} wide");
    assert!(
        (batch * heads * time * time) < u32::MAX as usize,
        "flash attention's dropout mask needs fewer than 2³² elements"
    );
    [batch, heads, time, head_dim]
}

fn cubes(batch: usize, heads: usize, time: usize) -> CubeCount {
    CubeCount::Static(time.div_ceil(TILE) as u32, (batch * heads) as u32, 1)
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FlashAttention for CubeBackend<R, F, I, BT> {
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        dropout: Option<WeightsDropout>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, heads, time, head_dim] = dims(&q);
        let (client, device) = (q.client.clone(), q.device.clone());
        let output = empty_device_dtype(client.clone(), device.clone(), q.shape(), q.dtype);
        let logsumexp = empty_device_dtype(client.clone(), device, Shape::new([batch, heads, time]), q.dtype);
        flash_attention_forward_kernel::launch::<F, R>(
            &client,
            cubes(batch, heads, time),
            CubeDim::new_1d(TILE as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            hidden.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            logsumexp.clone().into_tensor_arg(),
            1.0 / (head_dim as f32).sqrt(),
            mask_args(dropout),
            head_dim,
            dropout.is_some(),
        );
        (output, logsumexp)
    }

    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        dropout: Option<WeightsDropout>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, heads, time, head_dim] = dims(&q);
        let (client, device) = (q.client.clone(), q.device.clone());
        let empty = |shape: Shape| empty_device_dtype(client.clone(), device.clone(), shape, q.dtype);
        let (d_q, d_k, d_v) = (empty(q.shape()), empty(q.shape()), empty(q.shape()));
        let delta = empty(Shape::new([batch, heads, time]));
        let scale = 1.0 / (head_dim as f32).sqrt();
        flash_attention_query_gradient_kernel::launch::<F, R>(
            &client,
            cubes(batch, heads, time),
            CubeDim::new_1d(TILE as u32),
            q.clone().into_tensor_arg(),
            k.clone().into_tensor_arg(),
            v.clone().into_tensor_arg(),
            output.into_tensor_arg(),
            logsumexp.clone().into_tensor_arg(),
            d_output.clone().into_tensor_arg(),
            hidden.clone().into_tensor_arg(),
            d_q.clone().into_tensor_arg(),
            delta.clone().into_tensor_arg(),
            scale,
            mask_args(dropout),
            head_dim,
            dropout.is_some(),
        );
        flash_attention_key_value_gradient_kernel::launch::<F, R>(
            &client,
            cubes(batch, heads, time),
            CubeDim::new_1d(TILE as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            logsumexp.into_tensor_arg(),
            delta.into_tensor_arg(),
            d_output.into_tensor_arg(),
            hidden.into_tensor_arg(),
            d_k.clone().into_tensor_arg(),
            d_v.clone().into_tensor_arg(),
            scale,
            mask_args(dropout),
            head_dim,
            dropout.is_some(),
        );
        (d_q, d_k, d_v)
    }
}

impl<B: FusionBackend + FlashAttention> FlashAttention for Fusion<B> {
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        dropout: Option<WeightsDropout>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Clone, Debug)]
        struct ForwardOp<B> {
            desc: CustomOpIr,
            dropout: Option<WeightsDropout>,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + FlashAttention> Operation<B::FusionRuntime> for ForwardOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([q, k, v, hidden], [output, logsumexp]) = self.desc.as_fixed();
                let (attended, row_logsumexp) = B::flash_attention(
                    handles.get_float_tensor::<B>(q),
                    handles.get_float_tensor::<B>(k),
                    handles.get_float_tensor::<B>(v),
                    handles.get_float_tensor::<B>(hidden),
                    self.dropout,
                );
                handles.register_float_tensor::<B>(&output.id, attended);
                handles.register_float_tensor::<B>(&logsumexp.id, row_logsumexp);
            }
        }

        let client = q.client.clone();
        let [batch, heads, time, _] = q.shape.dims::<4>();
        let streams = OperationStreams::with_inputs([&q, &k, &v, &hidden]);
        let outputs = [
            TensorIr::uninit(client.create_empty_handle(), q.shape.clone(), q.dtype),
            TensorIr::uninit(client.create_empty_handle(), Shape::new([batch, heads, time]), q.dtype),
        ];
        let inputs = [q.into_ir(), k.into_ir(), v.into_ir(), hidden.into_ir()];
        let desc = CustomOpIr::new("flash_attention", &inputs, &outputs);
        let [output, logsumexp] = client
            .register(
                streams,
                OperationIr::Custom(desc.clone()),
                ForwardOp::<B> { desc, dropout, backend: PhantomData },
            )
            .outputs();
        (output, logsumexp)
    }

    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        dropout: Option<WeightsDropout>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Clone, Debug)]
        struct BackwardOp<B> {
            desc: CustomOpIr,
            dropout: Option<WeightsDropout>,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + FlashAttention> Operation<B::FusionRuntime> for BackwardOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([q, k, v, output, logsumexp, d_output, hidden], [d_q, d_k, d_v]) = self.desc.as_fixed();
                let (q_gradient, k_gradient, v_gradient) = B::flash_attention_backward(
                    handles.get_float_tensor::<B>(q),
                    handles.get_float_tensor::<B>(k),
                    handles.get_float_tensor::<B>(v),
                    handles.get_float_tensor::<B>(output),
                    handles.get_float_tensor::<B>(logsumexp),
                    handles.get_float_tensor::<B>(d_output),
                    handles.get_float_tensor::<B>(hidden),
                    self.dropout,
                );
                handles.register_float_tensor::<B>(&d_q.id, q_gradient);
                handles.register_float_tensor::<B>(&d_k.id, k_gradient);
                handles.register_float_tensor::<B>(&d_v.id, v_gradient);
            }
        }

        let client = q.client.clone();
        let streams = OperationStreams::with_inputs([&q, &k, &v, &output, &logsumexp, &d_output, &hidden]);
        let gradient = || TensorIr::uninit(client.create_empty_handle(), q.shape.clone(), q.dtype);
        let outputs = [gradient(), gradient(), gradient()];
        let inputs = [
            q.into_ir(),
            k.into_ir(),
            v.into_ir(),
            output.into_ir(),
            logsumexp.into_ir(),
            d_output.into_ir(),
            hidden.into_ir(),
        ];
        let desc = CustomOpIr::new("flash_attention_backward", &inputs, &outputs);
        let [d_q, d_k, d_v] = client
            .register(
                streams,
                OperationIr::Custom(desc.clone()),
                BackwardOp::<B> { desc, dropout, backend: PhantomData },
            )
            .outputs();
        (d_q, d_k, d_v)
    }
}
