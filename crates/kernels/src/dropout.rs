//! Dropout's masks as counters, not as a generator's state: element `i` of a stream is kept or
//! dropped by word `i mod 4` of Philox at counter `[i / 4, stream…]`. A training step's masks are
//! then a function of the step, the micro-batch and the place in the model alone, whichever
//! thread, device or worker draws them, and a resumed run draws what an uninterrupted one did.

use crate::philox::philox4x32_10;
use rayon::prelude::*;

/// Where a mask's words come from: Philox's key, and the three counter words after the
/// element's that name the stream (for training: the micro-batch, the place in the model, the
/// step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaskStream {
    pub key: [u32; 2],
    pub stream: [u32; 3],
}

impl MaskStream {
    /// The Philox counter of elements `4 · block … 4 · block + 3`.
    pub fn counter(&self, block: u32) -> [u32; 4] {
        [block, self.stream[0], self.stream[1], self.stream[2]]
    }
}

/// Dropout at probability `p` drops an element whose word is below this: `p · 2³²` of the 2³²
/// words (to within one in 2³²).
pub fn drop_threshold(p: f64) -> u32 {
    assert!((0.0..1.0).contains(&p), "dropout probability {p} is not in [0, 1)");
    (p * 4_294_967_296.0).round().min(f64::from(u32::MAX)) as u32
}

/// `keeps[i]`: 1.0 where dropout at probability `p` keeps element `i` of `stream`, 0.0 where it
/// drops it. Shared out among threads, four elements (one Philox call) at a time.
pub fn dropout_keeps(stream: MaskStream, p: f64, keeps: &mut [f32]) {
    let threshold = drop_threshold(p);
    assert!(keeps.len().div_ceil(4) <= 1 << 32, "{} elements is more than one mask stream holds", keeps.len());
    keeps.par_chunks_mut(4).enumerate().for_each(|(block, four)| {
        let words = philox4x32_10(stream.counter(block as u32), stream.key);
        for (keep, word) in four.iter_mut().zip(words) {
            *keep = if word >= threshold { 1.0 } else { 0.0 };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: MaskStream = MaskStream { key: [7, 11], stream: [0, 3, 5] };

    fn keeps(stream: MaskStream, p: f64, len: usize) -> Vec<f32> {
        let mut keeps = vec![f32::NAN; len];
        dropout_keeps(stream, p, &mut keeps);
        keeps
    }

    #[test]
    fn keeps_one_minus_p_of_the_elements() {
        let n = 1 << 20;
        for p in [0.1, 0.5, 0.9] {
            let kept: f32 = keeps(STREAM, p, n).iter().sum();
            // Binomial: the standard deviation of the kept count is √(n p (1 − p)) < 512.
            let expected = (1.0 - p) * n as f64;
            assert!((f64::from(kept) - expected).abs() < 5.0 * 512.0, "p {p}: kept {kept} of {n}");
        }
        assert!(keeps(STREAM, 0.0, 1000).iter().all(|&k| k == 1.0), "p = 0 keeps everything");
    }

    #[test]
    fn an_element_depends_on_its_stream_and_index_only() {
        let whole = keeps(STREAM, 0.5, 103);
        // A shorter mask is the longer one's start: the length does not move the draws.
        assert_eq!(keeps(STREAM, 0.5, 10), whole[..10]);
        for other in [
            MaskStream { key: [8, 11], ..STREAM },
            MaskStream { stream: [1, 3, 5], ..STREAM },
            MaskStream { stream: [0, 4, 5], ..STREAM },
            MaskStream { stream: [0, 3, 6], ..STREAM },
        ] {
            assert_ne!(keeps(other, 0.5, 103), whole, "{other:?}");
        }
    }

    #[test]
    fn neighbouring_elements_are_not_correlated() {
        // Each of the four words of a call, and the words of consecutive calls, kept together
        // about (1 − p)² of the time.
        let (p, n) = (0.5, 1 << 20);
        let mask = keeps(STREAM, p, n);
        for lag in [1, 4] {
            let both: f32 = mask.windows(lag + 1).map(|w| w[0] * w[lag]).sum();
            let expected = (1.0 - p) * (1.0 - p) * n as f64;
            assert!((f64::from(both) - expected).abs() < 5.0 * 512.0, "lag {lag}: {both} against {expected}");
        }
    }
}
