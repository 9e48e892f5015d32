//! Dropout in training, with masks drawn from counters: each place in the model draws a Philox
//! stream (`kernels::dropout_keeps`) named by the run's seed, the step, the micro-batch and the
//! place. burn's `Dropout` draws from the backend's one generator, in the order the masks are
//! asked for: a step must seed it (which waits for the device's queued work), and two devices
//! training replicas would take each other's draws. Here a micro-batch gets the same masks on
//! any device, on any worker, in a resumed run or an uninterrupted one.

use crate::Gpt2Backend;
use burn::prelude::*;
use kernels::MaskStream;

/// The dropout masks of one training forward pass: those of micro-batch `micro_batch` (its
/// index in the step) of step `step` of a run seeded `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutMasks {
    key: [u32; 2],
    micro_batch: u32,
    step: u32,
}

impl DropoutMasks {
    pub fn new(seed: u64, step: u64, micro_batch: usize) -> Self {
        Self {
            key: [seed as u32, (seed >> 32) as u32],
            micro_batch: u32::try_from(micro_batch).expect("fewer than 2³² micro-batches a step"),
            step: u32::try_from(step).expect("fewer than 2³² steps"),
        }
    }

    /// The masks after the embeddings.
    pub fn embedding(self) -> MaskStream {
        self.place(0)
    }

    /// The masks of block `layer`.
    pub fn layer(self, layer: usize) -> LayerMasks {
        LayerMasks { masks: self, layer: u32::try_from(layer).expect("fewer than 2³² layers") }
    }

    /// Places are numbered in the order a forward pass reaches them: the embeddings, then each
    /// block's three.
    fn place(self, place: u32) -> MaskStream {
        MaskStream { key: self.key, stream: [self.micro_batch, place, self.step] }
    }
}

/// A block's dropout masks: on attention's weights, and on the output of each branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerMasks {
    masks: DropoutMasks,
    layer: u32,
}

impl LayerMasks {
    pub fn attention_weights(self) -> MaskStream {
        self.masks.place(1 + 3 * self.layer)
    }

    pub fn attention_output(self) -> MaskStream {
        self.masks.place(2 + 3 * self.layer)
    }

    pub fn mlp_output(self) -> MaskStream {
        self.masks.place(3 + 3 * self.layer)
    }
}

/// Dropout at one place of one training forward pass: each element dropped with probability
/// `p` as `stream` draws it, the kept ones scaled by `1 / (1 − p)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub p: f64,
    pub stream: MaskStream,
}

impl Dropout {
    /// Dropout at probability `p` from `stream`: none outside training (no stream) or at 0.
    pub(crate) fn at(p: f64, stream: Option<MaskStream>) -> Option<Self> {
        stream.filter(|_| p > 0.0).map(|stream| Self { p, stream })
    }

    /// `1 / (1 − p)` where an element of a tensor of `shape` is kept, 0.0 where it is dropped:
    /// the mask and the scale in one tensor (one kernel on a GPU).
    pub fn scaled_keeps<B: Gpt2Backend, const D: usize>(&self, shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
        let scale = (1.0 / (1.0 - self.p)) as f32;
        B::dropout_keeps(self.stream, self.p, scale, shape.iter().product(), device).reshape(shape)
    }

    /// `x` with the dropped elements zeroed and the kept ones scaled.
    pub fn apply<B: Gpt2Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let keeps = self.scaled_keeps(x.dims(), &x.device());
        x * keeps
    }
}

/// `x` through `dropout`, where there is one.
pub(crate) fn dropped<B: Gpt2Backend, const D: usize>(x: Tensor<B, D>, dropout: Option<Dropout>) -> Tensor<B, D> {
    match dropout {
        Some(dropout) => dropout.apply(x),
        None => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;

    #[test]
    fn every_place_step_and_micro_batch_draws_its_own_mask() {
        let masks = DropoutMasks::new(42, 3, 1);
        let mut streams = vec![masks.embedding()];
        for layer in 0..3 {
            let layer = masks.layer(layer);
            streams.extend([layer.attention_weights(), layer.attention_output(), layer.mlp_output()]);
        }
        streams.extend(
            [DropoutMasks::new(42, 4, 1), DropoutMasks::new(42, 3, 2), DropoutMasks::new(43, 3, 1)]
                .map(DropoutMasks::embedding),
        );
        streams.push(DropoutMasks::new(42 + (1 << 32), 3, 1).embedding());
        let draws: Vec<Vec<f32>> = streams
            .iter()
            .map(|&stream| {
                Dropout { p: 0.5, stream }
                    .scaled_keeps::<Cpu, 1>([64], &Default::default())
                    .into_data()
                    .to_vec()
                    .unwrap()
            })
            .collect();
        for (i, first) in draws.iter().enumerate() {
            for (j, second) in draws.iter().enumerate().skip(i + 1) {
                assert_ne!(first, second, "{:?} and {:?}", streams[i], streams[j]);
            }
        }
        assert_eq!(masks, DropoutMasks::new(42, 3, 1), "the same pass, the same masks");
    }

    #[test]
    fn drops_at_p_and_scales_the_rest() {
        let dropout = Dropout { p: 0.25, stream: DropoutMasks::new(1, 0, 0).embedding() };
        let x = Tensor::<Cpu, 2>::ones([256, 256], &Default::default());
        let y: Vec<f32> = dropout.apply(x).into_data().to_vec().unwrap();
        let kept = y.iter().filter(|&&v| v != 0.0).count();
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        // Binomial: the standard deviation of the kept count is √(n p (1 − p)) ≈ 111.
        assert!((kept as f64 - 0.75 * 65_536.0).abs() < 5.0 * 111.0, "kept {kept} of 65,536");
        assert_eq!(Dropout::at(0.0, Some(dropout.stream)), None, "p = 0 drops nothing");
        assert_eq!(Dropout::at(0.25, None), None, "outside training nothing is dropped");
    }
}
