//! Sums kept as a few independent partial sums ("chains"), added at the end: each term waits
//! only for the one [`CHAINS`] before it. A single running sum makes a 64-term dot product 64
//! dependent multiply-adds (~4 cycles each on an H200), which kernels that keep few warps
//! resident, or that have few cubes to run, cannot hide behind other work.

use cubecl::prelude::*;

/// Partial sums a sum keeps.
pub(crate) const CHAINS: usize = 4;

/// [`CHAINS`] partial sums, each zero.
#[cube]
pub(crate) fn new_chains<F: Float>() -> Array<F> {
    let mut partial = Array::<F>::new(CHAINS);
    #[unroll]
    for c in 0..CHAINS {
        partial[c] = F::new(0.0);
    }
    partial
}

/// The partial sums added up.
#[cube]
pub(crate) fn chains_total<F: Float>(partial: &Array<F>) -> F {
    (partial[0] + partial[1]) + (partial[2] + partial[3])
}
