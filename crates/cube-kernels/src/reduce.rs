//! Sums across the units of a cube: along a row (a cube a row), or down columns (a cube a block
//! of columns, its lanes sharing out the rows).

use cubecl::{prelude::*, CubeCount, CubeDim};

/// Most cubes along one dimension of a launch that every backend takes (wgpu's limit).
const MAX_CUBES_X: usize = 65_535;

/// One cube for each of `rows` rows, in rows of at most [`MAX_CUBES_X`] cubes: see
/// [`cube_row`].
pub(crate) fn cube_a_row(rows: usize) -> CubeCount {
    let cubes_x = rows.clamp(1, MAX_CUBES_X);
    CubeCount::Static(cubes_x as u32, rows.div_ceil(cubes_x) as u32, 1)
}

/// The row of a cube launched over [`cube_a_row`]'s count: `y · CUBE_COUNT_X + x` (past the
/// last row in the last line of cubes).
#[cube]
pub(crate) fn cube_row() -> usize {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize
}

/// Columns of a cube that sums down columns, and its lanes of rows. A warp reads 8 neighbouring
/// columns (a 32-byte sector) of 4 rows, and 32 lanes share out the rows: gpt2's 768 columns
/// are 96 cubes, each lane summing 128 rows of a 4 × 1024 batch. burn's column sums (without
/// autotune) run one thread a column down every row: 768 threads on the whole GPU, each
/// waiting on 4,096 loads one after another.
pub(crate) const COLUMNS: u32 = 8;
pub(crate) const LANES: u32 = 32;

/// Rows a lane loads before it works on them (in order, so its sums are the ones a row at a
/// time makes): with one row at a time, a lane waited on each row's loads, 128 waits one after
/// another for a 4 × 1024 batch, and in the kernels that also write (a rounded copy, the
/// product's gradient) ptxas could not start the next row's loads before those writes.
pub(crate) const ROWS_AT_ONCE: usize = 4;

/// Where column `column` of a matrix lies: its first element, the stride between its rows and
/// their count, read from the tensor's metadata once. CubeCL keeps shapes and strides in
/// memory, and in a kernel that writes inside its loop ptxas reads them again for every row
/// (a write might have changed them): a wait for memory before each load's address.
#[derive(CubeType)]
pub(crate) struct Column {
    start: usize,
    row_stride: usize,
    rows: usize,
}

#[cube]
impl Column {
    pub(crate) fn of<F: Float>(x: &Tensor<F>, column: usize) -> Column {
        Column { start: column * x.stride(1), row_stride: x.stride(0), rows: x.shape(0) }
    }
}

/// `x`'s column `at` at rows `first`, `first + lanes`, … ([`ROWS_AT_ONCE`] of them; zeros past
/// the last row), the loads issued together.
#[cube]
pub(crate) fn lane_rows<F: Float>(x: &Tensor<F>, at: &Column, first: usize, #[comptime] lanes: usize) -> Array<F> {
    let mut values = Array::<F>::new(ROWS_AT_ONCE);
    #[unroll]
    for n in 0..ROWS_AT_ONCE {
        let row = first + n * lanes;
        values[n] = F::new(0.0);
        if row < at.rows {
            values[n] = x[at.start + row * at.row_stride];
        }
    }
    values
}

/// The grid of a kernel that sums down `d` columns: a cube a block of [`COLUMNS`] columns,
/// [`COLUMNS`] × [`LANES`] units.
pub(crate) fn column_blocks(d: usize) -> (CubeCount, CubeDim) {
    (CubeCount::Static(d.div_ceil(COLUMNS as usize) as u32, 1, 1), CubeDim::new_2d(COLUMNS, LANES))
}

/// The sum of every unit's `value`, for every unit of the cube: a tree of halvings in shared
/// memory (`partial`, a slot for each unit at least).
#[cube]
pub(crate) fn cube_sum<F: Float>(partial: &mut SharedMemory<F>, value: F) -> F {
    let totals = cube_fold::<F>(partial, &one(value), 1usize, false);
    totals[0]
}

/// The largest of every unit's `value`, for every unit of the cube (as [`cube_sum`]).
#[cube]
pub(crate) fn cube_max<F: Float>(partial: &mut SharedMemory<F>, value: F) -> F {
    let totals = cube_fold::<F>(partial, &one(value), 1usize, true);
    totals[0]
}

/// Each of every unit's `values` (`count` of them) summed over the cube, for every unit: the
/// trees of [`cube_sum`] side by side (`partial`, a slot for each unit and value), the same
/// sums bit for bit, with one barrier a level for all of them where a sum at a time took a tree
/// of barriers each.
#[cube]
pub(crate) fn cube_sums<F: Float>(
    partial: &mut SharedMemory<F>,
    values: &Array<F>,
    #[comptime] count: usize,
) -> Array<F> {
    cube_fold::<F>(partial, values, count, false)
}

/// `value` as the one value of an array, for [`cube_fold`].
#[cube]
fn one<F: Float>(value: F) -> Array<F> {
    let mut values = Array::<F>::new(1usize);
    values[0] = value;
    values
}

/// Each of every unit's `values` folded over the cube by `+`, or by `max` where `maximum`: a
/// tree of halvings for each, value `n`'s in `partial` from `n × CUBE_DIM_X` on.
#[cube]
fn cube_fold<F: Float>(
    partial: &mut SharedMemory<F>,
    values: &Array<F>,
    #[comptime] count: usize,
    #[comptime] maximum: bool,
) -> Array<F> {
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    #[unroll]
    for n in 0..count {
        partial[n * units + unit] = values[n];
    }
    sync_cube();
    let mut half = units / 2;
    while half > 0 {
        if unit < half {
            #[unroll]
            for n in 0..count {
                let other = partial[n * units + unit + half];
                if maximum {
                    partial[n * units + unit] = F::max(partial[n * units + unit], other);
                } else {
                    partial[n * units + unit] += other;
                }
            }
        }
        sync_cube();
        half /= 2;
    }
    let mut totals = Array::<F>::new(count);
    #[unroll]
    for n in 0..count {
        totals[n] = partial[n * units];
    }
    // Every unit has read the totals before the next fold writes over them.
    sync_cube();
    totals
}

/// In a cube of `columns` × `lanes` units (unit `(x, y)`: column `x`, lane `y`), the sum of
/// `value` over the lanes of each column, for the units of lane 0 (other lanes get a partial
/// sum). `partial` holds a slot for each unit.
#[cube]
pub(crate) fn lanes_total<F: Float>(
    partial: &mut SharedMemory<F>,
    value: F,
    #[comptime] columns: usize,
    #[comptime] lanes: usize,
) -> F {
    let column = UNIT_POS_X as usize;
    partial[UNIT_POS_Y as usize * columns + column] = value;
    sync_cube();
    let mut total = F::new(0.0);
    if UNIT_POS_Y == 0 {
        for lane in 0..lanes {
            total += partial[lane * columns + column];
        }
    }
    // Lane 0 has read every slot before the next sum writes over them.
    sync_cube();
    total
}
