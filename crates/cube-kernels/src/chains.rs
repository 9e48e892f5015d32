//! Sums kept as a few independent partial sums ("chains"), added at the end: each term waits
//! only for the one [`CHAINS`] before it. A single running sum makes a 64-term dot product 64
//! dependent multiply-adds (~4 cycles each on an H200), which kernels that keep few warps
//! resident, or that have few cubes to run, cannot hide behind other work. Also the zeroed
//! arrays that every kernel's running sums start from.

use cubecl::prelude::*;

/// Partial sums a sum keeps.
pub(crate) const CHAINS: usize = 4;

/// `len` zeros in registers: running sums before their first term.
#[cube]
pub(crate) fn zeros<F: Float>(#[comptime] len: usize) -> Array<F> {
    let mut zeros = Array::<F>::new(len);
    #[unroll]
    for i in 0..len {
        zeros[i] = F::new(0.0);
    }
    zeros
}

/// [`CHAINS`] partial sums, each zero.
#[cube]
pub(crate) fn new_chains<F: Float>() -> Array<F> {
    zeros::<F>(CHAINS)
}

/// The partial sums added up.
#[cube]
pub(crate) fn chains_total<F: Float>(partial: &Array<F>) -> F {
    (partial[0] + partial[1]) + (partial[2] + partial[3])
}
