//! burn 0.21's CPU backend copies both operands of every matrix product (its reshape copies
//! even a contiguous tensor) and makes a transposed operand contiguous element by element.
//! Decoding multiplies a few rows by every weight, so a gpt2 decoding step spent ~1 s copying
//! weights, 0.43 s of it transposing the 154 MB token embedding for the LM head, and attention
//! copied the cached keys and values several times a step. The CPU's [`Gpt2Backend`] hands the
//! arrays, where they lie, to the `kernels` crate.

use super::{attention_with_burn, first_positions_by_slice, float, primitive, Gpt2Backend};
use crate::{dropout::Dropout, Precision};
use burn::{backend::NdArray, nn::Linear, prelude::*, tensor::activation::gelu_approximate};
use burn_ndarray::NdArrayTensor;
use ndarray::{ArcArray, Array, ArrayView2, ArrayView4, ArrayViewD, Axis, Dimension, Ix1, Ix3, IxDyn, Slice};

/// burn's CPU backend: f32 products run on the arrays in place; other element types (which
/// the model never makes) take burn's path.
impl Gpt2Backend for NdArray<f32> {
    fn linear_forward(layer: &Linear<Self>, x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let [rows, _] = x.dims();
        let [_, d_out] = layer.weight.dims();
        let (inputs, weight) = (primitive(x.clone()), primitive(layer.weight.val()));
        let (Some(inputs), Some(weight)) = (f32_view(&inputs), f32_view(&weight)) else {
            return layer.forward(x);
        };
        let mut y = kernels::matmul(matrix(inputs), matrix(weight));
        if let Some(bias) = &layer.bias {
            let bias = primitive(bias.val());
            y += &f32_view(&bias)
                .expect("an f32 bias beside the f32 weight")
                .into_dimensionality::<Ix1>()
                .expect("a 1-D bias");
        }
        tensor(y, [rows, d_out])
    }

    fn matmul_transposed(x: Tensor<Self, 2>, weight: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let ([rows, _], [n, _]) = (x.dims(), weight.dims());
        let (inputs, weights) = (primitive(x.clone()), primitive(weight.clone()));
        let (Some(inputs), Some(weights)) = (f32_view(&inputs), f32_view(&weights)) else {
            return x.matmul(weight.transpose());
        };
        tensor(kernels::matmul(matrix(inputs), matrix(weights).reversed_axes()), [rows, n])
    }

    /// Each (row, head) pair on its own thread, on the arrays in place; with dropout, burn's
    /// operations. This backend has no bf16.
    fn masked_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: Tensor<Self, 3, Bool>,
        dropout: Option<Dropout>,
        precision: Precision,
    ) -> Tensor<Self, 3> {
        if dropout.is_some() {
            return attention_with_burn(q, k, v, mask, dropout, precision);
        }
        let [batch, heads, time, head_dim] = q.dims();
        let arrays = (primitive(q.clone()), primitive(k.clone()), primitive(v.clone()), mask.clone().into_primitive());
        let (Some(queries), Some(keys), Some(values), NdArrayTensor::Bool(hidden)) =
            (f32_view(&arrays.0), f32_view(&arrays.1), f32_view(&arrays.2), &arrays.3)
        else {
            return attention_with_burn(q, k, v, mask, dropout, precision);
        };
        let hidden = hidden.view().into_dimensionality::<Ix3>().expect("a 3-D mask");
        let y = kernels::masked_attention(four_d(queries), four_d(keys), four_d(values), hidden);
        tensor(y, [batch, time, heads * head_dim])
    }

    /// In place, in one pass over the elements.
    fn gelu_tanh<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        match primitive(x) {
            NdArrayTensor::F32(storage) => {
                let mut x = storage.into_shared().into_owned();
                kernels::gelu_tanh_in_place(x.view_mut());
                from_shared(x.into_shared())
            }
            other => gelu_approximate(float(other)),
        }
    }

    /// A view that shares the buffer's memory (burn's `slice` copies it).
    fn first_positions(buffer: Tensor<Self, 4>, count: usize) -> Tensor<Self, 4> {
        match primitive(buffer) {
            NdArrayTensor::F32(storage) => {
                let mut positions = storage.into_shared();
                positions.slice_axis_inplace(Axis(2), Slice::from(..count));
                from_shared(positions)
            }
            other => first_positions_by_slice(float(other), count),
        }
    }
}

/// The f32 array behind a CPU tensor, in place; `None` for other element types.
fn f32_view(tensor: &NdArrayTensor) -> Option<ArrayViewD<'_, f32>> {
    match tensor {
        NdArrayTensor::F32(storage) => Some(storage.view()),
        _ => None,
    }
}

fn four_d(view: ArrayViewD<'_, f32>) -> ArrayView4<'_, f32> {
    view.into_dimensionality().expect("a 4-D tensor")
}

fn matrix(view: ArrayViewD<'_, f32>) -> ArrayView2<'_, f32> {
    view.into_dimensionality().expect("a 2-D tensor")
}

/// A CPU tensor of shape `dims` holding `array`'s elements in row-major order.
fn tensor<Shape: Dimension, const D: usize>(array: Array<f32, Shape>, dims: [usize; D]) -> Tensor<NdArray<f32>, D> {
    from_shared(array.into_shape_with_order(IxDyn(&dims)).expect("as many elements as the shape holds").into_shared())
}

fn from_shared<const D: usize>(array: ArcArray<f32, IxDyn>) -> Tensor<NdArray<f32>, D> {
    float(NdArrayTensor::from(array))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;
    use burn::{nn::LinearConfig, tensor::Distribution};

    fn random<const D: usize>(dims: [usize; D]) -> Tensor<Cpu, D> {
        Tensor::random(dims, Distribution::Uniform(-1.0, 1.0), &Default::default())
    }

    fn assert_close<const D: usize>(actual: Tensor<Cpu, D>, expected: Tensor<Cpu, D>) {
        assert_eq!(actual.dims(), expected.dims());
        let difference = (actual - expected.clone()).abs().max().into_scalar();
        let scale = expected.abs().max().into_scalar().max(1.0);
        assert!(difference <= 1e-5 * scale, "max |difference| {difference} at scale {scale}");
    }

    #[test]
    fn linear_matches_burns_on_every_path() {
        // One row and eight (few-row kernels, with edges: 200 columns), 40 (matrixmultiply); d_in
        // 300 spans three row blocks.
        for rows in [1, 8, 40] {
            let layer = LinearConfig::new(300, 200).init::<Cpu>(&Default::default());
            let x = random([rows, 300]);
            assert_close(<Cpu as Gpt2Backend>::linear_forward(&layer, x.clone()), layer.forward(x));
        }
    }

    #[test]
    fn transposed_product_matches_burns_on_every_path() {
        // A weight of 300 rows spans three column blocks.
        for rows in [1, 8, 40] {
            let (x, weight) = (random([rows, 64]), random([300, 64]));
            assert_close(
                <Cpu as Gpt2Backend>::matmul_transposed(x.clone(), weight.clone()),
                x.matmul(weight.transpose()),
            );
        }
    }

    #[test]
    fn gelu_matches_burns() {
        let x = random([3, 5, 40]) * 8.0;
        assert_close(<Cpu as Gpt2Backend>::gelu_tanh(x.clone()), gelu_approximate(x));
    }

    #[test]
    fn attention_matches_burns() {
        // Three queries against five keys, as after two cached positions; the mask hides
        // the future and, in the second row, the first key as well (a document boundary). The
        // queries are a strided view, as the model's are.
        let (q, k, v) = (random([2, 3, 3, 4]).swap_dims(1, 2), random([2, 3, 5, 4]), random([2, 3, 5, 4]));
        let mask = crate::causal_mask::<Cpu>(3, 5, &Default::default()).unsqueeze::<3>().repeat_dim(0, 2);
        let first_key =
            Tensor::<Cpu, 1>::from_floats([0.0, 1.0], &Default::default()).reshape([2, 1, 1]).bool().expand([2, 3, 1]);
        let mask = mask.slice_assign([0..2, 0..3, 0..1], first_key);
        let expected = attention_with_burn(q.clone(), k.clone(), v.clone(), mask.clone(), None, Precision::F32);
        assert_close(<Cpu as Gpt2Backend>::masked_attention(q, k, v, mask, None, Precision::F32), expected);
    }
}
