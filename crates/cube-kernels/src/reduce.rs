//! Sums across the units of a cube, for the kernels that need a row's total in every unit.

use cubecl::prelude::*;

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
