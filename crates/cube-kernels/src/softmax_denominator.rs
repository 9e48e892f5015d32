//! Each row's softmax denominator at a temperature, for top-p sampling: with it and the row's
//! most likely tokens (`MostLikely`), the host knows those tokens' probabilities, and so whether
//! the nucleus lies among them, without reading back the row's 50,257 logits.

use crate::{
    fusion_op::{register_kernel, Launch},
    reduce::{cube_a_row, cube_max, cube_row, cube_sum},
};
use burn::tensor::{ops::FloatTensor, DType, Shape};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeDim};

/// Units of a cube, one cube a row. A power of two (the sums halve it).
const UNITS: u32 = 256;

pub trait SoftmaxDenominator: burn::tensor::backend::Backend {
    /// `Σⱼ exp(lⱼ / t − m)` for each row `l` of `logits` `[rows, vocab]` (f32), `t` the
    /// `temperature` and `m` the row's largest `lⱼ / t`: `[rows]`. A token's probability is
    /// then `exp(l / t − m)` over it.
    fn softmax_denominators(logits: FloatTensor<Self>, temperature: f32) -> FloatTensor<Self>;
}

/// One cube a row: its largest scaled logit, then the sum of the exponentials relative to it,
/// each unit taking every `UNITS`-th logit and the cube folding the units' in shared memory.
#[cube(launch)]
fn softmax_denominator_kernel<F: Float>(logits: &Tensor<F>, denominators: &mut Tensor<F>, temperature: f32) {
    let row = cube_row();
    if row >= logits.shape(0) {
        terminate!();
    }
    let vocab = logits.shape(1);
    let start = row * logits.stride(0);
    let step = logits.stride(1);
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let temperature = F::cast_from(temperature);
    let mut partial = SharedMemory::<F>::new(UNITS as usize);

    let mut largest = F::min_value();
    let mut i = unit;
    while i < vocab {
        largest = F::max(largest, logits[start + i * step] / temperature);
        i += units;
    }
    let largest = cube_max::<F>(&mut partial, largest);

    let mut sum = F::new(0.0);
    let mut i = unit;
    while i < vocab {
        sum += F::exp(logits[start + i * step] / temperature - largest);
        i += units;
    }
    let denominator = cube_sum::<F>(&mut partial, sum);
    if unit == 0 {
        denominators[row * denominators.stride(0)] = denominator;
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SoftmaxDenominator for CubeBackend<R, F, I, BT> {
    fn softmax_denominators(logits: FloatTensor<Self>, temperature: f32) -> FloatTensor<Self> {
        let rows = logits.meta.shape().dims::<2>()[0];
        assert_eq!(logits.dtype, DType::F32, "the softmax denominators of f32 logits");
        assert!(temperature > 0.0, "a temperature above 0, not {temperature}");
        let denominators =
            empty_device_contiguous_dtype(logits.client.clone(), logits.device.clone(), Shape::new([rows]), DType::F32);
        softmax_denominator_kernel::launch::<f32, R>(
            &logits.client.clone(),
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            logits.into_tensor_arg(),
            denominators.clone().into_tensor_arg(),
            temperature,
        );
        denominators
    }
}

impl<B: FusionBackend + SoftmaxDenominator> SoftmaxDenominator for Fusion<B> {
    fn softmax_denominators(logits: FloatTensor<Self>, temperature: f32) -> FloatTensor<Self> {
        let rows = logits.shape.dims::<2>()[0];
        let launch: Launch<B, _> =
            |&temperature, mut inputs| vec![B::softmax_denominators(inputs.float(), temperature)];
        let [denominators] =
            register_kernel::<B, _>("softmax_denominator", vec![logits], &[Shape::new([rows])], temperature, launch)
                .try_into()
                .expect("one output");
        denominators
    }
}
