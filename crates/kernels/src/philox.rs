//! Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
//! SC 2011), the counter-based generator behind cuRAND's and PyTorch's GPU dropout: four random
//! words from a counter and a key, with no state carried from one call to the next. Any element
//! of a stream is drawn on its own, on any thread or device, in any order.
//!
//! `cube-kernels` draws the same words on the GPU; its tests hold the two to each other, and the
//! tests here hold this one to Random123's published known answers.

/// Philox's multipliers and its key schedule's increments (the golden ratio and √3 − 1).
const MULTIPLIERS: [u32; 2] = [0xD251_1F53, 0xCD9E_8D57];
const KEY_INCREMENTS: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];

/// The four words at `counter` of the stream `key`: ten rounds, each two 32 × 32 → 64-bit
/// products whose high halves are mixed with the key and the other two words.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut x, mut key) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            key = [key[0].wrapping_add(KEY_INCREMENTS[0]), key[1].wrapping_add(KEY_INCREMENTS[1])];
        }
        let product0 = u64::from(MULTIPLIERS[0]) * u64::from(x[0]);
        let product1 = u64::from(MULTIPLIERS[1]) * u64::from(x[2]);
        let (high0, low0) = ((product0 >> 32) as u32, product0 as u32);
        let (high1, low1) = ((product1 >> 32) as u32, product1 as u32);
        x = [high1 ^ x[1] ^ key[0], low1, high0 ^ x[3] ^ key[1], low0];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's known-answer vectors (its `tests/kat_vectors`), also in TensorFlow's Philox
    /// tests: all zeros, all ones, and π's hexadecimal digits.
    #[test]
    fn matches_random123s_known_answers() {
        let cases = [
            ([0; 4], [0; 2], [0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8]),
            ([u32::MAX; 4], [u32::MAX; 2], [0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD]),
            (
                [0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344],
                [0xA409_3822, 0x299F_31D0],
                [0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1],
            ),
        ];
        for (counter, key, expected) in cases {
            assert_eq!(philox4x32_10(counter, key), expected, "counter {counter:x?}, key {key:x?}");
        }
    }
}
