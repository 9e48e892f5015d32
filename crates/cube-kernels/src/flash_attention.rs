//! Causal self-attention's core for training, forward and backward, without a `time × time`
//! tensor: one launch forward and two backward, where burn takes two products, the softmax's
//! reductions and element-wise kernels forward, and five products and more backward, and
//! writes the scores and weights out in full (flash attention's tiling, after Dao et al.).
//!
//! A cube takes a tile of queries (forward, and the queries' gradients) or of keys (the keys'
//! and values' gradients), with the rows in registers, and walks the other side's tiles through
//! shared memory: each row of k and v is read from memory once a query tile, not once a query.
//! Four units hold the same few rows, each a quarter of every row's head dimensions: a value
//! read from a tile serves each of the unit's rows (four forward, two backward), and the four
//! add their parts of each dot product with two shuffles. The forward pass keeps each query's
//! log-sum-exp of its scores, from which the backward pass computes the weights again.
//! Dropout's keep mask is drawn inside the kernels
//! from Philox counters, the words `kernels::dropout_keeps` draws for the whole
//! `[batch, heads, time, time]` mask, so the CPU's operations stay the reference. The kernels
//! read q, k and v where the q/k/v projection wrote them and write the output and the
//! projection's gradient in those layouts: no copies into heads and back. The output is written
//! in the type of the product after it (bf16 under `--precision bf16`), and the backward pass
//! reads it so: no cast between them, and no f32 copy kept for the backward pass.

use crate::{
    chains::zeros,
    draw::{assert_drawable, mask_args, Draw, DropoutDraw, MaskArgs},
    element::launch_for_element,
    fast_exp::fast_exp,
    flash_attention_tensor_cores::{
        flash_attention_forward_tensor_cores_kernel, flash_attention_key_value_gradient_tensor_cores_kernel,
        flash_attention_query_gradient_tensor_cores_kernel, mask_vector_size, tensor_core_launch, tensor_cores,
        TensorCores,
    },
};
use burn::tensor::{
    ops::{BoolTensor, FloatTensor},
    BoolStore, DType, Shape, TensorMetadata,
};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
    FloatElement, IntElement,
};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::{prelude::*, CubeCount, CubeDim};
use std::marker::PhantomData;

/// Widest head the kernels take: a tile of k and one of v (or of q and of the output's gradient)
/// fill 16 KiB of shared memory at 64, and each kernel takes under 1 KiB besides: within what
/// CUDA (48 KiB) and the desktop GPUs wgpu runs on (32 KiB and up) give a cube. Every GPT-2
/// has heads 64 wide.
pub const MAX_FLASH_HEAD_DIM: usize = 64;

/// How the attention kernels (flash attention's, the softmax's) take the mask: burn's booleans
/// as CUDA (u8) and wgpu (u32) store them.
pub const ATTENTION_MASK_DTYPES: [DType; 2] = [DType::Bool(BoolStore::U8), DType::Bool(BoolStore::U32)];

/// Rows of a tile of the other side (keys forward, queries or keys backward), and units of a
/// cube.
const TILE: usize = 32;

/// Units that hold the same rows, each a part of every row's head dimensions (see
/// [`part_dim`]): a dot product is their parts' sums added across the four (two shuffles), and
/// each value a unit reads from a tile serves each of its rows. When a unit held one whole row,
/// every multiply-add took an operand from shared memory, which hands an SM 128 bytes a cycle:
/// a quarter of the operands its multiply-adds can take.
pub(crate) const PARTS: usize = 4;

/// Groups of [`PARTS`] units a cube.
const GROUPS: usize = TILE / PARTS;

/// Queries a group holds in the forward kernel: [`TILE`] a cube.
const FORWARD_ROWS: usize = TILE / GROUPS;

/// Rows a group holds in the backward kernels, where a row is three or four arrays of registers
/// (q, `d_output` and `d_q`; k, v, `d_k` and `d_v`): four rows would pass the 255 registers a
/// unit may have.
const BACKWARD_ROWS: usize = 2;

/// Rows (queries or keys) a cube of the backward kernels takes.
const SHARED_ROWS: usize = GROUPS * BACKWARD_ROWS;

pub trait FlashAttention: burn::tensor::backend::Backend {
    /// `softmax(q · kᵀ / √head_dim)` over the keys each query may see, dropout on those weights,
    /// times `v`, for each of `heads` heads; with each query's log-sum-exp of its scaled scores,
    /// which the backward pass takes. `qkv` is the q/k/v projection's rows `[batch × time, 3 ×
    /// heads × head_dim]` (q, k and v side by side, each with its heads side by side; `head_dim`
    /// at most [`MAX_FLASH_HEAD_DIM`]), `hidden` `[batch, time, time]` is `true` where a query
    /// must not see a key (keys after the query are never seen, whatever it holds). Returns
    /// `(output [batch × time, heads × head_dim], logsumexp [batch, heads, time])`: the heads'
    /// outputs side by side, as the projection after attention takes them, in the type
    /// `output` (that of the projection's operands: qkv's, bf16 or f16). `products` says
    /// which units take its products.
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        output: DType,
        products: AttentionProducts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradient of the q/k/v rows from that of the output, `d_output` `[batch × time, heads
    /// × head_dim]`, and what [`flash_attention`] took and returned (the output in the type it
    /// was written in): `[batch × time, 3 × heads × head_dim]`, in the projection's layout.
    /// `products` says which units take its products.
    ///
    /// [`flash_attention`]: FlashAttention::flash_attention
    #[allow(clippy::too_many_arguments)]
    fn flash_attention_backward(
        qkv: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        products: AttentionProducts,
    ) -> FloatTensor<Self>;
}

/// Which units take flash attention's products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionProducts {
    /// The FP32 units, scalar multiply-adds, on every device.
    Fp32Units,
    /// Tensor cores where the device has them for the operands' type (see
    /// [`crate::flash_attention_tensor_cores`]), the FP32 units elsewhere.
    TensorCores,
}

impl AttentionProducts {
    /// How the kernels run on tensor cores for heads `head_dim` wide and an output of type
    /// `output` on `client`'s device, where these products ask for them and the device has
    /// them; `None` where the FP32 units take them.
    fn on_tensor_cores<R: CubeRuntime>(
        self,
        client: &ComputeClient<R>,
        output: DType,
        head_dim: usize,
    ) -> Option<TensorCores> {
        match self {
            AttentionProducts::TensorCores => tensor_cores(client, output, head_dim),
            AttentionProducts::Fp32Units => None,
        }
    }
}

/// Below every score: where a row's running maximum starts (here and in decoding attention).
pub(crate) const LOWEST_SCORE: f32 = -1.0e30;

/// An unseen key's score in the forward kernel: below [`LOWEST_SCORE`] by as much again, so
/// that its weight `e^(score − maximum)` is 0 even in a row that has seen no key yet.
pub(crate) const UNSEEN_SCORE: f32 = 2.0 * LOWEST_SCORE;

/// Rows of the other side's tile (keys forward and for the queries' gradient, queries for the
/// keys' and values' gradient) a step of a kernel's inner loop takes, with no branch between
/// them: their dot products, shuffles and exponentials are independent, and ptxas interleaves
/// them. With a row at a time, a branch on whether each pair was seen (forward, whether the
/// maximum grew) after each of the unit's rows kept its next row's dot product from starting:
/// in the forward kernel's SASS four chains a key of ~250 cycles each (a dot product of 16
/// dependent multiply-adds, two shuffles, an exponential), with 8 warps an SM to hide them.
/// Forward, a step's scores are taken first and the running maximum rescaled at most once a
/// step.
const STEP: usize = 4;

/// One cube a tile of queries of one (batch, head), [`FORWARD_ROWS`] queries a group of
/// [`PARTS`] units: over the key tiles up to its own, the group keeps each query's running
/// maximum of its scores, their exponentials' sum and the weighted sum of values, rescaled when
/// the maximum grows (online softmax).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_forward_kernel<F: Float, M: Int, O: Float, N: Size>(
    qkv: &Tensor<Vector<F, N>>,
    hidden: &Tensor<M>,
    output: &mut Tensor<O>,
    logsumexp: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let group = Group::new();
    let width = comptime!(part_width(head_dim));
    let row_width = comptime!(PARTS * part_width(head_dim));
    let query_tile = longest_first();
    let first_query = query_tile * TILE + group.group * FORWARD_ROWS;

    let mut q = Array::<F>::new(FORWARD_ROWS * width);
    read_parts::<F, F, N>(qkv, &at, first_query, at.q(), &group, F::cast_from(scale), &mut q, FORWARD_ROWS, head_dim);
    let mut max = Array::<F>::new(FORWARD_ROWS);
    #[unroll]
    for r in 0..FORWARD_ROWS {
        max[r] = F::new(LOWEST_SCORE);
    }
    let mut sum = zeros::<F>(FORWARD_ROWS);
    let mut weighted = zeros::<F>(FORWARD_ROWS * width);
    let mut k_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut v_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut pairs = PairBits::new(dropout);
    let own_query = query_tile * TILE + UNIT_POS_X as usize;
    let mut draw = Draw::new(mask, (at.pair * time + own_query) * time);

    for key_tile in 0..query_tile + 1 {
        load_tile::<F, N>(qkv, &at, key_tile * TILE, at.k(), &mut k_tile, head_dim, row_width);
        load_tile::<F, N>(qkv, &at, key_tile * TILE, at.v(), &mut v_tile, head_dim, row_width);
        pairs.mark_seen::<M>(hidden, &at, query_tile * TILE, TILE, key_tile * TILE, TILE);
        pairs.mark_kept(&at, &mut draw, own_query < time, key_tile * TILE, TILE, dropout);
        sync_cube();
        let kept = pairs.kept_rows(group.group * FORWARD_ROWS, FORWARD_ROWS, dropout);
        for step in 0..TILE / STEP {
            // Every unit takes part in the sums, seen or not: its shuffles need the whole plane.
            let mut scores = Array::<F>::new(FORWARD_ROWS * STEP);
            #[unroll]
            for b in 0..STEP {
                let j = step * STEP + b;
                let k_part = tile_part::<F>(&k_tile, j, &group, width);
                let seen = pairs.seen_by(j, TILE);
                #[unroll]
                for r in 0..FORWARD_ROWS {
                    let score = group.sum::<F>(dot_part::<F>(&q, r, &k_part, width));
                    let is_seen = is_set(seen, group.group * FORWARD_ROWS + r);
                    scores[r * STEP + b] = select(is_seen, score, F::new(UNSEEN_SCORE));
                }
            }
            #[unroll]
            for r in 0..FORWARD_ROWS {
                let mut step_max = max[r];
                #[unroll]
                for b in 0..STEP {
                    step_max = F::max(step_max, scores[r * STEP + b]);
                }
                if step_max > max[r] {
                    let rescale = fast_exp::<F>(max[r] - step_max);
                    sum[r] *= rescale;
                    #[unroll]
                    for l in 0..width {
                        weighted[r * width + l] *= rescale;
                    }
                    max[r] = step_max;
                }
            }
            #[unroll]
            for b in 0..STEP {
                let j = step * STEP + b;
                let v_part = tile_part::<F>(&v_tile, j, &group, width);
                #[unroll]
                for r in 0..FORWARD_ROWS {
                    // An unseen key's weight is 0, below the row's running maximum by 10³⁰ at least.
                    let weight = fast_exp::<F>(scores[r * STEP + b] - max[r]);
                    sum[r] += weight;
                    let kept_weight = weight * pairs.keep_scale::<F>(&draw, kept[r], j, dropout);
                    #[unroll]
                    for l in 0..width {
                        weighted[r * width + l] += kept_weight * v_part[l];
                    }
                }
            }
        }
        sync_cube();
    }
    #[unroll]
    for r in 0..FORWARD_ROWS {
        let query = first_query + r;
        if query < time {
            let start = at.start(output, query, at.q());
            let total = sum[r];
            #[unroll]
            for l in 0..width {
                let dim = part_dim(l, group.part);
                if dim < head_dim {
                    output[start + dim * output.stride(1)] = O::cast_from(weighted[r * width + l] / total);
                }
            }
            if group.part == 0 {
                logsumexp[at.pair * time + query] = max[r] + F::ln(total);
            }
        }
    }
}

/// One cube [`SHARED_ROWS`] queries, [`BACKWARD_ROWS`] a group: with `p` the weight of a key,
/// `z` dropout's scale for it (`1/(1 − p_drop)` or 0) and `D = Σ d_output · output` over the
/// query's row, the score's gradient is `p · (z · d_output · v − D)` and `d_q = Σ_keys that ·
/// k · scale`. Writes `D` for the keys' kernel. The output is read in its type, `O`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_query_gradient_kernel<F: Float, M: Int, O: Float, N: Size>(
    qkv: &Tensor<Vector<F, N>>,
    output: &Tensor<Vector<O, N>>,
    logsumexp: &Tensor<F>,
    d_output: &Tensor<Vector<F, N>>,
    hidden: &Tensor<M>,
    d_qkv: &mut Tensor<Vector<F, N>>,
    delta: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let group = Group::new();
    let width = comptime!(part_width(head_dim));
    let row_width = comptime!(PARTS * part_width(head_dim));
    let cube_first_query = longest_first() * SHARED_ROWS;
    let first_query = cube_first_query + group.group * BACKWARD_ROWS;
    let scale = F::cast_from(scale);
    let one = F::new(1.0);

    let mut q = Array::<F>::new(BACKWARD_ROWS * width);
    let mut d_out = Array::<F>::new(BACKWARD_ROWS * width);
    let mut out = Array::<F>::new(BACKWARD_ROWS * width);
    let mut gradient = zeros::<F>(BACKWARD_ROWS * width);
    read_parts::<F, F, N>(qkv, &at, first_query, at.q(), &group, scale, &mut q, BACKWARD_ROWS, head_dim);
    read_parts::<F, F, N>(d_output, &at, first_query, at.q(), &group, one, &mut d_out, BACKWARD_ROWS, head_dim);
    read_parts::<F, O, N>(output, &at, first_query, at.q(), &group, one, &mut out, BACKWARD_ROWS, head_dim);
    let mut row_delta = Array::<F>::new(BACKWARD_ROWS);
    let mut row_logsumexp = Array::<F>::new(BACKWARD_ROWS);
    #[unroll]
    for r in 0..BACKWARD_ROWS {
        row_delta[r] = group.sum::<F>(dot_rows::<F>(&d_out, &out, r, width));
        row_logsumexp[r] = F::new(0.0);
        let query = first_query + r;
        if query < time {
            row_logsumexp[r] = logsumexp[at.pair * time + query];
            if group.part == 0 {
                delta[at.pair * time + query] = row_delta[r];
            }
        }
    }
    let mut k_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut v_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut pairs = PairBits::new(dropout);
    let own_query = cube_first_query + UNIT_POS_X as usize;
    let marks = UNIT_POS_X < SHARED_ROWS as u32 && own_query < time;
    let mut draw = Draw::new(mask, (at.pair * time + own_query) * time);
    let last_query = usize::min(cube_first_query + SHARED_ROWS, time) - 1;

    for key_tile in 0..last_query / TILE + 1 {
        load_tile::<F, N>(qkv, &at, key_tile * TILE, at.k(), &mut k_tile, head_dim, row_width);
        load_tile::<F, N>(qkv, &at, key_tile * TILE, at.v(), &mut v_tile, head_dim, row_width);
        pairs.mark_seen::<M>(hidden, &at, cube_first_query, SHARED_ROWS, key_tile * TILE, TILE);
        pairs.mark_kept(&at, &mut draw, marks, key_tile * TILE, TILE, dropout);
        sync_cube();
        let kept = pairs.kept_rows(group.group * BACKWARD_ROWS, BACKWARD_ROWS, dropout);
        for step in 0..TILE / STEP {
            #[unroll]
            for b in 0..STEP {
                let j = step * STEP + b;
                let k_part = tile_part::<F>(&k_tile, j, &group, width);
                let v_part = tile_part::<F>(&v_tile, j, &group, width);
                let seen = pairs.seen_by(j, TILE);
                #[unroll]
                for r in 0..BACKWARD_ROWS {
                    let score = group.sum::<F>(dot_part::<F>(&q, r, &k_part, width));
                    let d_weight = group.sum::<F>(dot_part::<F>(&d_out, r, &v_part, width));
                    let is_seen = is_set(seen, group.group * BACKWARD_ROWS + r);
                    let weight = fast_exp::<F>(select(is_seen, score - row_logsumexp[r], F::new(LOWEST_SCORE)));
                    let keep = pairs.keep_scale::<F>(&draw, kept[r], j, dropout);
                    let d_score = weight * (keep * d_weight - row_delta[r]);
                    #[unroll]
                    for l in 0..width {
                        gradient[r * width + l] += d_score * k_part[l];
                    }
                }
            }
        }
        sync_cube();
    }
    write_parts::<F, N>(d_qkv, &at, first_query, at.q(), &group, scale, &gradient, BACKWARD_ROWS, head_dim);
}

/// One cube [`SHARED_ROWS`] keys, [`BACKWARD_ROWS`] a group, over the query tiles from its own
/// on: `d_v = Σ p · z · d_output` and `d_k = Σ p · (z · d_output · v − D) · q · scale` over the
/// queries that see the key. Each query tile's log-sum-exps and `D`s come into shared memory
/// with its rows: read a query at a time, each waited for a load from memory.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_key_value_gradient_kernel<F: Float, M: Int, N: Size>(
    qkv: &Tensor<Vector<F, N>>,
    logsumexp: &Tensor<F>,
    delta: &Tensor<F>,
    d_output: &Tensor<Vector<F, N>>,
    hidden: &Tensor<M>,
    d_qkv: &mut Tensor<Vector<F, N>>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let group = Group::new();
    let width = comptime!(part_width(head_dim));
    let row_width = comptime!(PARTS * part_width(head_dim));
    let cube_first_key = CUBE_POS_Y as usize * SHARED_ROWS;
    let first_key = cube_first_key + group.group * BACKWARD_ROWS;
    let scale = F::cast_from(scale);

    let mut k = Array::<F>::new(BACKWARD_ROWS * width);
    let mut v = Array::<F>::new(BACKWARD_ROWS * width);
    let mut d_k = zeros::<F>(BACKWARD_ROWS * width);
    let mut d_v = zeros::<F>(BACKWARD_ROWS * width);
    read_parts::<F, F, N>(qkv, &at, first_key, at.k(), &group, scale, &mut k, BACKWARD_ROWS, head_dim);
    read_parts::<F, F, N>(qkv, &at, first_key, at.v(), &group, F::new(1.0), &mut v, BACKWARD_ROWS, head_dim);
    let mut q_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut d_output_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut tile_logsumexp = SharedMemory::<F>::new(TILE);
    let mut tile_delta = SharedMemory::<F>::new(TILE);
    let mut pairs = PairBits::new(dropout);

    for query_tile in cube_first_key / TILE..time.div_ceil(TILE) {
        load_tile::<F, N>(qkv, &at, query_tile * TILE, at.q(), &mut q_tile, head_dim, row_width);
        load_tile::<F, N>(d_output, &at, query_tile * TILE, at.q(), &mut d_output_tile, head_dim, row_width);
        // A unit a key for the mask, and a unit a query of the tile for the rest: its row's
        // draws for the cube's keys (one Philox call serves four neighbouring keys of a query,
        // where a unit drawing for its own key would make one for each), its log-sum-exp and `D`.
        let own_query = query_tile * TILE + UNIT_POS_X as usize;
        let own = at.pair * time + own_query;
        let mut draw = Draw::new(mask, own * time);
        pairs.mark_seen::<M>(hidden, &at, query_tile * TILE, TILE, cube_first_key, SHARED_ROWS);
        pairs.mark_kept(&at, &mut draw, own_query < time, cube_first_key, SHARED_ROWS, dropout);
        let mut own_logsumexp = F::new(0.0);
        let mut own_delta = F::new(0.0);
        if own_query < time {
            own_logsumexp = logsumexp[own];
            own_delta = delta[own];
        }
        tile_logsumexp[UNIT_POS_X as usize] = own_logsumexp;
        tile_delta[UNIT_POS_X as usize] = own_delta;
        sync_cube();
        for step in 0..TILE / STEP {
            #[unroll]
            for b in 0..STEP {
                let i = step * STEP + b;
                let q_part = tile_part::<F>(&q_tile, i, &group, width);
                let d_output_part = tile_part::<F>(&d_output_tile, i, &group, width);
                let kept = pairs.kept_of(i, dropout);
                let (row_logsumexp, row_delta) = (tile_logsumexp[i], tile_delta[i]);
                #[unroll]
                for r in 0..BACKWARD_ROWS {
                    let score = group.sum::<F>(dot_part::<F>(&k, r, &q_part, width));
                    let d_weight = group.sum::<F>(dot_part::<F>(&v, r, &d_output_part, width));
                    let key_bit = group.group * BACKWARD_ROWS + r;
                    let is_seen = is_set(pairs.seen_by(key_bit, SHARED_ROWS), i);
                    let weight = fast_exp::<F>(select(is_seen, score - row_logsumexp, F::new(LOWEST_SCORE)));
                    let keep = pairs.keep_scale::<F>(&draw, kept, key_bit, dropout);
                    let d_score = weight * (keep * d_weight - row_delta);
                    let kept_weight = weight * keep;
                    #[unroll]
                    for l in 0..width {
                        d_v[r * width + l] += kept_weight * d_output_part[l];
                        d_k[r * width + l] += d_score * q_part[l];
                    }
                }
            }
        }
        sync_cube();
    }
    write_parts::<F, N>(d_qkv, &at, first_key, at.k(), &group, scale, &d_k, BACKWARD_ROWS, head_dim);
    write_parts::<F, N>(d_qkv, &at, first_key, at.v(), &group, F::new(1.0), &d_v, BACKWARD_ROWS, head_dim);
}

/// Which (query, key) pairs of a tile see each other, and which dropout keeps, as bits in
/// shared memory: a word a key for what the mask and causality let see (bit `n` for the `n`th
/// query), a word a query for what dropout keeps (bit `n` for the `n`th key, as a query's
/// Philox draws run along its row). Each unit marks one key's or one query's word, so that a
/// pair's mask is read and its draw made once a tile, not once a unit that holds a part of the
/// row; and a unit reads a column of the mask, its neighbours the next columns: a warp's load
/// is neighbouring bytes of one row, where a unit a query read 32 bytes a row apart.
#[derive(CubeType)]
struct PairBits {
    seen: SharedMemory<u32>,
    kept: SharedMemory<u32>,
}

#[cube]
impl PairBits {
    fn new(#[comptime] dropout: bool) -> PairBits {
        PairBits {
            seen: SharedMemory::<u32>::new(TILE),
            kept: SharedMemory::<u32>::new(comptime!(if dropout { TILE } else { 1 })),
        }
    }

    /// The words of `keys` keys from `first_key` on against `queries` queries from
    /// `first_query` on. A pair sees when the key is not later than the query, the query is in
    /// the row, and `hidden` does not hide it. Unit `u` marks key `first_key + u mod keys`,
    /// for its share of the queries where the cube has more units than keys (see
    /// [`PairBits::seen_by`]).
    fn mark_seen<M: Int>(
        &mut self,
        hidden: &Tensor<M>,
        at: &Layout,
        first_query: usize,
        #[comptime] queries: usize,
        first_key: usize,
        #[comptime] keys: usize,
    ) {
        let parts = comptime!(TILE / keys);
        let share = comptime!(queries / parts);
        let unit = UNIT_POS_X as usize;
        let mut key = first_key + unit;
        let mut first = 0;
        if comptime!(parts > 1) {
            key = first_key + unit % keys;
            first = (unit / keys) * share;
        }
        let start = at.batch * hidden.stride(0) + key * hidden.stride(2);
        let query_stride = hidden.stride(1);
        let mut seen = 0u32;
        #[unroll]
        for m in 0..share {
            let n = first + m;
            let query = first_query + n;
            if key <= query && query < at.time && hidden[start + query * query_stride] == M::from_int(0) {
                seen |= 1u32 << n as u32;
            }
        }
        self.seen[unit] = seen;
    }

    /// This unit's word of what dropout keeps for `keys` keys from `first_key` on, along the
    /// row of dropout's mask that `draw` draws (its query's; none where the unit `marks` no
    /// query).
    fn mark_kept(
        &mut self,
        at: &Layout,
        draw: &mut Draw,
        marks: bool,
        first_key: usize,
        #[comptime] keys: usize,
        #[comptime] dropout: bool,
    ) {
        if dropout {
            let mut kept = 0u32;
            if marks {
                for n in 0..keys {
                    let key = first_key + n;
                    if key < at.time && draw.kept(key) {
                        kept |= 1u32 << n as u32;
                    }
                }
            }
            self.kept[UNIT_POS_X as usize] = kept;
        }
    }

    /// Key `n`'s word of the queries that see it, of [`mark_seen`]'s `keys`: the units that
    /// marked its shares of the queries, `keys` apart, together.
    ///
    /// [`mark_seen`]: PairBits::mark_seen
    fn seen_by(&self, n: usize, #[comptime] keys: usize) -> u32 {
        let mut seen = 0u32;
        #[unroll]
        for part in 0..TILE / keys {
            seen |= self.seen[part * keys + n];
        }
        seen
    }

    /// Query `n`'s word of the keys dropout keeps (all without dropout).
    fn kept_of(&self, n: usize, #[comptime] dropout: bool) -> u32 {
        let mut kept = 0xFFFF_FFFFu32;
        if dropout {
            kept = self.kept[n];
        }
        kept
    }

    /// The kept words of `rows` queries from the `first` on.
    fn kept_rows(&self, first: usize, #[comptime] rows: usize, #[comptime] dropout: bool) -> Array<u32> {
        let mut kept = Array::<u32>::new(rows);
        #[unroll]
        for r in 0..rows {
            kept[r] = self.kept_of(first + r, dropout);
        }
        kept
    }

    /// Dropout's factor for bit `n` of a `kept` word (1 without dropout).
    fn keep_scale<F: Float>(&self, draw: &Draw, kept: u32, n: usize, #[comptime] dropout: bool) -> F {
        let mut scale = F::new(1.0);
        if dropout {
            scale = draw.scale_if::<F>(is_set(kept, n));
        }
        scale
    }
}

/// Whether bit `n` of a word of [`PairBits`] (or of any word of bits) is set.
#[cube]
pub(crate) fn is_set(bits: u32, n: usize) -> bool {
    (bits >> n as u32) & 1u32 == 1u32
}

/// Where a cube's head lies in the rows `[batch × time, sections × heads × head_dim]` the
/// kernels read and write: the q/k/v projection's (q, k, v side by side, each with its heads
/// side by side) and the output's.
#[derive(CubeType)]
pub(crate) struct Layout {
    /// The cube's (batch, head), and `batch × heads + head`.
    pub(crate) batch: usize,
    head: usize,
    pub(crate) pair: usize,
    pub(crate) time: usize,
    /// `heads × head_dim`: one section's columns.
    width: usize,
    #[cube(comptime)]
    head_dim: usize,
}

#[cube]
impl Layout {
    pub(crate) fn new(heads: u32, time: usize, #[comptime] head_dim: usize) -> Layout {
        let heads = heads as usize;
        let pair = CUBE_POS_X as usize;
        Layout { batch: pair / heads, head: pair % heads, pair, time, width: heads * head_dim, head_dim }
    }

    /// The first column of the cube's head in q's section (and in the output), k's and v's.
    pub(crate) fn q(&self) -> usize {
        self.head * self.head_dim
    }

    pub(crate) fn k(&self) -> usize {
        self.width + self.head * self.head_dim
    }

    pub(crate) fn v(&self) -> usize {
        2 * self.width + self.head * self.head_dim
    }

    /// Where `position`'s row of the head starts in `rows`, from the head's first `column`: an
    /// index of `rows`' own, counted in its vectors where it has them (their size divides
    /// `column`; the strides are [`vector_strides`]).
    pub(crate) fn start<T: CubePrimitive>(&self, rows: &Tensor<T>, position: usize, column: usize) -> usize {
        // Not through `vector_strides`: both strides read before the products took the
        // tensor-core forward's 64-row f32 variant from 64 registers to 76 (32 warps to 24).
        let size = rows.vector_size();
        (self.batch * self.time + position) * (rows.stride(0) / size) + column / size * rows.stride(1)
    }
}

/// `rows`' strides from one position to the next and from one column to the next, counted in
/// its vectors where it has them: their size divides the rows' stride, and the columns' stride
/// is then 1.
#[cube]
pub(crate) fn vector_strides<T: CubePrimitive>(rows: &Tensor<T>) -> (usize, usize) {
    (rows.stride(0) / rows.vector_size(), rows.stride(1))
}

/// Positions `first … first + TILE` of the cube's head, from `column` on, of `from` into
/// `tile`, rows `row_width` apart, shared out among the cube's units; zeros past the last
/// position and in a row's columns past `head_dim`. `from` is read in its vectors ([`read_parts`]),
/// neighbouring units reading neighbouring vectors of a row. A unit issues [`LOADS_AT_ONCE`]
/// elements' loads before it waits for them, the strides read once: a loop of one load at a time
/// waited for each (and for the strides, which CubeCL keeps in memory) before the next.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_tile<F: Float, N: Size>(
    from: &Tensor<Vector<F, N>>,
    at: &Layout,
    first: usize,
    column: usize,
    tile: &mut SharedMemory<F>,
    #[comptime] head_dim: usize,
    #[comptime] row_width: usize,
) {
    let size = from.vector_size();
    let (row_vectors, at_once) = comptime!((row_width / size, LOADS_AT_ONCE / size));
    let (row_stride, column_stride) = vector_strides(from);
    let start = at.start(from, first, column);
    for group in 0..comptime!(row_vectors.div_ceil(at_once)) {
        #[unroll]
        for n in 0..at_once {
            let load = group * at_once + n;
            if load < row_vectors {
                let i = load * TILE + UNIT_POS_X as usize;
                let (row, vector) = (i / row_vectors, i % row_vectors);
                let mut value = Vector::<F, N>::new(F::new(0.0));
                if first + row < at.time && vector * size < head_dim {
                    value = from[start + row * row_stride + vector * column_stride];
                }
                #[unroll]
                for j in 0..size {
                    tile[i * size + j] = value[j];
                }
            }
        }
    }
}

/// Loads of a tile a unit issues before waiting for them: as many registers as the kernels
/// spare (all of a 64-wide row's at once took ptxas to 255 registers and spills).
const LOADS_AT_ONCE: usize = 16;

/// The most neighbouring elements along the last dimension of each of `tensors` that one load
/// may take, for runs of `run` elements that start a multiple of `run` in: 8, 4, 2 or 1, the
/// most that divides `run`, each tensor's other strides and its start in its buffer, where its
/// last dimension is end to end and its device loads vectors of that many of its elements.
pub(crate) fn vector_size<R: CubeRuntime>(tensors: &[&CubeTensor<R>], run: usize) -> usize {
    let loads = |tensor: &CubeTensor<R>, size: usize| {
        let (last, others) = tensor.meta.strides().split_last().expect("a tensor of one dimension at least");
        let start = tensor.handle.offset_start.unwrap_or(0) as usize;
        *last == 1
            && others.iter().all(|stride| stride.is_multiple_of(size))
            && start.is_multiple_of(size * tensor.dtype.size())
            && tensor.client.io_optimized_vector_sizes(tensor.dtype.size()).any(|s| s == size)
    };
    [8, 4, 2]
        .into_iter()
        .find(|&size| run.is_multiple_of(size) && tensors.iter().all(|tensor| loads(tensor, size)))
        .unwrap_or(1)
}

/// The vectors the kernels read and write q/k/v, the output and their gradients in (of each of
/// `tensors`): the most neighbouring head dimensions one load may take ([`vector_size`]) within
/// a part's runs ([`part_dim`]).
pub(crate) fn head_vector_size<R: CubeRuntime>(tensors: &[&CubeTensor<R>], head_dim: usize) -> usize {
    // The largest power of two that divides both `head_dim` and a run.
    vector_size(tensors, 1 << head_dim.trailing_zeros().min(PART_RUN.trailing_zeros()))
}

/// Neighbouring head dimensions a unit holds of a row before the next part's ([`part_dim`]).
const PART_RUN: usize = 4;

/// Head dimensions a unit holds of each of its rows: `head_dim` shared among [`PARTS`] units,
/// rounded up to whole runs (see [`part_dim`]).
pub(crate) fn part_width(head_dim: usize) -> usize {
    head_dim.div_ceil(PART_RUN * PARTS) * PART_RUN
}

/// The head dimension that is element `local` of part `part` of a row: the parts take turns by
/// runs of 4, so that the units of a group, reading the same row of a tile, read one 16-byte
/// load each from neighbouring banks. Past `head_dim` (when it is not a multiple of 16) the
/// dimensions are padding: zeros in the tiles and in the units' rows.
#[cube]
pub(crate) fn part_dim(local: usize, part: usize) -> usize {
    (local / PART_RUN) * (PART_RUN * PARTS) + part * PART_RUN + local % PART_RUN
}

/// Where a unit stands in its group: unit `PARTS · group + part` holds part `part` of the
/// group's rows.
#[derive(CubeType)]
pub(crate) struct Group {
    pub(crate) group: usize,
    pub(crate) part: usize,
}

#[cube]
impl Group {
    pub(crate) fn new() -> Group {
        let unit = UNIT_POS_X as usize;
        Group { group: unit / PARTS, part: unit % PARTS }
    }

    /// `mine` added to the group's other parts, the same bits in every unit of the group (each
    /// adds the same pairs, in an order that addition's commutativity makes equal). Every unit
    /// of the plane must call it: the shuffles take the whole plane.
    pub(crate) fn sum<F: Float>(&self, mine: F) -> F {
        let pair = mine + plane_shuffle_xor(mine, 1u32);
        pair + plane_shuffle_xor(pair, 2u32)
    }

    /// The largest of `mine` and the group's other parts' (as [`Group::sum`]).
    pub(crate) fn max<F: Float>(&self, mine: F) -> F {
        let pair = F::max(mine, plane_shuffle_xor(mine, 1u32));
        F::max(pair, plane_shuffle_xor(pair, 2u32))
    }
}

/// `rows` rows of the cube's head from `first` on, from `column` on, of `from` (of type `T`):
/// this unit's part of each, times `scale`, into `into` (row `r` from `r · width` on); zeros
/// past the last position and for padding. `from` is read in its vectors, `N` neighbouring
/// head dimensions a load, within a part's runs ([`head_vector_size`]).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_parts<F: Float, T: Float, N: Size>(
    from: &Tensor<Vector<T, N>>,
    at: &Layout,
    first: usize,
    column: usize,
    group: &Group,
    scale: F,
    into: &mut Array<F>,
    #[comptime] rows: usize,
    #[comptime] head_dim: usize,
) {
    let size = from.vector_size();
    let width = comptime!(part_width(head_dim));
    #[unroll]
    for r in 0..rows {
        let position = first + r;
        let start = at.start(from, position, column);
        #[unroll]
        for v in 0..comptime!(width / size) {
            let dim = part_dim(v * size, group.part);
            let mut value = Vector::<T, N>::new(T::new(0.0));
            if position < at.time && dim < head_dim {
                value = from[start + dim / size * from.stride(1)];
            }
            #[unroll]
            for j in 0..size {
                into[r * width + v * size + j] = F::cast_from(value[j]) * scale;
            }
        }
    }
}

/// This unit's part of `rows` rows, times `scale`, into `to` at the cube's head's positions
/// from `first` on, from `column` on; nothing past the last position. Written in `to`'s vectors,
/// as [`read_parts`] reads.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_parts<F: Float, N: Size>(
    to: &mut Tensor<Vector<F, N>>,
    at: &Layout,
    first: usize,
    column: usize,
    group: &Group,
    scale: F,
    values: &Array<F>,
    #[comptime] rows: usize,
    #[comptime] head_dim: usize,
) {
    let size = to.vector_size();
    let width = comptime!(part_width(head_dim));
    #[unroll]
    for r in 0..rows {
        let position = first + r;
        if position < at.time {
            let start = at.start(to, position, column);
            #[unroll]
            for v in 0..comptime!(width / size) {
                let dim = part_dim(v * size, group.part);
                if dim < head_dim {
                    let mut value = Vector::<F, N>::new(F::new(0.0));
                    #[unroll]
                    for j in 0..size {
                        value[j] = values[r * width + v * size + j] * scale;
                    }
                    to[start + dim / size * to.stride(1)] = value;
                }
            }
        }
    }
}

/// This unit's part of row `n` of `tile` (rows `PARTS · width` apart), into registers: each
/// value then serves all of the unit's rows.
#[cube]
fn tile_part<F: Float>(tile: &SharedMemory<F>, n: usize, group: &Group, #[comptime] width: usize) -> Array<F> {
    let mut part = Array::<F>::new(width);
    #[unroll]
    for l in 0..width {
        part[l] = tile[n * (PARTS * width) + part_dim(l, group.part)];
    }
    part
}

/// This unit's part of `rows[r] · part` (`rows` as [`read_parts`] writes them).
#[cube]
fn dot_part<F: Float>(rows: &Array<F>, #[comptime] r: usize, part: &Array<F>, #[comptime] width: usize) -> F {
    let mut sum = F::new(0.0);
    #[unroll]
    for l in 0..width {
        sum += rows[r * width + l] * part[l];
    }
    sum
}

/// This unit's part of `a[r] · b[r]`.
#[cube]
pub(crate) fn dot_rows<F: Float>(a: &Array<F>, b: &Array<F>, #[comptime] r: usize, #[comptime] width: usize) -> F {
    let mut sum = F::new(0.0);
    #[unroll]
    for l in 0..width {
        sum += a[r * width + l] * b[r * width + l];
    }
    sum
}

/// `[batch, time, head_dim]` of attention over `qkv` with `heads` heads and mask `hidden`,
/// checked against what the kernels take.
fn dims<R: CubeRuntime>(qkv: &CubeTensor<R>, heads: usize, hidden: &CubeTensor<R>) -> [usize; 3] {
    let [batch, time, _] = hidden.meta.shape().dims::<3>();
    let head_dim = qkv.meta.shape().dims::<2>()[1] / (3 * heads);
    assert!(head_dim <= MAX_FLASH_HEAD_DIM, "flash attention takes heads at most {MAX_FLASH_HEAD_DIM} wide");
    assert_drawable(batch * heads * time * time, "flash attention");
    [batch, time, head_dim]
}

/// A cube every `rows_a_cube` positions of each (batch, head): the (batch, head) along x, the
/// blocks of rows along y. A GPU starts cubes x fastest, so a row of cubes is one block of
/// every head, and the kernels take the blocks longest first (under causality a block works on
/// 1 to `time / TILE` tiles: the last blocks of queries, the first of keys): the short ones
/// then fill the SMs that finish early. With the blocks in order, each head's longest started
/// last, after the card's first wave of cubes.
pub(crate) fn cubes(batch: usize, heads: usize, time: usize, rows_a_cube: usize) -> CubeCount {
    CubeCount::Static((batch * heads) as u32, time.div_ceil(rows_a_cube) as u32, 1)
}

/// The block of queries a cube of the forward or queries' kernel takes: the last first (see
/// [`cubes`]).
#[cube]
#[allow(arithmetic_overflow)] // rustc folds CubeCL's placeholders for the two (1 and 2)
pub(crate) fn longest_first() -> usize {
    (CUBE_COUNT_Y - 1 - CUBE_POS_Y) as usize
}

/// Runs `$launch` with `$M` the element type of the boolean mask `$hidden` (burn stores
/// booleans as bytes or as 32-bit words, by backend).
macro_rules! with_mask_element {
    ($hidden:expr, $M:ident => $launch:expr) => {
        match $hidden.dtype {
            burn::tensor::DType::Bool(burn::tensor::BoolStore::U8) => {
                type $M = u8;
                $launch
            }
            burn::tensor::DType::Bool(burn::tensor::BoolStore::U32) => {
                type $M = u32;
                $launch
            }
            other => panic!(
                "attention's kernels take masks stored as {:?}, not {other:?}",
                $crate::flash_attention::ATTENTION_MASK_DTYPES
            ),
        }
    };
}
pub(crate) use with_mask_element;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FlashAttention for CubeBackend<R, F, I, BT> {
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        output: DType,
        products: AttentionProducts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, time, head_dim] = dims(&qkv, heads, &hidden);
        let (client, device) = (qkv.client.clone(), qkv.device.clone());
        let own = qkv.dtype;
        let output = empty_device_contiguous_dtype(
            client.clone(),
            device.clone(),
            Shape::new([batch * time, heads * head_dim]),
            output,
        );
        let logsumexp =
            empty_device_contiguous_dtype(client.clone(), device, Shape::new([batch, heads, time]), qkv.dtype);
        let on_tensor_cores = products.on_tensor_cores(&client, output.dtype, head_dim);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let vector = head_vector_size(&[&qkv], head_dim);
        with_mask_element!(hidden, M => match on_tensor_cores {
            Some(cores) => tensor_core_launch!(
                flash_attention_forward_tensor_cores_kernel::<F, M, R>,
                cores.fragment,
                output.dtype,
                own
            )(
                &client,
                cores.cubes(batch, heads, time),
                cores.cube_dim(),
                vector,
                mask_vector_size(&hidden),
                qkv.into_tensor_arg(),
                hidden.into_tensor_arg(),
                output.clone().into_tensor_arg(),
                logsumexp.clone().into_tensor_arg(),
                heads as u32,
                scale,
                mask_args(dropout),
                head_dim,
                dropout.is_some(),
                cores.fragment,
                cores.rows,
            ),
            None => launch_for_element!(
                flash_attention_forward_kernel::<F, M, R>,
                output.dtype,
                own,
                "flash attention: the output"
            )(
                &client,
                cubes(batch, heads, time, TILE),
                CubeDim::new_1d(TILE as u32),
                vector,
                qkv.into_tensor_arg(),
                hidden.into_tensor_arg(),
                output.clone().into_tensor_arg(),
                logsumexp.clone().into_tensor_arg(),
                heads as u32,
                scale,
                mask_args(dropout),
                head_dim,
                dropout.is_some(),
            ),
        });
        (output, logsumexp)
    }

    fn flash_attention_backward(
        qkv: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        products: AttentionProducts,
    ) -> FloatTensor<Self> {
        let [batch, time, head_dim] = dims(&qkv, heads, &hidden);
        let (client, device) = (qkv.client.clone(), qkv.device.clone());
        let d_qkv = empty_device_contiguous_dtype(client.clone(), device.clone(), qkv.shape(), qkv.dtype);
        let delta = empty_device_contiguous_dtype(client.clone(), device, Shape::new([batch, heads, time]), qkv.dtype);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let (own, output_type) = (qkv.dtype, output.dtype);
        let on_tensor_cores = products.on_tensor_cores(&client, output_type, head_dim);
        let vector = head_vector_size(&[&qkv, &output, &d_output, &d_qkv], head_dim);
        with_mask_element!(hidden, M => match on_tensor_cores {
            Some(cores) => {
                let mask_vector = mask_vector_size(&hidden);
                tensor_core_launch!(
                    flash_attention_query_gradient_tensor_cores_kernel::<F, M, R>,
                    cores.fragment,
                    output_type,
                    own
                )(
                    &client,
                    cores.cubes(batch, heads, time),
                    cores.cube_dim(),
                    vector,
                    mask_vector,
                    qkv.clone().into_tensor_arg(),
                    output.into_tensor_arg(),
                    logsumexp.clone().into_tensor_arg(),
                    d_output.clone().into_tensor_arg(),
                    hidden.clone().into_tensor_arg(),
                    d_qkv.clone().into_tensor_arg(),
                    delta.clone().into_tensor_arg(),
                    heads as u32,
                    scale,
                    mask_args(dropout),
                    head_dim,
                    dropout.is_some(),
                    cores.fragment,
                    cores.rows,
                );
                tensor_core_launch!(flash_attention_key_value_gradient_tensor_cores_kernel::<F, M, R>, cores.fragment)(
                    &client,
                    cores.cubes(batch, heads, time),
                    cores.cube_dim(),
                    vector,
                    mask_vector,
                    qkv.into_tensor_arg(),
                    logsumexp.into_tensor_arg(),
                    delta.into_tensor_arg(),
                    d_output.into_tensor_arg(),
                    hidden.into_tensor_arg(),
                    d_qkv.clone().into_tensor_arg(),
                    heads as u32,
                    scale,
                    mask_args(dropout),
                    head_dim,
                    dropout.is_some(),
                    cores.fragment,
                    cores.rows,
                );
            }
            None => {
                launch_for_element!(
                    flash_attention_query_gradient_kernel::<F, M, R>,
                    output_type,
                    own,
                    "flash attention's backward pass: the output"
                )(
                    &client,
                    cubes(batch, heads, time, SHARED_ROWS),
                    CubeDim::new_1d(TILE as u32),
                    vector,
                    qkv.clone().into_tensor_arg(),
                    output.into_tensor_arg(),
                    logsumexp.clone().into_tensor_arg(),
                    d_output.clone().into_tensor_arg(),
                    hidden.clone().into_tensor_arg(),
                    d_qkv.clone().into_tensor_arg(),
                    delta.clone().into_tensor_arg(),
                    heads as u32,
                    scale,
                    mask_args(dropout),
                    head_dim,
                    dropout.is_some(),
                );
                flash_attention_key_value_gradient_kernel::launch::<F, M, R>(
                    &client,
                    cubes(batch, heads, time, SHARED_ROWS),
                    CubeDim::new_1d(TILE as u32),
                    vector,
                    qkv.into_tensor_arg(),
                    logsumexp.into_tensor_arg(),
                    delta.into_tensor_arg(),
                    d_output.into_tensor_arg(),
                    hidden.into_tensor_arg(),
                    d_qkv.clone().into_tensor_arg(),
                    heads as u32,
                    scale,
                    mask_args(dropout),
                    head_dim,
                    dropout.is_some(),
                );
            }
        });
        d_qkv
    }
}

impl<B: FusionBackend + FlashAttention> FlashAttention for Fusion<B> {
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        output: DType,
        products: AttentionProducts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Clone, Debug)]
        struct ForwardOp<B> {
            desc: CustomOpIr,
            heads: usize,
            dropout: Option<DropoutDraw>,
            products: AttentionProducts,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + FlashAttention> Operation<B::FusionRuntime> for ForwardOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([qkv, hidden], [output, logsumexp]) = self.desc.as_fixed();
                let (attended, row_logsumexp) = B::flash_attention(
                    handles.get_float_tensor::<B>(qkv),
                    self.heads,
                    handles.get_bool_tensor::<B>(hidden),
                    self.dropout,
                    output.dtype,
                    self.products,
                );
                handles.register_float_tensor::<B>(&output.id, attended);
                handles.register_float_tensor::<B>(&logsumexp.id, row_logsumexp);
            }
        }

        let client = qkv.client.clone();
        let [rows, columns] = qkv.shape.dims::<2>();
        let [batch, time, _] = hidden.shape.dims::<3>();
        let streams = OperationStreams::with_inputs([&qkv, &hidden]);
        let outputs = [
            TensorIr::uninit(client.create_empty_handle(), Shape::new([rows, columns / 3]), output),
            TensorIr::uninit(client.create_empty_handle(), Shape::new([batch, heads, time]), qkv.dtype),
        ];
        let desc = CustomOpIr::new("flash_attention", &[qkv.into_ir(), hidden.into_ir()], &outputs);
        let op = ForwardOp::<B> { desc: desc.clone(), heads, dropout, products, backend: PhantomData };
        let [output, logsumexp] = client.register(streams, OperationIr::Custom(desc), op).outputs();
        (output, logsumexp)
    }

    fn flash_attention_backward(
        qkv: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        products: AttentionProducts,
    ) -> FloatTensor<Self> {
        #[derive(Clone, Debug)]
        struct BackwardOp<B> {
            desc: CustomOpIr,
            heads: usize,
            dropout: Option<DropoutDraw>,
            products: AttentionProducts,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + FlashAttention> Operation<B::FusionRuntime> for BackwardOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([qkv, output, logsumexp, d_output, hidden], [d_qkv]) = self.desc.as_fixed();
                let gradient = B::flash_attention_backward(
                    handles.get_float_tensor::<B>(qkv),
                    handles.get_float_tensor::<B>(output),
                    handles.get_float_tensor::<B>(logsumexp),
                    handles.get_float_tensor::<B>(d_output),
                    self.heads,
                    handles.get_bool_tensor::<B>(hidden),
                    self.dropout,
                    self.products,
                );
                handles.register_float_tensor::<B>(&d_qkv.id, gradient);
            }
        }

        let client = qkv.client.clone();
        let streams = OperationStreams::with_inputs([&qkv, &output, &logsumexp, &d_output, &hidden]);
        let d_qkv = TensorIr::uninit(client.create_empty_handle(), qkv.shape.clone(), qkv.dtype);
        let inputs = [qkv.into_ir(), output.into_ir(), logsumexp.into_ir(), d_output.into_ir(), hidden.into_ir()];
        let desc = CustomOpIr::new("flash_attention_backward", &inputs, &[d_qkv]);
        let op = BackwardOp::<B> { desc: desc.clone(), heads, dropout, products, backend: PhantomData };
        let [d_qkv] = client.register(streams, OperationIr::Custom(desc), op).outputs();
        d_qkv
    }
}
