//! Launches of a unit per piece of work over more pieces than one dimension of cubes takes.

use cubecl::{prelude::*, CubeCount, CubeDim};

/// Units of a cube.
const UNITS: u32 = 256;

/// Most cubes along one dimension of a launch that every backend takes (wgpu's limit).
const MAX_CUBES_X: usize = 65_535;

/// The cubes and their units for `pieces` units: along x up to the limit, then rows of those
/// along y. Units past `pieces` (the last cube's) are launched too.
pub(crate) fn unit_grid(pieces: usize) -> (CubeCount, CubeDim) {
    let cubes = pieces.div_ceil(UNITS as usize).max(1);
    let cubes_x = cubes.min(MAX_CUBES_X);
    (CubeCount::Static(cubes_x as u32, cubes.div_ceil(cubes_x) as u32, 1), CubeDim::new_1d(UNITS))
}

/// The piece of work of the calling unit in a launch over [`unit_grid`].
#[cube]
pub(crate) fn unit_piece() -> u32 {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X
}
