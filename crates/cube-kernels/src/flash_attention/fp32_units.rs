//! Flash attention's kernels with their products on the FP32 units, scalar multiply-adds, on
//! every device.
//!
//! A cube takes a tile of queries (forward, and the queries' gradients) or of keys (the keys'
//! and values' gradients), with the rows in registers, and walks the other side's tiles through
//! shared memory: each row of k and v is read from memory once a query tile, not once a query.
//! Four units hold the same few rows, each a quarter of every row's head dimensions: a value
//! read from a tile serves each of the unit's rows (four forward, two backward), and the four
//! add their parts of each dot product with two shuffles.

use super::{
    heads::{dot_rows, part_dim, part_width, read_parts, vector_strides, write_parts, Group, Layout, PARTS},
    is_set, longest_first, LOWEST_SCORE, UNSEEN_SCORE,
};
use crate::{
    chains::zeros,
    draw::{Draw, MaskArgs},
    fast_exp::fast_exp,
};
use cubecl::prelude::*;

/// Rows of a tile of the other side (keys forward, queries or keys backward), and units of a
/// cube.
pub(super) const TILE: usize = 32;

/// Groups of [`PARTS`] units a cube.
const GROUPS: usize = TILE / PARTS;

/// Queries a group holds in the forward kernel: [`TILE`] a cube.
const FORWARD_ROWS: usize = TILE / GROUPS;

/// Rows a group holds in the backward kernels, where a row is three or four arrays of registers
/// (q, `d_output` and `d_q`; k, v, `d_k` and `d_v`): four rows would pass the 255 registers a
/// unit may have.
const BACKWARD_ROWS: usize = 2;

/// Rows (queries or keys) a cube of the backward kernels takes.
pub(super) const SHARED_ROWS: usize = GROUPS * BACKWARD_ROWS;

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
pub(super) fn flash_attention_forward_kernel<F: Float, M: Int, O: Float, N: Size>(
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
pub(super) fn flash_attention_query_gradient_kernel<F: Float, M: Int, O: Float, N: Size>(
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
pub(super) fn flash_attention_key_value_gradient_kernel<F: Float, M: Int, N: Size>(
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
