//! A step's gradients, summed over its micro-batches straight into the optimizer's flat
//! buffers: each micro-batch's gradients are added to their stretches in a launch for every
//! few dozen tensors, where summing them a tensor at a time (burn's `GradientsAccumulator`) was
//! a launch each, and copying the sums into the buffers at the step another.

use super::layout::Layout;
use burn::{
    module::{ModuleVisitor, Param},
    optim::GradientsParams,
    prelude::*,
    tensor::{backend::AutodiffBackend, ops::FloatTensor},
};
use gpt2::{Gpt2, Gpt2Backend};
use std::sync::Arc;

pub struct StepGradients<B: AutodiffBackend> {
    layout: Arc<Layout>,
    /// One a parameter group, zeros where no gradient was added (the padding among them).
    buffers: [Tensor<B::InnerBackend, 1>; 2],
}

impl<B: AutodiffBackend> StepGradients<B>
where
    B::InnerBackend: Gpt2Backend,
{
    pub(super) fn zeros(layout: Arc<Layout>, device: &B::Device) -> Self {
        let buffers = layout.zeros(device);
        Self { layout, buffers }
    }

    /// With `grads` added, the gradients of `model`'s parameters from one backward pass. Takes
    /// the buffers by value: one held nowhere else is added to where it lies.
    pub fn add(self, model: &Gpt2<B>, mut grads: GradientsParams) -> Self {
        let Self { layout, buffers } = self;
        let mut pieces = Pieces { layout: &layout, grads: &mut grads, pieces: [Vec::new(), Vec::new()] };
        model.visit(&mut pieces);
        let mut pieces = pieces.pieces.into_iter();
        let buffers =
            buffers.map(|buffer| B::InnerBackend::add_to_stretches(buffer, pieces.next().expect("two groups")));
        Self { layout, buffers }
    }

    /// The buffers, laid out as `layout` (the optimizer's).
    pub(super) fn into_buffers(self, layout: &Layout) -> [Tensor<B::InnerBackend, 1>; 2] {
        assert!(*self.layout == *layout, "the gradients were laid out for another model");
        self.buffers
    }
}

/// Each group's gradients, in their own shapes (added in row-major order, as the layout lays
/// them out), with where they start in its buffer.
struct Pieces<'a, B: AutodiffBackend> {
    layout: &'a Layout,
    grads: &'a mut GradientsParams,
    pieces: [Vec<(FloatTensor<B::InnerBackend>, usize)>; 2],
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Pieces<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let (group, slot) = self.layout.slot(param.id).expect("the layout was made from this model");
        // A parameter without a gradient adds nothing (every GPT-2 parameter has one).
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.pieces[group as usize].push((grad.into_primitive().tensor(), slot.start));
        }
    }
}
