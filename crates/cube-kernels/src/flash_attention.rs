//! Causal self-attention's core for training, forward and backward, without a `time × time`
//! tensor: one launch forward and two backward, where burn takes two products, the softmax's
//! reductions and element-wise kernels forward, and five products and more backward, and
//! writes the scores and weights out in full (flash attention's tiling, after Dao et al.).
//!
//! A cube takes a tile of queries (forward, and the queries' gradients) or of keys (the keys'
//! and values' gradients), with the rows in registers, and walks the other side's tiles through
//! shared memory: each row of k and v is read from memory once a query tile, not once a query.
//! Forward, a unit holds a query's row (two rows of 64: q and the weighted sum). Backward, each
//! unit would hold four, more registers than a unit has, so two units share a row, a half each,
//! and add their halves of each dot product through shared memory. The forward pass keeps each
//! query's log-sum-exp of its scores, from which the backward pass computes the weights again. Dropout's keep mask is drawn inside the kernels
//! from Philox counters, the words `kernels::dropout_keeps` draws for the whole
//! `[batch, heads, time, time]` mask, so the CPU's operations stay the reference. The kernels
//! read q, k and v where the q/k/v projection wrote them and write the output and the
//! projection's gradient in those layouts: no copies into heads and back. The output is written
//! in the type of the product after it (bf16 under `--precision bf16`), and the backward pass
//! reads it so: no cast between them, and no f32 copy kept for the backward pass.

use crate::{
    chains::{chains_total, new_chains, CHAINS},
    draw::{mask_args, Draw, DropoutDraw, MaskArgs},
    element::launch_for_element,
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
/// fill 16 KiB of shared memory at 64, what every backend offers (WebGPU's minimum). Every
/// GPT-2 has heads 64 wide.
pub const MAX_FLASH_HEAD_DIM: usize = 64;

/// How the kernels take the mask: burn's booleans as CUDA (u8) and wgpu (u32) store them.
pub const FLASH_MASK_DTYPES: [DType; 2] = [DType::Bool(BoolStore::U8), DType::Bool(BoolStore::U32)];

/// Rows of a tile, and units of a cube (one a row in the forward kernel).
const TILE: usize = 32;

/// Rows a cube of the backward kernels takes: two units a row, each holding half of the row's
/// head dimensions. A unit keeps four of its rows in registers there (a whole row each, 256
/// values, made ptxas spill to local memory on sm_90: `scripts/bench/kernel_registers.sh`).
const SHARED_ROWS: usize = TILE / 2;

/// The backward kernels' shared memory for their units' partial dot products: two values a
/// unit, in two sets used in turn (see [`Share::row_dots`]).
const EXCHANGE_SLOTS: usize = 2 * 2 * TILE;

pub trait FlashAttention: burn::tensor::backend::Backend {
    /// `softmax(q · kᵀ / √head_dim)` over the keys each query may see, dropout on those weights,
    /// times `v`, for each of `heads` heads; with each query's log-sum-exp of its scaled scores,
    /// which the backward pass takes. `qkv` is the q/k/v projection's rows `[batch × time, 3 ×
    /// heads × head_dim]` (q, k and v side by side, each with its heads side by side; `head_dim`
    /// at most [`MAX_FLASH_HEAD_DIM`]), `hidden` `[batch, time, time]` is `true` where a query
    /// must not see a key (keys after the query are never seen, whatever it holds). Returns
    /// `(output [batch × time, heads × head_dim], logsumexp [batch, heads, time])`: the heads'
    /// outputs side by side, as the projection after attention takes them, in the type
    /// `output` (that of the projection's operands: qkv's, bf16 or f16).
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        output: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradient of the q/k/v rows from that of the output, `d_output` `[batch × time, heads
    /// × head_dim]`, and what [`flash_attention`] took and returned (the output in the type it
    /// was written in): `[batch × time, 3 × heads × head_dim]`, in the projection's layout.
    ///
    /// [`flash_attention`]: FlashAttention::flash_attention
    fn flash_attention_backward(
        qkv: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
    ) -> FloatTensor<Self>;
}

/// Below every score: where a row's running maximum starts (here and in decoding attention).
pub(crate) const LOWEST_SCORE: f32 = -1.0e30;

/// One cube a tile of queries of one (batch, head), one unit a query: over the key tiles up to
/// its own, the unit keeps a running maximum of its scores, their exponentials' sum and the
/// weighted sum of values, rescaled when the maximum grows (online softmax).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_forward_kernel<F: Float, M: Int, O: Float>(
    qkv: &Tensor<F>,
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
    let query_tile = CUBE_POS_X as usize;
    let query = query_tile * TILE + UNIT_POS_X as usize;
    let active = query < time;

    let mut q_row = Array::<F>::new(head_dim);
    let mut weighted = Array::<F>::new(head_dim);
    read_row::<F>(qkv, at.start(qkv, query, at.q()), active, F::cast_from(scale), &mut q_row, head_dim);
    #[unroll]
    for d in 0..head_dim {
        weighted[d] = F::new(0.0);
    }
    let mut k_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut v_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut max = F::new(LOWEST_SCORE);
    let mut sum = F::new(0.0);
    let mut draw = Draw::new(mask, (at.pair * time + query) * time);

    for key_tile in 0..query_tile + 1 {
        load_tile::<F>(qkv, &at, key_tile * TILE, at.k(), &mut k_tile, head_dim, head_dim);
        load_tile::<F>(qkv, &at, key_tile * TILE, at.v(), &mut v_tile, head_dim, head_dim);
        let seen = seen_pairs::<M>(hidden, &at, active, query, key_tile * TILE, 0, 1);
        sync_cube();
        if active {
            for j in 0..TILE {
                let key = key_tile * TILE + j;
                if is_seen(seen, j) {
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
        let start = at.start(output, query, at.q());
        #[unroll]
        for d in 0..head_dim {
            output[start + d * output.stride(1)] = O::cast_from(weighted[d] / sum);
        }
        logsumexp[at.pair * time + query] = max + F::ln(sum);
    }
}

/// One cube [`SHARED_ROWS`] queries, two units a query (each with half of its row, see
/// [`dim_of`]): with `p` the weight of a key, `z` dropout's scale for it (`1/(1 − p_drop)` or
/// 0) and `D = Σ d_output · output` over the query's row, the score's gradient is
/// `p · (z · d_output · v − D)` and `d_q = Σ_keys that · k · scale`. Writes `D` for the keys'
/// kernel. The output is read in its type, `O`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_query_gradient_kernel<F: Float, M: Int, O: Float>(
    qkv: &Tensor<F>,
    output: &Tensor<O>,
    logsumexp: &Tensor<F>,
    d_output: &Tensor<F>,
    hidden: &Tensor<M>,
    d_qkv: &mut Tensor<F>,
    delta: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let share = Share::new();
    let half_dim = comptime!(half_width(head_dim));
    let row_width = comptime!(2 * half_width(head_dim));
    let first_query = CUBE_POS_X as usize * SHARED_ROWS;
    let query = first_query + share.row;
    let active = query < time;
    let scale = F::cast_from(scale);

    let mut q_half = Array::<F>::new(half_dim);
    let mut d_output_half = Array::<F>::new(half_dim);
    let mut gradient = Array::<F>::new(half_dim);
    let mut output_half = Array::<F>::new(half_dim);
    let one = F::new(1.0);
    read_half::<F, F>(qkv, at.start(qkv, query, at.q()), active, &share, scale, &mut q_half, head_dim);
    read_half::<F, F>(d_output, at.start(d_output, query, at.q()), active, &share, one, &mut d_output_half, head_dim);
    read_half::<F, O>(output, at.start(output, query, at.q()), active, &share, one, &mut output_half, head_dim);
    #[unroll]
    for l in 0..half_dim {
        gradient[l] = F::new(0.0);
    }
    let mut exchange = SharedMemory::<F>::new(EXCHANGE_SLOTS);
    let row_delta = share.sum(&mut exchange, 1, dot_halves::<F>(&d_output_half, &output_half, half_dim));
    let mut row_logsumexp = F::new(0.0);
    if active {
        delta[at.pair * time + query] = row_delta;
        row_logsumexp = logsumexp[at.pair * time + query];
    }
    let mut k_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut v_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut draw = Draw::new(mask, (at.pair * time + query) * time);
    let last_query = usize::min(first_query + SHARED_ROWS, time) - 1;

    for key_tile in 0..last_query / TILE + 1 {
        load_tile::<F>(qkv, &at, key_tile * TILE, at.k(), &mut k_tile, head_dim, row_width);
        load_tile::<F>(qkv, &at, key_tile * TILE, at.v(), &mut v_tile, head_dim, row_width);
        let seen = seen_pairs::<M>(hidden, &at, active, query, key_tile * TILE, 0, 1);
        sync_cube();
        for j in 0..TILE {
            let key = key_tile * TILE + j;
            let visible = is_seen(seen, j);
            let dots = share.row_dots(&mut exchange, visible, j, &q_half, &k_tile, &d_output_half, &v_tile, row_width);
            if visible {
                let weight = F::exp(dots.score - row_logsumexp);
                let d_score = weight * (draw.keep_scale::<F>(key, dropout) * dots.d_weight - row_delta);
                #[unroll]
                for l in 0..half_dim {
                    gradient[l] += d_score * k_tile[j * row_width + dim_of(l, share.half)];
                }
            }
        }
        sync_cube();
    }
    write_half::<F>(d_qkv, at.start(d_qkv, query, at.q()), active, &share, scale, &gradient, head_dim);
}

/// One cube [`SHARED_ROWS`] keys, two units a key (each with half of its row), over the query
/// tiles from its own on: `d_v = Σ p · z · d_output` and `d_k = Σ p · (z · d_output · v − D) ·
/// q · scale` over the queries that see the key.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_key_value_gradient_kernel<F: Float, M: Int>(
    qkv: &Tensor<F>,
    logsumexp: &Tensor<F>,
    delta: &Tensor<F>,
    d_output: &Tensor<F>,
    hidden: &Tensor<M>,
    d_qkv: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let share = Share::new();
    let half_dim = comptime!(half_width(head_dim));
    let row_width = comptime!(2 * half_width(head_dim));
    let first_key = CUBE_POS_X as usize * SHARED_ROWS;
    let key = first_key + share.row;
    let active = key < time;
    let scale = F::cast_from(scale);

    let mut k_half = Array::<F>::new(half_dim);
    let mut v_half = Array::<F>::new(half_dim);
    let mut d_k_half = Array::<F>::new(half_dim);
    let mut d_v_half = Array::<F>::new(half_dim);
    read_half::<F, F>(qkv, at.start(qkv, key, at.k()), active, &share, scale, &mut k_half, head_dim);
    read_half::<F, F>(qkv, at.start(qkv, key, at.v()), active, &share, F::new(1.0), &mut v_half, head_dim);
    #[unroll]
    for l in 0..half_dim {
        d_k_half[l] = F::new(0.0);
        d_v_half[l] = F::new(0.0);
    }
    let mut q_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut d_output_tile = SharedMemory::<F>::new(TILE * row_width);
    let mut exchange = SharedMemory::<F>::new(EXCHANGE_SLOTS);
    let mut keeps = SharedMemory::<F>::new(comptime!(if dropout { TILE * SHARED_ROWS } else { 1 }));

    for query_tile in first_key / TILE..time.div_ceil(TILE) {
        load_tile::<F>(qkv, &at, query_tile * TILE, at.q(), &mut q_tile, head_dim, row_width);
        load_tile::<F>(d_output, &at, query_tile * TILE, at.q(), &mut d_output_tile, head_dim, row_width);
        if dropout {
            // Dropout's scales of the tile's queries for the cube's keys, a query a unit: one
            // Philox call serves four neighbouring keys of a query, where a unit drawing for
            // its own key would make one for each.
            let query = query_tile * TILE + UNIT_POS_X as usize;
            let mut draw = Draw::new(mask, (at.pair * time + query) * time);
            for r in 0..SHARED_ROWS {
                let key = first_key + r;
                let mut keep_scale = F::new(0.0);
                if query < time && key < time {
                    keep_scale = draw.keep_scale::<F>(key, dropout);
                }
                keeps[UNIT_POS_X as usize * SHARED_ROWS + r] = keep_scale;
            }
        }
        let seen = seen_pairs::<M>(hidden, &at, active, query_tile * TILE, key, 1, 0);
        sync_cube();
        for i in 0..TILE {
            let query = query_tile * TILE + i;
            let visible = is_seen(seen, i);
            let dots = share.row_dots(&mut exchange, visible, i, &k_half, &q_tile, &v_half, &d_output_tile, row_width);
            if visible {
                let row = at.pair * time + query;
                let weight = F::exp(dots.score - logsumexp[row]);
                let mut keep_scale = F::new(1.0);
                if dropout {
                    keep_scale = keeps[i * SHARED_ROWS + share.row];
                }
                let d_score = weight * (keep_scale * dots.d_weight - delta[row]);
                #[unroll]
                for l in 0..half_dim {
                    let at_dim = i * row_width + dim_of(l, share.half);
                    d_v_half[l] += weight * keep_scale * d_output_tile[at_dim];
                    d_k_half[l] += d_score * q_tile[at_dim];
                }
            }
        }
        sync_cube();
    }
    write_half::<F>(d_qkv, at.start(d_qkv, key, at.k()), active, &share, scale, &d_k_half, head_dim);
    write_half::<F>(d_qkv, at.start(d_qkv, key, at.v()), active, &share, F::new(1.0), &d_v_half, head_dim);
}

/// Which of a tile's `TILE` (query, key) pairs see each other, as bits: bit `n` for query
/// `query + n · query_step` and key `key + n · key_step` (a unit's query against a tile of
/// keys, or its key against a tile of queries). A pair sees when the query is one of the
/// cube's row, the key not later, and `hidden` does not hide it; none for an inactive unit.
/// Read before the tile's loop, the mask's loads are issued together rather than one a pair,
/// each waited for before its pair's work.
#[cube]
fn seen_pairs<M: Int>(
    hidden: &Tensor<M>,
    at: &Layout,
    active: bool,
    query: usize,
    key: usize,
    query_step: usize,
    key_step: usize,
) -> u32 {
    let mut seen = 0u32;
    if active {
        let (query_stride, key_stride) = (hidden.stride(1), hidden.stride(2));
        let start = at.batch * hidden.stride(0);
        #[unroll]
        for n in 0..TILE {
            let (pair_query, pair_key) = (query + n * query_step, key + n * key_step);
            let at_pair = start + pair_query * query_stride + pair_key * key_stride;
            if pair_key <= pair_query && pair_query < at.time && hidden[at_pair] == M::from_int(0) {
                seen |= 1u32 << n as u32;
            }
        }
    }
    seen
}

/// Whether bit `n` of [`seen_pairs`]'s bits is set.
#[cube]
fn is_seen(seen: u32, n: usize) -> bool {
    (seen >> n as u32) & 1u32 == 1u32
}

/// Where a cube's head lies in the rows `[batch × time, sections × heads × head_dim]` the
/// kernels read and write: the q/k/v projection's (q, k, v side by side, each with its heads
/// side by side) and the output's.
#[derive(CubeType)]
struct Layout {
    /// The cube's (batch, head), and `batch × heads + head`.
    batch: usize,
    head: usize,
    pair: usize,
    time: usize,
    /// `heads × head_dim`: one section's columns.
    width: usize,
    #[cube(comptime)]
    head_dim: usize,
}

#[cube]
impl Layout {
    fn new(heads: u32, time: usize, #[comptime] head_dim: usize) -> Layout {
        let heads = heads as usize;
        let pair = CUBE_POS_Y as usize;
        Layout { batch: pair / heads, head: pair % heads, pair, time, width: heads * head_dim, head_dim }
    }

    /// The first column of the cube's head in q's section (and in the output), k's and v's.
    fn q(&self) -> usize {
        self.head * self.head_dim
    }

    fn k(&self) -> usize {
        self.width + self.head * self.head_dim
    }

    fn v(&self) -> usize {
        2 * self.width + self.head * self.head_dim
    }

    /// Where `position`'s row of the head starts in `rows`, from the head's first `column`.
    fn start<F: Float>(&self, rows: &Tensor<F>, position: usize, column: usize) -> usize {
        (self.batch * self.time + position) * rows.stride(0) + column * rows.stride(1)
    }
}

/// `head_dim` elements of `from` from index `start` on (along its columns), times `scale`, into
/// `into`; zeros for a unit past the last row.
#[cube]
fn read_row<F: Float>(
    from: &Tensor<F>,
    start: usize,
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
        #[unroll]
        for d in 0..head_dim {
            into[d] = from[start + d * from.stride(1)] * scale;
        }
    }
}

/// Positions `first … first + TILE` of the cube's head, from `column` on, of `from` into
/// `tile`, rows `row_width` apart, shared out among the cube's units; zeros past the last
/// position and in a row's columns past `head_dim`. A unit issues [`LOADS_AT_ONCE`] loads before
/// it waits for them, the strides read once: a loop of one load at a time waited for each (and
/// for the strides, which CubeCL keeps in memory) before the next.
#[cube]
fn load_tile<F: Float>(
    from: &Tensor<F>,
    at: &Layout,
    first: usize,
    column: usize,
    tile: &mut SharedMemory<F>,
    #[comptime] head_dim: usize,
    #[comptime] row_width: usize,
) {
    let (row_stride, column_stride) = (from.stride(0), from.stride(1));
    let start = at.start(from, first, column);
    for group in 0..comptime!(row_width.div_ceil(LOADS_AT_ONCE)) {
        #[unroll]
        for n in 0..LOADS_AT_ONCE {
            let load = group * LOADS_AT_ONCE + n;
            if load < row_width {
                let i = load * TILE + UNIT_POS_X as usize;
                let (row, dim) = (i / row_width, i % row_width);
                let mut value = F::new(0.0);
                if first + row < at.time && dim < head_dim {
                    value = from[start + row * row_stride + dim * column_stride];
                }
                tile[i] = value;
            }
        }
    }
}

/// Loads of a tile a unit issues before waiting for them: as many registers as the kernels
/// spare (all of a 64-wide row's at once took ptxas to 255 registers and spills).
const LOADS_AT_ONCE: usize = 16;

/// `row · tile[j]`, with `tile` rows of `head_dim`.
#[cube]
fn dot_shared<F: Float>(row: &Array<F>, tile: &SharedMemory<F>, j: usize, #[comptime] head_dim: usize) -> F {
    let mut partial = new_chains::<F>();
    #[unroll]
    for d in 0..head_dim {
        partial[d % CHAINS] += row[d] * tile[j * head_dim + d];
    }
    chains_total::<F>(&partial)
}

/// Head dimensions a unit of the backward kernels holds: half of `head_dim` rounded up to runs
/// of 4 (see [`dim_of`]).
fn half_width(head_dim: usize) -> usize {
    head_dim.div_ceil(8) * 4
}

/// The head dimension that is element `local` of a half row: the two halves take turns by
/// runs of 4, so that when both units of a row read the same row of a tile in shared memory
/// they read different banks. Past `head_dim` (when it is not a multiple of 8) the dimensions
/// are padding: zeros in the tiles and in the units' rows.
#[cube]
fn dim_of(local: usize, half: usize) -> usize {
    (local / 4) * 8 + half * 4 + local % 4
}

/// How the backward kernels' units share a row: unit `2 · row + half` holds the dimensions
/// `dim_of(·, half)` of the cube's row `row`, and `partner` holds the others.
#[derive(CubeType)]
struct Share {
    row: usize,
    half: usize,
    unit: usize,
    partner: usize,
}

/// A row's two dot products in the backward kernels: the score `q · k` (scaled) and the
/// weight's gradient before dropout, `d_output · v`.
#[derive(CubeType)]
struct RowDots<F: Float> {
    score: F,
    d_weight: F,
}

#[cube]
impl Share {
    fn new() -> Share {
        let unit = UNIT_POS_X as usize;
        let half = unit % 2;
        Share { row: unit / 2, half, unit, partner: unit + 1 - 2 * half }
    }

    /// The row's two dot products with row `n` of two tiles (`tile_*` rows `row_width` apart):
    /// the score `q · k` and `d_output · v`, from `on_score` and `on_d_weight` (the unit's
    /// halves: q and d_output against tiles of k and v, or k and v against tiles of q and
    /// d_output), this unit's halves added to the partner's through `exchange`; zeros where the
    /// pair is not `visible`. Every unit of the cube must call it, `n` counting up: it waits for
    /// them all, and calls alternate between two sets of slots by `n`'s parity, so a set is
    /// written again only after the wait of the call in between, which every unit reaches after
    /// reading it (one wait a call).
    #[allow(clippy::too_many_arguments)]
    fn row_dots<F: Float>(
        &self,
        exchange: &mut SharedMemory<F>,
        visible: bool,
        n: usize,
        on_score: &Array<F>,
        score_tile: &SharedMemory<F>,
        on_d_weight: &Array<F>,
        d_weight_tile: &SharedMemory<F>,
        #[comptime] row_width: usize,
    ) -> RowDots<F> {
        let mut score = F::new(0.0);
        let mut d_weight = F::new(0.0);
        if visible {
            score = dot_tile::<F>(on_score, score_tile, n, self, row_width);
            d_weight = dot_tile::<F>(on_d_weight, d_weight_tile, n, self, row_width);
        }
        let set = (n % 2) * 2 * TILE;
        exchange[set + self.unit] = score;
        exchange[set + TILE + self.unit] = d_weight;
        sync_cube();
        RowDots::<F> {
            score: score + exchange[set + self.partner],
            d_weight: d_weight + exchange[set + TILE + self.partner],
        }
    }

    /// `mine` plus the partner's, through `exchange`'s set `parity` (as [`Share::row_dots`]).
    fn sum<F: Float>(&self, exchange: &mut SharedMemory<F>, parity: usize, mine: F) -> F {
        let set = parity * 2 * TILE;
        exchange[set + self.unit] = mine;
        sync_cube();
        mine + exchange[set + self.partner]
    }
}

/// This unit's half of `head_dim` elements of `from` (of type `T`) from index `start` on (along
/// its columns), times `scale`, into `into`; zeros for a unit past the last row and for padding.
#[cube]
fn read_half<F: Float, T: Float>(
    from: &Tensor<T>,
    start: usize,
    active: bool,
    share: &Share,
    scale: F,
    into: &mut Array<F>,
    #[comptime] head_dim: usize,
) {
    let half_dim = comptime!(half_width(head_dim));
    #[unroll]
    for l in 0..half_dim {
        let dim = dim_of(l, share.half);
        let mut value = F::new(0.0);
        if active && dim < head_dim {
            value = F::cast_from(from[start + dim * from.stride(1)]) * scale;
        }
        into[l] = value;
    }
}

/// This unit's half of a row, times `scale`, into `to` from index `start` on; nothing for a
/// unit past the last row.
#[cube]
fn write_half<F: Float>(
    to: &mut Tensor<F>,
    start: usize,
    active: bool,
    share: &Share,
    scale: F,
    values: &Array<F>,
    #[comptime] head_dim: usize,
) {
    let half_dim = comptime!(half_width(head_dim));
    if active {
        #[unroll]
        for l in 0..half_dim {
            let dim = dim_of(l, share.half);
            if dim < head_dim {
                to[start + dim * to.stride(1)] = values[l] * scale;
            }
        }
    }
}

/// `half · tile[j]` over this unit's half of the dimensions, with `tile` rows `row_width` apart.
#[cube]
fn dot_tile<F: Float>(
    half: &Array<F>,
    tile: &SharedMemory<F>,
    j: usize,
    share: &Share,
    #[comptime] row_width: usize,
) -> F {
    let mut partial = new_chains::<F>();
    #[unroll]
    for l in 0..row_width / 2 {
        partial[l % CHAINS] += half[l] * tile[j * row_width + dim_of(l, share.half)];
    }
    chains_total::<F>(&partial)
}

/// `a · b` over two halves of one unit.
#[cube]
fn dot_halves<F: Float>(a: &Array<F>, b: &Array<F>, #[comptime] half_dim: usize) -> F {
    let mut sum = F::new(0.0);
    #[unroll]
    for l in 0..half_dim {
        sum += a[l] * b[l];
    }
    sum
}

/// `[batch, time, head_dim]` of attention over `qkv` with `heads` heads and mask `hidden`,
/// checked against what the kernels take.
fn dims<R: CubeRuntime>(qkv: &CubeTensor<R>, heads: usize, hidden: &CubeTensor<R>) -> [usize; 3] {
    let [batch, time, _] = hidden.meta.shape().dims::<3>();
    let head_dim = qkv.meta.shape().dims::<2>()[1] / (3 * heads);
    assert!(head_dim <= MAX_FLASH_HEAD_DIM, "flash attention takes heads at most {MAX_FLASH_HEAD_DIM} wide");
    assert!(
        (batch * heads * time * time) < u32::MAX as usize,
        "flash attention's dropout mask needs fewer than 2³² elements"
    );
    [batch, time, head_dim]
}

/// A cube every `rows_a_cube` positions of each (batch, head).
fn cubes(batch: usize, heads: usize, time: usize, rows_a_cube: usize) -> CubeCount {
    CubeCount::Static(time.div_ceil(rows_a_cube) as u32, (batch * heads) as u32, 1)
}

/// Runs `$launch` with `$M` the element type of the boolean mask `$hidden` (burn stores
/// booleans as bytes or as 32-bit words, by backend).
macro_rules! with_mask_element {
    ($hidden:expr, $M:ident => $launch:expr) => {
        match $hidden.dtype {
            DType::Bool(BoolStore::U8) => {
                type $M = u8;
                $launch
            }
            DType::Bool(BoolStore::U32) => {
                type $M = u32;
                $launch
            }
            other => panic!("flash attention takes masks stored as {FLASH_MASK_DTYPES:?}, not {other:?}"),
        }
    };
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FlashAttention for CubeBackend<R, F, I, BT> {
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        output: DType,
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
        with_mask_element!(hidden, M => launch_for_element!(
            flash_attention_forward_kernel::<F, M, R>,
            output.dtype,
            own,
            "flash attention: the output"
        )(
            &client,
            cubes(batch, heads, time, TILE),
            CubeDim::new_1d(TILE as u32),
            qkv.into_tensor_arg(),
            hidden.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            logsumexp.clone().into_tensor_arg(),
            heads as u32,
            1.0 / (head_dim as f32).sqrt(),
            mask_args(dropout),
            head_dim,
            dropout.is_some(),
        ));
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
    ) -> FloatTensor<Self> {
        let [batch, time, head_dim] = dims(&qkv, heads, &hidden);
        let (client, device) = (qkv.client.clone(), qkv.device.clone());
        let d_qkv = empty_device_contiguous_dtype(client.clone(), device.clone(), qkv.shape(), qkv.dtype);
        let delta = empty_device_contiguous_dtype(client.clone(), device, Shape::new([batch, heads, time]), qkv.dtype);
        let scale = 1.0 / (head_dim as f32).sqrt();
        with_mask_element!(hidden, M => {
            let output_type = output.dtype;
            launch_for_element!(
                flash_attention_query_gradient_kernel::<F, M, R>,
                output_type,
                qkv.dtype,
                "flash attention's backward pass: the output"
            )(
                &client,
                cubes(batch, heads, time, SHARED_ROWS),
                CubeDim::new_1d(TILE as u32),
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
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Clone, Debug)]
        struct ForwardOp<B> {
            desc: CustomOpIr,
            heads: usize,
            dropout: Option<DropoutDraw>,
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
        let op = ForwardOp::<B> { desc: desc.clone(), heads, dropout, backend: PhantomData };
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
    ) -> FloatTensor<Self> {
        #[derive(Clone, Debug)]
        struct BackwardOp<B> {
            desc: CustomOpIr,
            heads: usize,
            dropout: Option<DropoutDraw>,
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
                );
                handles.register_float_tensor::<B>(&d_qkv.id, gradient);
            }
        }

        let client = qkv.client.clone();
        let streams = OperationStreams::with_inputs([&qkv, &output, &logsumexp, &d_output, &hidden]);
        let d_qkv = TensorIr::uninit(client.create_empty_handle(), qkv.shape.clone(), qkv.dtype);
        let inputs = [qkv.into_ir(), output.into_ir(), logsumexp.into_ir(), d_output.into_ir(), hidden.into_ir()];
        let desc = CustomOpIr::new("flash_attention_backward", &inputs, &[d_qkv]);
        let op = BackwardOp::<B> { desc: desc.clone(), heads, dropout, backend: PhantomData };
        let [d_qkv] = client.register(streams, OperationIr::Custom(desc), op).outputs();
        d_qkv
    }
}
