//! Flash attention with its products on tensor cores: the FP32 kernels' algorithm
//! ([`fp32_units`](super::fp32_units): the online softmax forward, the weights again from each
//! query's log-sum-exp backward, a kernel for the queries' gradient and one for the keys' and
//! values'), tile by tile, but each product (`q · kᵀ` and `weights · v` forward; `q · kᵀ`,
//! `d_output · vᵀ` and `d_scores · k` for the queries; their transposes and `weightsᵀ ·
//! d_output`, `d_scoresᵀ · q` for the keys and values) taken by the cube's planes as
//! cooperative-matrix products (CUDA's `wmma`, Vulkan's cooperative matrices) from tiles staged
//! in shared memory in the operands' type: bf16 under `--precision bf16`, TF32 in f32 (as
//! burn's f32 products on CUDA), f16 where a device has no TF32 (wgpu, for tests).
//!
//! A fragment's elements are the plane's, in a layout each device keeps to itself, so what is
//! done element by element goes through shared memory: a product's fragments are stored there,
//! the units take each row ([`PARTS`] units a row, as the FP32 kernels' groups) for the
//! softmax or its gradient and write the weights or the scores' gradients back in the operands'
//! type for the next product, whose result the units add to the rows they hold: the output
//! (rescaled first when a row's maximum grew: a fragment cannot be scaled row by row), `d_q`,
//! `d_k`, `d_v`.

use super::{
    cubes,
    heads::{
        dot_rows, part_dim, part_width, read_parts, vector_size, vector_strides, write_parts, Group, Layout, PARTS,
    },
    is_set, longest_first, LOWEST_SCORE, UNSEEN_SCORE,
};
use crate::{
    chains::zeros,
    draw::{Draw, MaskArgs},
    fast_exp::fast_exp,
};
use burn::tensor::DType;
use burn_cubecl::{tensor::CubeTensor, CubeRuntime};
use cubecl::{
    features::MmaConfig,
    ir::{ElemType, FloatKind, StorageType},
    prelude::*,
};

/// Rows of the tiles a cube walks: keys forward and for the queries' gradient, queries for the
/// keys' and values' gradient.
const TILE: usize = 32;

/// Rows a cube holds (queries forward and for their gradient, keys for theirs), by what the
/// device's shared memory takes (see [`tensor_cores`]): the more, the fewer times each tile is
/// staged for the same pairs (a tile's staging, a checked load, a conversion and a store an
/// element, is most of what a pair costs the units besides its own softmax step).
const CUBE_ROWS: [usize; 2] = [64, 32];

/// Alignment of the shared tiles, in bytes: a fragment's load or store wants 32 (CUDA's
/// `wmma` takes 256-bit aligned addresses), and every fragment of a tile starts a multiple of
/// 32 bytes from the tile's start.
const TILE_ALIGNMENT: usize = 128;

/// A tensor-core product's shape, `m × k` times `k × n`, and its operands' type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Fragment {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub operand: Operand,
}

/// The operands' type of the tensor-core products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Operand {
    BF16,
    F16,
    TF32,
}

impl Operand {
    fn storage(self) -> StorageType {
        let kind = match self {
            Operand::BF16 => FloatKind::BF16,
            Operand::F16 => FloatKind::F16,
            Operand::TF32 => FloatKind::TF32,
        };
        ElemType::Float(kind).into()
    }
}

/// How the kernels run on tensor cores: the products' shape and operands, and the rows a cube
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TensorCores {
    pub fragment: Fragment,
    pub rows: usize,
}

impl TensorCores {
    /// The cubes of a launch over `batch × heads` (batch, head) pairs of `time` positions.
    pub(crate) fn cubes(&self, batch: usize, heads: usize, time: usize) -> CubeCount {
        cubes(batch, heads, time, self.rows)
    }

    /// A cube's units: [`PARTS`] a row it holds, as the FP32 kernels' groups (a quarter of a
    /// row's keys or queries each in the units' passes, a quarter of its head dimensions in
    /// the rows they add up); planes of 32 on CUDA, each taking its share of a product's
    /// fragments.
    pub(crate) fn cube_dim(&self) -> CubeDim {
        CubeDim::new_1d((self.rows * PARTS) as u32)
    }
}

/// How the kernels run on tensor cores on `client`'s device for heads `head_dim` wide and an
/// output of type `output`, if the device has a product for them and the shared memory the
/// kernels need ([`shared_bytes`]; the most rows a cube of [`CUBE_ROWS`] that fit): bf16 or
/// f16 operands for a 16-bit output (the type the projection after attention reads), TF32 for
/// an f32 one, or f16 where the device has no TF32. Of the shapes the device lists, the largest
/// whose `m` and `n` divide [`TILE`] and whose `k` divides 16 (the tiles' head dimensions are
/// padded to a multiple of 16); accumulators in f32.
pub(crate) fn tensor_cores<R: CubeRuntime>(
    client: &ComputeClient<R>,
    output: DType,
    head_dim: usize,
) -> Option<TensorCores> {
    let candidates: &[Operand] = match output {
        DType::BF16 => &[Operand::BF16],
        DType::F16 => &[Operand::F16],
        DType::F32 => &[Operand::TF32, Operand::F16],
        _ => &[],
    };
    let accumulator: StorageType = ElemType::Float(FloatKind::F32).into();
    let configs = &client.features().matmul.cmma;
    let shared = client.properties().hardware.max_shared_memory_size;
    candidates.iter().find_map(|&operand| {
        let rows = CUBE_ROWS.into_iter().find(|&rows| shared_bytes(head_dim, operand, rows) <= shared)?;
        let fits = |c: &&MmaConfig| {
            c.a_type == operand.storage()
                && c.b_type == operand.storage()
                && c.cd_type == accumulator
                && TILE.is_multiple_of(c.m as usize)
                && TILE.is_multiple_of(c.n as usize)
                && 16usize.is_multiple_of(c.k as usize)
        };
        let best = configs.iter().filter(fits).max_by_key(|c| (c.m * c.n * c.k, c.m.min(c.n)))?;
        let fragment = Fragment { m: best.m as usize, n: best.n as usize, k: best.k as usize, operand };
        Some(TensorCores { fragment, rows })
    })
}

/// Shared memory the keys' and values' gradient kernel takes with `rows` rows a cube, the most
/// of the three: its two staged blocks and two tiles, its two blocks of weights in the operands'
/// type, the f32 scratch, two rows of f32, and each buffer's alignment.
fn shared_bytes(head_dim: usize, operand: Operand, rows: usize) -> usize {
    let operand_bytes = match operand {
        Operand::BF16 | Operand::F16 => 2,
        Operand::TF32 => 4,
    };
    let dims = staged_dims(head_dim);
    let staged = (2 * rows + 2 * TILE) * dims * operand_bytes;
    let buffers = staged + 4 * scratch_len(rows, dims, 2) + 2 * rows * TILE * operand_bytes;
    buffers + 2 * TILE * 4 + 9 * TILE_ALIGNMENT
}

/// Head dimensions a staged row holds: `head_dim` padded with zeros to a multiple of 16, which
/// every fragment's `k` and `n` divide.
pub(crate) fn staged_dims(head_dim: usize) -> usize {
    head_dim.next_multiple_of(16)
}

/// One cube `rows` queries of one (batch, head), over the key tiles up to its last: the
/// scores' tile `q · kᵀ` on tensor cores, the online softmax's step by the units
/// ([`PARTS`] a query), then `weights · v` on tensor cores, added to the units' rows of the
/// output after they rescale them. Writes the output in `O` and each query's log-sum-exp.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn flash_attention_forward_tensor_cores_kernel<F: Float, M: Int, O: Float, E: Float, N: Size, K: Size>(
    qkv: &Tensor<Vector<F, N>>,
    hidden: &Tensor<Vector<M, K>>,
    output: &mut Tensor<O>,
    logsumexp: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
    #[comptime] fragment: Fragment,
    #[comptime] rows: usize,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let dims = comptime!(staged_dims(head_dim));
    let width = comptime!(part_width(head_dim));
    let group = Group::new();
    let (row, first_part_key) = (group.group, group.part * KEYS_A_PART);
    let first_query = longest_first() * rows;
    let query = first_query + row;

    let mut q_block = SharedMemory::<E>::new_aligned(rows * dims, TILE_ALIGNMENT);
    let mut k_tile = SharedMemory::<E>::new_aligned(TILE * dims, TILE_ALIGNMENT);
    let mut v_tile = SharedMemory::<E>::new_aligned(TILE * dims, TILE_ALIGNMENT);
    // The tile's scores, then its weighted values.
    let mut scratch = SharedMemory::<F>::new_aligned(comptime!(scratch_len(rows, dims, 1)), TILE_ALIGNMENT);
    let mut weights = SharedMemory::<E>::new_aligned(rows * TILE, TILE_ALIGNMENT);
    stage::<F, E, N>(qkv, &at, first_query, at.q(), F::cast_from(scale), &mut q_block, head_dim, rows, rows);

    let mut max = F::new(LOWEST_SCORE);
    let mut sum = F::new(0.0);
    let mut out = zeros::<F>(width);
    let mut draw = Draw::new(mask, (at.pair * time + query) * time);

    for key_tile in 0..last_tile(first_query, rows, time) + 1 {
        let first_key = key_tile * TILE;
        stage::<F, E, N>(qkv, &at, first_key, at.k(), F::new(1.0), &mut k_tile, head_dim, TILE, rows);
        stage::<F, E, N>(qkv, &at, first_key, at.v(), F::new(1.0), &mut v_tile, head_dim, TILE, rows);
        // Read here, its loads in flight during the products.
        let seen = seen_keys::<M, K>(hidden, &at, query, first_key + first_part_key);
        sync_cube();
        plane_products::<E, F>(&q_block, &k_tile, true, &mut scratch, 0usize, rows, TILE, dims, fragment);
        sync_cube();

        let mut row_scores = Array::<F>::new(KEYS_A_PART);
        let mut step_max = max;
        #[unroll]
        for c in 0..KEYS_A_PART {
            let n = first_part_key + c;
            let score = select(is_set(seen, c), scratch[row * TILE + n], F::new(UNSEEN_SCORE));
            row_scores[c] = score;
            step_max = F::max(step_max, score);
        }
        step_max = group.max::<F>(step_max);
        // 1 where the maximum stays; an unseen key's weight is 0, below it by 10³⁰ at least.
        let rescale = fast_exp::<F>(max - step_max);
        max = step_max;
        sum *= rescale;
        #[unroll]
        for l in 0..width {
            out[l] *= rescale;
        }
        #[unroll]
        for c in 0..KEYS_A_PART {
            let n = first_part_key + c;
            let weight = fast_exp::<F>(row_scores[c] - max);
            sum += weight;
            let kept = weight * draw.keep_scale::<F>(first_key + n, dropout);
            weights[row * TILE + n] = E::cast_from(kept);
        }
        sync_cube();
        plane_products::<E, F>(&weights, &v_tile, false, &mut scratch, 0usize, rows, dims, TILE, fragment);
        sync_cube();
        add_row_part::<F>(&mut out, &scratch, row, &group, dims, width);
    }

    let total = group.sum::<F>(sum);
    if query < time {
        let start = at.start(output, query, at.q());
        #[unroll]
        for l in 0..width {
            let dim = part_dim(l, group.part);
            if dim < head_dim {
                output[start + dim * output.stride(1)] = O::cast_from(out[l] / total);
            }
        }
        if group.part == 0 {
            logsumexp[at.pair * time + query] = max + F::ln(total);
        }
    }
}

/// One cube `rows` queries, [`PARTS`] units a query as forward: for each key tile up to its
/// last, the scores `q · kᵀ` and the weights' gradients `d_output · vᵀ` on tensor cores, the
/// scores' gradients `p · (z · d_weight − D)` by the units (`p` the weight again from the
/// query's log-sum-exp, `z` dropout's scale, `D = Σ d_output · output` over the query's row),
/// then those times k on tensor cores, added to the units' rows of `d_q`. Writes `D` for the
/// keys' kernel. The output is read in its type, `O`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn flash_attention_query_gradient_tensor_cores_kernel<
    F: Float,
    M: Int,
    O: Float,
    E: Float,
    N: Size,
    K: Size,
>(
    qkv: &Tensor<Vector<F, N>>,
    output: &Tensor<Vector<O, N>>,
    logsumexp: &Tensor<F>,
    d_output: &Tensor<Vector<F, N>>,
    hidden: &Tensor<Vector<M, K>>,
    d_qkv: &mut Tensor<Vector<F, N>>,
    delta: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
    #[comptime] fragment: Fragment,
    #[comptime] rows: usize,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let dims = comptime!(staged_dims(head_dim));
    let width = comptime!(part_width(head_dim));
    let group = Group::new();
    let (row, first_part_key) = (group.group, group.part * KEYS_A_PART);
    let first_query = longest_first() * rows;
    let query = first_query + row;
    let one = F::new(1.0);

    let mut q_block = SharedMemory::<E>::new_aligned(rows * dims, TILE_ALIGNMENT);
    let mut d_output_block = SharedMemory::<E>::new_aligned(rows * dims, TILE_ALIGNMENT);
    let mut k_tile = SharedMemory::<E>::new_aligned(TILE * dims, TILE_ALIGNMENT);
    let mut v_tile = SharedMemory::<E>::new_aligned(TILE * dims, TILE_ALIGNMENT);
    // The tile's scores and weights' gradients one after the other, then its part of `d_q`.
    let mut scratch = SharedMemory::<F>::new_aligned(comptime!(scratch_len(rows, dims, 2)), TILE_ALIGNMENT);
    let mut d_scores = SharedMemory::<E>::new_aligned(rows * TILE, TILE_ALIGNMENT);
    stage::<F, E, N>(qkv, &at, first_query, at.q(), F::cast_from(scale), &mut q_block, head_dim, rows, rows);
    stage::<F, E, N>(d_output, &at, first_query, at.q(), one, &mut d_output_block, head_dim, rows, rows);

    let mut d_out = Array::<F>::new(width);
    let mut out = Array::<F>::new(width);
    read_parts::<F, F, N>(d_output, &at, query, at.q(), &group, one, &mut d_out, 1usize, head_dim);
    read_parts::<F, O, N>(output, &at, query, at.q(), &group, one, &mut out, 1usize, head_dim);
    let row_delta = group.sum::<F>(dot_rows::<F>(&d_out, &out, 0usize, width));
    let mut row_logsumexp = F::new(0.0);
    if query < time {
        row_logsumexp = logsumexp[at.pair * time + query];
        if group.part == 0 {
            delta[at.pair * time + query] = row_delta;
        }
    }
    let mut gradient = zeros::<F>(width);
    let mut draw = Draw::new(mask, (at.pair * time + query) * time);
    let d_weights_start = comptime!(rows * TILE);

    for key_tile in 0..last_tile(first_query, rows, time) + 1 {
        let first_key = key_tile * TILE;
        stage::<F, E, N>(qkv, &at, first_key, at.k(), one, &mut k_tile, head_dim, TILE, rows);
        stage::<F, E, N>(qkv, &at, first_key, at.v(), one, &mut v_tile, head_dim, TILE, rows);
        let seen = seen_keys::<M, K>(hidden, &at, query, first_key + first_part_key);
        sync_cube();
        plane_products::<E, F>(&q_block, &k_tile, true, &mut scratch, 0usize, rows, TILE, dims, fragment);
        plane_products::<E, F>(
            &d_output_block,
            &v_tile,
            true,
            &mut scratch,
            d_weights_start,
            rows,
            TILE,
            dims,
            fragment,
        );
        sync_cube();
        #[unroll]
        for c in 0..KEYS_A_PART {
            let n = first_part_key + c;
            let weight =
                fast_exp::<F>(select(is_set(seen, c), scratch[row * TILE + n] - row_logsumexp, F::new(LOWEST_SCORE)));
            let keep = draw.keep_scale::<F>(first_key + n, dropout);
            let d_weight = scratch[d_weights_start + row * TILE + n];
            d_scores[row * TILE + n] = E::cast_from(weight * (keep * d_weight - row_delta));
        }
        sync_cube();
        plane_products::<E, F>(&d_scores, &k_tile, false, &mut scratch, 0usize, rows, dims, TILE, fragment);
        sync_cube();
        add_row_part::<F>(&mut gradient, &scratch, row, &group, dims, width);
    }
    write_parts::<F, N>(d_qkv, &at, query, at.q(), &group, F::cast_from(scale), &gradient, 1usize, head_dim);
}

/// One cube `rows` keys, over the query tiles from its first on: for each, the scores' and the
/// weights' gradients transposed, `k · qᵀ` and `v · d_outputᵀ`, on tensor cores; the weights
/// `p · z` and the scores' gradients by the units, a unit a query of the tile and
/// [`KEYS_A_PART`] keys (so that a unit's dropout draws run along its query's row of the mask,
/// as they are drawn); then `d_v += (p · z)ᵀ · d_output` and `d_k += d_scoresᵀ · q · scale`
/// on tensor cores, added to the units' rows ([`PARTS`] units a key).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn flash_attention_key_value_gradient_tensor_cores_kernel<F: Float, M: Int, E: Float, N: Size, K: Size>(
    qkv: &Tensor<Vector<F, N>>,
    logsumexp: &Tensor<F>,
    delta: &Tensor<F>,
    d_output: &Tensor<Vector<F, N>>,
    hidden: &Tensor<Vector<M, K>>,
    d_qkv: &mut Tensor<Vector<F, N>>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
    #[comptime] fragment: Fragment,
    #[comptime] rows: usize,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let dims = comptime!(staged_dims(head_dim));
    let width = comptime!(part_width(head_dim));
    let group = Group::new();
    let first_key = CUBE_POS_Y as usize * rows;
    let one = F::new(1.0);
    let unit = UNIT_POS_X as usize;
    // In the units' pass over a tile: the query of the tile, and the first of the keys.
    let (column, first_share_key) = (unit % TILE, (unit / TILE) * KEYS_A_PART);

    let mut k_block = SharedMemory::<E>::new_aligned(rows * dims, TILE_ALIGNMENT);
    let mut v_block = SharedMemory::<E>::new_aligned(rows * dims, TILE_ALIGNMENT);
    let mut q_tile = SharedMemory::<E>::new_aligned(TILE * dims, TILE_ALIGNMENT);
    let mut d_output_tile = SharedMemory::<E>::new_aligned(TILE * dims, TILE_ALIGNMENT);
    // The tile's scores and weights' gradients (transposed) one after the other, then its part
    // of `d_v`, then of `d_k` (one after the other: both at once would pass the 32 KiB of
    // shared memory Mesa's driver gives a cube, with 64-wide heads).
    let mut scratch = SharedMemory::<F>::new_aligned(comptime!(scratch_len(rows, dims, 2)), TILE_ALIGNMENT);
    let mut weights = SharedMemory::<E>::new_aligned(rows * TILE, TILE_ALIGNMENT);
    let mut d_scores = SharedMemory::<E>::new_aligned(rows * TILE, TILE_ALIGNMENT);
    let mut tile_logsumexp = SharedMemory::<F>::new(TILE);
    let mut tile_delta = SharedMemory::<F>::new(TILE);
    stage::<F, E, N>(qkv, &at, first_key, at.k(), F::cast_from(scale), &mut k_block, head_dim, rows, rows);
    stage::<F, E, N>(qkv, &at, first_key, at.v(), one, &mut v_block, head_dim, rows, rows);
    let mut d_k = zeros::<F>(width);
    let mut d_v = zeros::<F>(width);
    let d_weights_start = comptime!(rows * TILE);

    for query_tile in first_key / TILE..time.div_ceil(TILE) {
        let first_query = query_tile * TILE;
        stage::<F, E, N>(qkv, &at, first_query, at.q(), one, &mut q_tile, head_dim, TILE, rows);
        stage::<F, E, N>(d_output, &at, first_query, at.q(), one, &mut d_output_tile, head_dim, TILE, rows);
        if unit < TILE {
            let query = first_query + unit;
            let mut own_logsumexp = F::new(0.0);
            let mut own_delta = F::new(0.0);
            if query < time {
                own_logsumexp = logsumexp[at.pair * time + query];
                own_delta = delta[at.pair * time + query];
            }
            tile_logsumexp[unit] = own_logsumexp;
            tile_delta[unit] = own_delta;
        }
        let query = first_query + column;
        let seen = seen_keys::<M, K>(hidden, &at, query, first_key + first_share_key);
        sync_cube();
        plane_products::<E, F>(&k_block, &q_tile, true, &mut scratch, 0usize, rows, TILE, dims, fragment);
        plane_products::<E, F>(
            &v_block,
            &d_output_tile,
            true,
            &mut scratch,
            d_weights_start,
            rows,
            TILE,
            dims,
            fragment,
        );
        sync_cube();
        let mut draw = Draw::new(mask, (at.pair * time + query) * time);
        let (row_logsumexp, row_delta) = (tile_logsumexp[column], tile_delta[column]);
        #[unroll]
        for c in 0..KEYS_A_PART {
            let n = first_share_key + c;
            let weight = fast_exp::<F>(select(
                is_set(seen, c),
                scratch[n * TILE + column] - row_logsumexp,
                F::new(LOWEST_SCORE),
            ));
            let keep = draw.keep_scale::<F>(first_key + n, dropout);
            let d_weight = scratch[d_weights_start + n * TILE + column];
            weights[n * TILE + column] = E::cast_from(weight * keep);
            d_scores[n * TILE + column] = E::cast_from(weight * (keep * d_weight - row_delta));
        }
        sync_cube();
        plane_products::<E, F>(&weights, &d_output_tile, false, &mut scratch, 0usize, rows, dims, TILE, fragment);
        sync_cube();
        add_row_part::<F>(&mut d_v, &scratch, group.group, &group, dims, width);
        sync_cube();
        plane_products::<E, F>(&d_scores, &q_tile, false, &mut scratch, 0usize, rows, dims, TILE, fragment);
        sync_cube();
        add_row_part::<F>(&mut d_k, &scratch, group.group, &group, dims, width);
    }
    let key = first_key + group.group;
    write_parts::<F, N>(d_qkv, &at, key, at.k(), &group, F::cast_from(scale), &d_k, 1usize, head_dim);
    write_parts::<F, N>(d_qkv, &at, key, at.v(), &group, one, &d_v, 1usize, head_dim);
}

/// Keys (queries) a unit takes of a row (column) of a tile in the units' passes: [`TILE`] among
/// [`PARTS`], and in the keys' kernel a cube's `rows` among its `rows · PARTS / TILE` groups of
/// [`TILE`] units.
const KEYS_A_PART: usize = TILE / PARTS;

/// Elements of a kernel's f32 scratch: `tiles` products of a cube's `rows` by a [`TILE`] one
/// after the other, or the `rows × dims` product after them, whichever is longer.
fn scratch_len(rows: usize, dims: usize, tiles: usize) -> usize {
    usize::max(rows * dims, tiles * rows * TILE)
}

/// The last tile of [`TILE`] keys that the cube's `rows` queries from `first_query` on see.
#[cube]
fn last_tile(first_query: usize, #[comptime] rows: usize, time: usize) -> usize {
    (usize::min(first_query + rows, time) - 1) / TILE
}

/// Which of the [`KEYS_A_PART`] keys from `first` on `query` sees, bit `c` for key `first + c`
/// ([`is_set`]): those not later than the query, the query in the row, that `hidden` does not
/// hide. `hidden` is read in its vectors (`first` a multiple of [`KEYS_A_PART`], their size a
/// divisor of it: [`mask_vector_size`]), a load for several keys.
#[cube]
fn seen_keys<M: Int, K: Size>(hidden: &Tensor<Vector<M, K>>, at: &Layout, query: usize, first: usize) -> u32 {
    let size = hidden.vector_size();
    // In vectors, as `vector_strides` counts a tile's strides: the keys' stride is 1 where
    // `size` is more than 1.
    let key_stride = hidden.stride(2);
    let start = (at.batch * hidden.stride(0) + query * hidden.stride(1)) / size + first / size * key_stride;
    let mut seen = 0u32;
    if query < at.time {
        #[unroll]
        for v in 0..comptime!(KEYS_A_PART / size) {
            let hides = hidden[start + v * key_stride];
            #[unroll]
            for j in 0..size {
                let c = v * size + j;
                if first + c <= query && hides[j] == M::from_int(0) {
                    seen |= 1u32 << c as u32;
                }
            }
        }
    }
    seen
}

/// Adds to `sums` this unit's part of row `row` of `tile` (rows `dims` apart): the head
/// dimensions [`part_dim`] gives it.
#[cube]
fn add_row_part<F: Float>(
    sums: &mut Array<F>,
    tile: &SharedMemory<F>,
    row: usize,
    group: &Group,
    #[comptime] dims: usize,
    #[comptime] width: usize,
) {
    #[unroll]
    for l in 0..width {
        sums[l] += tile[row * dims + part_dim(l, group.part)];
    }
}

/// Positions `first … first + rows` of the cube's head, from `column` on, of `from`, times
/// `scale`, into `tile` in the operands' type `E`, rows `dims` apart; zeros past the last
/// position and past `head_dim`. `from` is read `N` neighbouring head dimensions a load (its
/// rows' elements end to end: see [`head_vector_size`]), so that a tile's staging checks an
/// index, and works out an address, once a vector rather than once an element. The cube's
/// `cube_rows · PARTS` units share the vectors out, neighbouring units reading neighbouring
/// vectors of a row.
///
/// [`head_vector_size`]: super::heads::head_vector_size
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage<F: Float, E: Float, N: Size>(
    from: &Tensor<Vector<F, N>>,
    at: &Layout,
    first: usize,
    column: usize,
    scale: F,
    tile: &mut SharedMemory<E>,
    #[comptime] head_dim: usize,
    #[comptime] rows: usize,
    #[comptime] cube_rows: usize,
) {
    let size = from.vector_size();
    let dims = comptime!(staged_dims(head_dim));
    let (row_vectors, vectors) = comptime!((dims / size, rows * dims / size));
    let units = comptime!(cube_rows * PARTS);
    let (row_stride, column_stride) = vector_strides(from);
    let start = at.start(from, first, column);
    let scale = Vector::<F, N>::new(scale);
    #[unroll]
    for n in 0..comptime!(vectors.div_ceil(units)) {
        let i = n * units + UNIT_POS_X as usize;
        // Short only where the units outnumber a tile's last vectors (heads ≤ 16 wide).
        if i < vectors {
            let (row, vector) = (i / row_vectors, i % row_vectors);
            let mut value = Vector::<F, N>::new(F::new(0.0));
            if first + row < at.time && vector * size < head_dim {
                value = from[start + row * row_stride + vector * column_stride] * scale;
            }
            #[unroll]
            for j in 0..size {
                tile[i * size + j] = E::cast_from(value[j]);
            }
        }
    }
}

/// The vectors the kernels read `hidden` in: [`KEYS_A_PART`] neighbouring keys of a query's
/// row at a time (see [`seen_keys`]).
pub(crate) fn mask_vector_size<R: CubeRuntime>(hidden: &CubeTensor<R>) -> usize {
    vector_size(&[hidden], KEYS_A_PART)
}

/// `into`'s `rows × columns` from `into_start` on (rows `columns` apart) `= a · b`: `a` is
/// `rows × depth`, `b` is `depth × columns` or, `b_transposed`, its transpose stored so
/// (`columns × depth`: a tile of keys read as `kᵀ`), each with its rows end to end. The planes
/// of the cube take the result's fragments in turn, each a sum over `depth` of tensor-core
/// products.
#[cube]
#[allow(clippy::too_many_arguments)]
fn plane_products<E: Float, F: Float>(
    a: &SharedMemory<E>,
    b: &SharedMemory<E>,
    #[comptime] b_transposed: bool,
    into: &mut SharedMemory<F>,
    #[comptime] into_start: usize,
    #[comptime] rows: usize,
    #[comptime] columns: usize,
    #[comptime] depth: usize,
    #[comptime] fragment: Fragment,
) {
    let (m, n, k) = comptime!((fragment.m, fragment.n, fragment.k));
    let across = comptime!(columns / n);
    let fragments = comptime!(rows / m * across);
    let b_layout = comptime!(if b_transposed { cmma::MatrixLayout::ColMajor } else { cmma::MatrixLayout::RowMajor });
    let b_stride = comptime!(if b_transposed { depth } else { columns });
    let planes = (CUBE_DIM_X / PLANE_DIM) as usize;
    let mut f = (UNIT_POS_X / PLANE_DIM) as usize;
    while f < fragments {
        let (down, over) = (f / across, f % across);
        let product = cmma::Matrix::<F>::from_value(
            cmma::MatrixIdent::Accumulator,
            m,
            n,
            k,
            cmma::MatrixLayout::Undefined,
            F::new(0.0),
        );
        #[unroll]
        for step in 0..comptime!(depth / k) {
            let a_part = cmma::Matrix::<E>::from_slice(
                cmma::MatrixIdent::A,
                m,
                n,
                k,
                cmma::MatrixLayout::RowMajor,
                &a.slice(down * m * depth + step * k, a.len()),
                depth as u32,
            );
            let mut b_start = step * k * columns + over * n;
            if comptime!(b_transposed) {
                b_start = over * n * depth + step * k;
            }
            let b_part = cmma::Matrix::<E>::from_slice(
                cmma::MatrixIdent::B,
                m,
                n,
                k,
                b_layout,
                &b.slice(b_start, b.len()),
                b_stride as u32,
            );
            cmma::execute::<E, E, F, F>(&a_part, &b_part, &product, &product);
        }
        let end = into.len();
        let at = into_start + down * m * columns + over * n;
        cmma::store(&mut into.slice_mut(at, end), &product, columns as u32, cmma::MatrixLayout::RowMajor);
        f += planes;
    }
}

/// `$kernel`'s launch function for `$fragment`'s operands (`E`) and, for a kernel that reads
/// or writes attention's output, that output's type `$output` (`O`): the operands' own 16-bit
/// type, or `$F` (`$own`) with TF32 or f16 operands. Panics for any other pair, which
/// [`tensor_cores`] never makes. Its first two arguments after the cube's dimensions are the
/// sizes of the vectors its staged tensors ([`head_vector_size`]) and the mask
/// ([`mask_vector_size`]) are read in.
///
/// [`head_vector_size`]: super::heads::head_vector_size
macro_rules! tensor_core_launch {
    ($kernel:ident::<$F:ty, $M:ty, $R:ty>, $fragment:expr, $output:expr, $own:expr) => {{
        use $crate::flash_attention::tensor_cores::Operand;
        match ($fragment.operand, $output) {
            (Operand::BF16, burn::tensor::DType::BF16) => $kernel::launch::<$F, $M, half::bf16, half::bf16, $R>,
            (Operand::F16, burn::tensor::DType::F16) => $kernel::launch::<$F, $M, half::f16, half::f16, $R>,
            (Operand::TF32, output) if output == $own => $kernel::launch::<$F, $M, $F, cubecl::prelude::tf32, $R>,
            (Operand::F16, output) if output == $own => $kernel::launch::<$F, $M, $F, half::f16, $R>,
            (operand, output) => {
                panic!("flash attention on tensor cores: {operand:?} operands for a {output:?} output")
            }
        }
    }};
    ($kernel:ident::<$F:ty, $M:ty, $R:ty>, $fragment:expr) => {{
        use $crate::flash_attention::tensor_cores::Operand;
        match $fragment.operand {
            Operand::BF16 => $kernel::launch::<$F, $M, half::bf16, $R>,
            Operand::F16 => $kernel::launch::<$F, $M, half::f16, $R>,
            Operand::TF32 => $kernel::launch::<$F, $M, cubecl::prelude::tf32, $R>,
        }
    }};
}

pub(crate) use tensor_core_launch;

/// Whether the tests of kernels on tensor cores must run them
/// (`CUBE_KERNELS_TENSOR_CORES=required`, which `scripts/checks/tensor_cores.sh` and
/// `scripts/gpu/check.sh kernels` set): a device without them then fails those tests, where
/// elsewhere they say so and pass.
pub fn tensor_cores_required() -> bool {
    std::env::var("CUBE_KERNELS_TENSOR_CORES").is_ok_and(|value| value == "required")
}

/// How flash attention runs on tensor cores on `device` for heads `head_dim` wide and an
/// output of type `output`, as `"f16 16×16×16, 64 rows a cube"`; `None` where it takes the
/// FP32 units.
pub fn flash_attention_tensor_cores<R: CubeRuntime>(
    device: &R::Device,
    output: DType,
    head_dim: usize,
) -> Option<String> {
    tensor_cores(&R::client(device), output, head_dim).map(|TensorCores { fragment: f, rows }| {
        let operand = format!("{:?}", f.operand).to_lowercase();
        format!("{operand} {}×{}×{}, {rows} rows a cube", f.m, f.n, f.k)
    })
}
