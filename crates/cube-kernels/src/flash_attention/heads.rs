//! Where a cube's head lies in the rows the flash kernels read and write ([`Layout`]), and how
//! a group of [`PARTS`] units shares each of the rows it holds ([`Group`], [`part_dim`]): what
//! the kernels on the FP32 units and on tensor cores hold their rows in.

use burn_cubecl::{tensor::CubeTensor, CubeRuntime};
use cubecl::prelude::*;

/// Units that hold the same rows, each a part of every row's head dimensions (see
/// [`part_dim`]): a dot product is their parts' sums added across the four (two shuffles), and
/// each value a unit reads from a tile serves each of its rows. When a unit held one whole row,
/// every multiply-add took an operand from shared memory, which hands an SM 128 bytes a cycle:
/// a quarter of the operands its multiply-adds can take.
pub(crate) const PARTS: usize = 4;

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
