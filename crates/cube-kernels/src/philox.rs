//! Philox4x32-10 in CubeCL: the rounds of `kernels::philox4x32_10`, with its constants, in GPU
//! integer arithmetic (wrapping adds, `mul_hi` for the products' high halves). Kernels that
//! drop elements draw the words `kernels::dropout_keeps` draws on the CPU, which stays their
//! reference.

use cubecl::prelude::*;

/// The four words of one Philox call.
#[derive(CubeType, Clone, Copy)]
pub(crate) struct Words {
    pub w0: u32,
    pub w1: u32,
    pub w2: u32,
    pub w3: u32,
}

/// Philox's words at counter `[block, stream0, stream1, stream2]` under key `[key0, key1]`.
#[cube]
pub(crate) fn philox4x32_10(block: u32, stream0: u32, stream1: u32, stream2: u32, key0: u32, key1: u32) -> Words {
    let (mut x0, mut x1, mut x2, mut x3) = (block, stream0, stream1, stream2);
    let (mut k0, mut k1) = (key0, key1);
    let (m0, m1) = (0xD251_1F53u32, 0xCD9E_8D57u32);
    for _ in 0..10u32 {
        let (high0, low0) = (u32::mul_hi(m0, x0), m0 * x0);
        let (high1, low1) = (u32::mul_hi(m1, x2), m1 * x2);
        x0 = high1 ^ x1 ^ k0;
        x1 = low1;
        x2 = high0 ^ x3 ^ k1;
        x3 = low0;
        // The key schedule: the round after this one takes the next key.
        k0 += 0x9E37_79B9u32;
        k1 += 0xBB67_AE85u32;
    }
    Words { w0: x0, w1: x1, w2: x2, w3: x3 }
}

/// Word `which` (0 to 3) of `words`.
#[cube]
pub(crate) fn word(words: Words, which: u32) -> u32 {
    let low = select(which == 0, words.w0, words.w1);
    let high = select(which == 2, words.w2, words.w3);
    select(which < 2, low, high)
}
