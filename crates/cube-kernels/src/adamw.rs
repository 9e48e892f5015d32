//! AdamW's update of a flat buffer of parameters and its two moments, the gradients scaled by
//! the clip's factor on the way, in one launch that writes the buffers in place. burn's fused
//! element-wise kernel writes its outputs to new buffers: the train stage's update held the
//! parameters, both moments old and new, and the gradients before and after the clip at once,
//! seven buffers of a group's size (on wgpu: BENCHMARKS.md); here the moments are rewritten
//! where they are, and the new parameters, whose old buffer the model's views also hold, are
//! written over the gradients, read element by element just before and needed no longer.

use crate::{
    fusion_op::{register_kernel, Launch},
    grid::{unit_grid, unit_piece},
    in_place::{is_writable_in_order, writable_in_order},
};
use burn::tensor::ops::FloatTensor;
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::prelude::*;
use kernels::AdamWStep;

pub trait AdamWUpdate: burn::tensor::backend::Backend {
    /// `param`, `first` and `second` (PyTorch's `exp_avg` and `exp_avg_sq`), flat buffers of
    /// one length, after `step` on `grad`, first multiplied by `clip` (`[1]`) where given.
    /// The moments are rewritten in place where nothing else holds them, and copied first
    /// otherwise; the parameters' new values are written over the parameters where nothing
    /// else holds them, else over the gradients where nothing else does, else into a copy.
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        clip: Option<FloatTensor<Self>>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// A unit an element. The scalars come as the f64 step's rounded to f32, as burn's scalar
/// operations take them, and the arithmetic is theirs in their order. The new parameters go
/// to `grad` with `into_grad`, to `param` without.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adamw_kernel<F: Float>(
    param: &mut Tensor<F>,
    first: &mut Tensor<F>,
    second: &mut Tensor<F>,
    grad: &mut Tensor<F>,
    clip: &Tensor<F>,
    decay: f32,
    first_weight: f32,
    beta2: f32,
    second_weight: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    step_size: f32,
    #[comptime] clipped: bool,
    #[comptime] into_grad: bool,
) {
    let i = unit_piece() as usize;
    if i >= param.len() {
        terminate!();
    }
    let mut g = grad[i];
    if clipped {
        g *= clip[0];
    }
    let m = first[i] + (g - first[i]) * F::cast_from(first_weight);
    let v = second[i] * F::cast_from(beta2) + g * g * F::cast_from(second_weight);
    let denominator = F::sqrt(v) / F::cast_from(bias_correction2_sqrt) + F::cast_from(eps);
    let updated = param[i] * F::cast_from(decay) - m / denominator * F::cast_from(step_size);
    if into_grad {
        grad[i] = updated;
    } else {
        param[i] = updated;
    }
    first[i] = m;
    second[i] = v;
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> AdamWUpdate for CubeBackend<R, F, I, BT> {
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        clip: Option<FloatTensor<Self>>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let len = param.meta.num_elements();
        for (name, buffer) in [("gradient", &grad), ("first moment", &first), ("second moment", &second)] {
            assert_eq!(buffer.meta.num_elements(), len, "the {name} buffer's length differs from the parameters'");
        }
        assert!(grad.is_contiguous(), "the gradients are a whole buffer, not a view");
        // In the train stage the model's views hold the parameters' buffer: the gradients'
        // takes the new values, and the parameters' is free for the next step's gradients.
        let into_grad = !is_writable_in_order(&param) && is_writable_in_order(&grad) && param.is_contiguous();
        let param = if into_grad { param } else { writable_in_order(param) };
        let (first, second) = (writable_in_order(first), writable_in_order(second));
        let clipped = clip.is_some();
        // Unclipped, the kernel reads no factor; a buffer it also writes cannot stand in for it.
        let clip = clip.unwrap_or_else(|| {
            empty_device_contiguous_dtype(grad.client.clone(), grad.device.clone(), [1].into(), grad.dtype)
        });
        let (cubes, units) = unit_grid(len);
        adamw_kernel::launch::<F, R>(
            &param.client,
            cubes,
            units,
            param.clone().into_tensor_arg(),
            first.clone().into_tensor_arg(),
            second.clone().into_tensor_arg(),
            grad.clone().into_tensor_arg(),
            clip.into_tensor_arg(),
            step.decay as f32,
            (1.0 - step.beta1) as f32,
            step.beta2 as f32,
            (1.0 - step.beta2) as f32,
            step.bias_correction2_sqrt as f32,
            step.eps as f32,
            step.step_size as f32,
            clipped,
            into_grad,
        );
        (if into_grad { grad } else { param }, first, second)
    }
}

impl<B: FusionBackend + AdamWUpdate> AdamWUpdate for Fusion<B> {
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        clip: Option<FloatTensor<Self>>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = param.shape.clone();
        let clipped = clip.is_some();
        let inputs = [param, first, second, grad].into_iter().chain(clip).collect();
        let launch: Launch<B, (AdamWStep, bool)> = |&(step, clipped), mut inputs| {
            let (param, first, second, grad) = (inputs.float(), inputs.float(), inputs.float(), inputs.float());
            let clip = clipped.then(|| inputs.float());
            let (param, first, second) = B::adamw_update(param, grad, clip, first, second, step);
            vec![param, first, second]
        };
        let [param, first, second] = register_kernel::<B, _>(
            "adamw_update",
            inputs,
            &[shape.clone(), shape.clone(), shape],
            (step, clipped),
            launch,
        )
        .try_into()
        .expect("three outputs");
        (param, first, second)
    }
}
