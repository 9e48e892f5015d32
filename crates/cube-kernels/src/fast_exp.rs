//! The exponential of flash attention's softmax weights, by the GPU's approximate instruction.

use cubecl::prelude::*;

/// `e^x` through the hardware's base-2 exponential (`__expf` on CUDA, f32: `ex2.approx` of
/// `x · log₂ e`, ~4 instructions; its error is a few ulps, under 10⁻⁶ relative where a
/// softmax weight is not negligible). `F::exp` compiles to CUDA's exact `expf`: ~10
/// instructions, a chain of 8, for each (query, key) pair of the flash kernels' inner loops.
/// Other types and backends keep their exact exponential.
#[cube(fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf)]
pub(crate) fn fast_exp<F: Float>(x: F) -> F {
    F::exp(x)
}
