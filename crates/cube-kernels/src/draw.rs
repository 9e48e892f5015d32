//! Dropout's mask as kernels draw it: inside the kernel that applies it, element by element,
//! from the Philox words `kernels::dropout_keeps` draws for the whole mask on the CPU (which
//! stays the reference), so no mask is written to memory or read back.

use crate::philox::{philox4x32_10, word, Words};
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;
use kernels::{drop_threshold, MaskStream};

/// Dropout at one place: each element dropped with probability `p` as `stream` draws it for
/// the whole tensor, in its row-major order (`kernels::dropout_keeps`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutDraw {
    pub stream: MaskStream,
    pub p: f64,
}

/// Dropout's draw for the kernels: Philox's key and stream, the threshold a word must reach to
/// keep its element, and the kept elements' scale.
#[derive(CubeLaunch, CubeType, Clone, Copy)]
pub(crate) struct MaskArgs {
    key0: u32,
    key1: u32,
    stream0: u32,
    stream1: u32,
    stream2: u32,
    threshold: u32,
    keep_scale: f32,
}

/// The draw along one row of a mask, which starts at element `row_start` of the whole mask;
/// keeps the last Philox call's words, which serve four neighbouring elements.
#[derive(CubeType)]
pub(crate) struct Draw {
    mask: MaskArgs,
    row_start: u32,
    block: u32,
    w0: u32,
    w1: u32,
    w2: u32,
    w3: u32,
}

#[cube]
impl Draw {
    pub(crate) fn new(mask: &MaskArgs, row_start: usize) -> Draw {
        Draw {
            mask: *mask,
            row_start: row_start as u32,
            // No element's block is u32::MAX: masks have fewer than 2³² elements.
            block: 0xFFFF_FFFFu32,
            w0: 0u32,
            w1: 0u32,
            w2: 0u32,
            w3: 0u32,
        }
    }

    /// Dropout's factor for element `key` of the row: `1 / (1 − p)` where the mask keeps it, 0
    /// where it drops it; 1 without dropout.
    pub(crate) fn keep_scale<F: Float>(&mut self, key: usize, #[comptime] dropout: bool) -> F {
        let mut scale = F::new(1.0);
        if dropout {
            let kept = self.kept(key);
            scale = self.scale_if::<F>(kept);
        }
        scale
    }

    /// Whether the mask keeps element `key` of the row.
    pub(crate) fn kept(&mut self, key: usize) -> bool {
        let element = self.row_start + key as u32;
        let block = element / 4;
        if block != self.block {
            let mask = &self.mask;
            let words = philox4x32_10(block, mask.stream0, mask.stream1, mask.stream2, mask.key0, mask.key1);
            self.block = block;
            self.w0 = words.w0;
            self.w1 = words.w1;
            self.w2 = words.w2;
            self.w3 = words.w3;
        }
        let words = Words { w0: self.w0, w1: self.w1, w2: self.w2, w3: self.w3 };
        word(words, element % 4) >= self.mask.threshold
    }

    /// Dropout's factor for an element the mask keeps (`kept`) or drops.
    pub(crate) fn scale_if<F: Float>(&self, kept: bool) -> F {
        select(kept, F::cast_from(self.mask.keep_scale), F::new(0.0))
    }
}

/// Panics unless a mask of `elements` elements can be drawn: its elements are counted in u32
/// (see [`Draw::new`]). `kernel` names the kernel for the message.
pub(crate) fn assert_drawable(elements: usize, kernel: &str) {
    assert!(elements < u32::MAX as usize, "{kernel}'s dropout mask needs fewer than 2³² elements");
}

/// The kernels' arguments for `dropout` (any, unused, without).
pub(crate) fn mask_args<R: CubeRuntime>(dropout: Option<DropoutDraw>) -> MaskArgsLaunch<R> {
    let (stream, p) = dropout.map_or((MaskStream { key: [0; 2], stream: [0; 3] }, 0.0), |d| (d.stream, d.p));
    MaskArgsLaunch::new(
        stream.key[0],
        stream.key[1],
        stream.stream[0],
        stream.stream[1],
        stream.stream[2],
        drop_threshold(p),
        (1.0 / (1.0 - p)) as f32,
    )
}
