//! AdamW's update on the device against PyTorch's formula on the host in f64, on burn's wgpu
//! backend with and without fusion (Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test adamw`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod support;

use burn::prelude::*;
use cube_kernels::{AdamWUpdate, DeviceMemory};
use kernels::AdamWStep;
use support::{assert_close, host, host_primitive, normal, primitive, uniform, Eager, Fused};

/// Past one cube's units and not a multiple of them.
const LEN: usize = 70_001;

fn tensor<B: Backend>(values: Vec<f32>) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(values, [LEN]), &Default::default())
}

/// PyTorch's `_single_tensor_adamw` on one element, in f64.
fn expected(param: f64, grad: f64, first: f64, second: f64, step: &AdamWStep) -> [f64; 3] {
    let first = first + (grad - first) * (1.0 - step.beta1);
    let second = second * step.beta2 + grad * grad * (1.0 - step.beta2);
    let denominator = second.sqrt() / step.bias_correction2_sqrt + step.eps;
    [param * step.decay - first / denominator * step.step_size, first, second]
}

/// Which of the update's buffers something else holds, as well as the update.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Nothing,
    /// As in the train stage, where the model's views hold them: the new values go over the
    /// gradients.
    Parameters,
    /// Everything is copied first.
    All,
}

/// An update from moments as a run's third step leaves them, with or without the clip's
/// factor, with `held` buffers held elsewhere (their holders' values left untouched).
fn check<B: AdamWUpdate>(clip: Option<f32>, held: Held) {
    let (beta1, beta2, lr) = (0.9, 0.95, 1e-3);
    let step = AdamWStep {
        decay: 1.0 - lr * 0.1,
        beta1,
        beta2,
        eps: 1e-8,
        bias_correction2_sqrt: (1.0 - beta2.powi(3)).sqrt(),
        step_size: lr / (1.0 - beta1.powi(3)),
    };
    let values = [normal(LEN, 1), normal(LEN, 2), normal(LEN, 3), uniform(LEN, 0.0, 4.0, 4)];
    let [param, grad, first, second] = values.clone().map(tensor::<B>);
    let holders = match held {
        Held::Nothing => vec![],
        Held::Parameters => vec![param.clone()],
        Held::All => vec![param.clone(), grad.clone(), first.clone(), second.clone()],
    };
    let clip_tensor =
        clip.map(|factor| Tensor::<B, 1>::from_data(TensorData::new(vec![factor], [1]), &Default::default()));

    let (param, first, second) = B::adamw_update(
        primitive(param),
        primitive(grad),
        clip_tensor.map(primitive),
        primitive(first),
        primitive(second),
        step,
    );

    let [param0, grad, first0, second0] = values.map(|values| values.into_iter().map(f64::from).collect::<Vec<_>>());
    let factor = clip.map_or(1.0, f64::from);
    let expected: Vec<[f64; 3]> =
        (0..LEN).map(|i| expected(param0[i], grad[i] * factor, first0[i], second0[i], &step)).collect();
    for (k, (name, actual)) in
        [("parameters", param), ("first moments", first), ("second moments", second)].into_iter().enumerate()
    {
        let expected: Vec<f64> = expected.iter().map(|element| element[k]).collect();
        assert_close(name, &expected, &host_primitive::<B, 1>(actual), 1e-6);
    }
    for (holder, original) in holders.into_iter().zip([param0, grad, first0, second0]) {
        assert_eq!(host(holder), original, "a holder's buffer was left as it was");
    }
}

/// The update takes no new buffer for buffers nothing else holds, nor for parameters held
/// elsewhere when the gradients are not (the train stage's case): its point. Counted in
/// CubeCL's persistent pool, which gives each allocation its own buffer of its exact size and
/// keeps it, so that what it reserves is the most held at once.
fn rewrites_in_place<B: AdamWUpdate + DeviceMemory>(held: Held) {
    let device = Default::default();
    B::memory_persistent_allocations(&device, (), |()| {
        let [param, grad, first, second] =
            [normal(LEN, 1), normal(LEN, 2), normal(LEN, 3), uniform(LEN, 0.0, 4.0, 4)].map(tensor::<B>);
        let holder = (held == Held::Parameters).then(|| param.clone());
        let step =
            AdamWStep { decay: 1.0, beta1: 0.9, beta2: 0.95, eps: 1e-8, bias_correction2_sqrt: 1.0, step_size: 1e-3 };
        let reserved = || B::memory_usage(&device).expect("CubeCL counts its memory").bytes_reserved;
        let before = reserved();
        let updated =
            B::adamw_update(primitive(param), primitive(grad), None, primitive(first), primitive(second), step);
        let after = reserved();
        // The launch's own few bytes of metadata may take a buffer; a copy would take 280 kB.
        assert!(after - before < 4096, "the update took {} bytes more", after - before);
        drop((updated, holder));
    });
}

/// One test, so that no other test's buffers come and go while the allocator's count is read.
#[test]
fn updates_as_pytorch_does_in_place_with_and_without_fusion() {
    for held in [Held::Nothing, Held::Parameters] {
        rewrites_in_place::<Eager>(held);
        rewrites_in_place::<Fused>(held);
    }
    for clip in [None, Some(0.37)] {
        for held in [Held::Nothing, Held::Parameters, Held::All] {
            check::<Eager>(clip, held);
            check::<Fused>(clip, held);
        }
    }
}
