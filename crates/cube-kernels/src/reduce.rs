//! Sums across the units of a cube: along a row (a cube a row), or down columns (a cube a block
//! of columns, its lanes sharing out the rows).

use cubecl::prelude::*;

/// Columns of a cube that sums down columns, and its lanes of rows: 32 neighbouring columns are
/// read together, 8 lanes share out the rows. burn's column sums run one thread a column over
/// every row, a few warps for the whole GPU.
pub(crate) const COLUMNS: u32 = 32;
pub(crate) const LANES: u32 = 8;

/// The sum of every unit's `value`, for every unit of the cube: a tree of halvings in shared
/// memory (`partial`, a slot for each unit at least).
#[cube]
pub(crate) fn cube_sum<F: Float>(partial: &mut SharedMemory<F>, value: F) -> F {
    let unit = UNIT_POS_X as usize;
    partial[unit] = value;
    sync_cube();
    let mut half = CUBE_DIM_X as usize / 2;
    while half > 0 {
        if unit < half {
            let other = partial[unit + half];
            partial[unit] += other;
        }
        sync_cube();
        half /= 2;
    }
    let total = partial[0];
    // Every unit has read the total before the next sum writes over it.
    sync_cube();
    total
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
