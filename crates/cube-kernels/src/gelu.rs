//! GPT-2's GELU, with tanh, `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, for the kernels that
//! apply it, and the MLP's first layer's end, `gelu(product + bias)`, in one launch each way:
//! forward, where burn registers some ten operations with fusion for one element-wise kernel
//! (the host's work, not the card's, is the cost); backward, the product's gradient and the
//! bias's, its sum over the rows, where burn takes an element-wise kernel and a reduction.
//! Each way, the tensor a product reads next (the output forward, the product's gradient
//! backward) is written in that product's operand type, bf16 under `--precision bf16`: no cast
//! of its own after the kernel.

use crate::{
    element::launch_for_element,
    fusion_op::{register_kernel_typed, Launch},
    grid::{unit_grid, unit_piece},
    reduce::{column_blocks, lane_rows, lanes_total, Column, COLUMNS, LANES, ROWS_AT_ONCE},
};
use burn::tensor::{ops::FloatTensor, DType, Shape};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::prelude::*;
use kernels::{GELU_CUBIC, GELU_SQRT_2_OVER_PI};

/// GELU of `x`.
#[cube]
pub(crate) fn gelu_tanh<F: Float>(x: F) -> F {
    let inner = F::new(GELU_SQRT_2_OVER_PI) * (x + F::new(GELU_CUBIC) * x * x * x);
    F::new(0.5) * x * (F::new(1.0) + F::tanh(inner))
}

/// GELU's derivative at `x`: `(1 + t)/2 + x/2 · (1 − t²) · √(2/π) · (1 + 3 · 0.044715 x²)` with
/// `t = tanh(√(2/π) · (x + 0.044715 x³))`, as PyTorch computes it.
#[cube]
fn gelu_derivative<F: Float>(x: F) -> F {
    let squared = x * x;
    let t = F::tanh(F::new(GELU_SQRT_2_OVER_PI) * (x + F::new(GELU_CUBIC) * x * squared));
    let inner_derivative = F::new(GELU_SQRT_2_OVER_PI) * (F::new(1.0) + F::new(3.0 * GELU_CUBIC) * squared);
    F::new(0.5) * (F::new(1.0) + t) + F::new(0.5) * x * (F::new(1.0) - t * t) * inner_derivative
}

pub trait BiasGelu: burn::tensor::backend::Backend {
    /// `gelu(product + bias)` for `product` `[rows, d]` and `bias` `[d]`, written in the type
    /// `output` (the product's, bf16 or f16).
    fn bias_gelu(product: FloatTensor<Self>, bias: FloatTensor<Self>, output: DType) -> FloatTensor<Self>;

    /// The gradients of `gelu(product + bias)`'s inputs from its output's, `d_hidden`, for
    /// `product` `[rows, d]` and `bias` `[d]`: the product's, `d_hidden · gelu'(product +
    /// bias)`, written in the type `d_product` (the product's, bf16 or f16), and the bias's,
    /// the sum of those over the rows before rounding, in the product's type.
    fn bias_gelu_backward(
        product: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        d_hidden: FloatTensor<Self>,
        d_product: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// A unit an element of `hidden`, `[rows, d]`, rounded to `O`.
#[cube(launch)]
fn bias_gelu_kernel<F: Float, O: Float>(product: &Tensor<F>, bias: &Tensor<F>, hidden: &mut Tensor<O>) {
    let index = unit_piece() as usize;
    if index < hidden.len() {
        let d = hidden.shape(1);
        let (row, column) = (index / d, index % d);
        let x = product[row * product.stride(0) + column * product.stride(1)] + bias[column * bias.stride(0)];
        hidden[index] = O::cast_from(gelu_tanh::<F>(x));
    }
}

/// One cube a block of [`COLUMNS`] columns, its [`LANES`] lanes sharing out the rows: each unit
/// writes the product's gradient for its rows of its column (rounded to `P`) and sums them,
/// then the lanes' sums are added for the bias's.
#[cube(launch)]
fn bias_gelu_backward_kernel<F: Float, P: Float>(
    product: &Tensor<F>,
    bias: &Tensor<F>,
    d_hidden: &Tensor<F>,
    d_product: &mut Tensor<P>,
    d_bias: &mut Tensor<F>,
    #[comptime] columns: usize,
    #[comptime] lanes: usize,
) {
    let column = CUBE_POS_X as usize * columns + UNIT_POS_X as usize;
    let (rows, d) = (d_hidden.shape(0), d_hidden.shape(1));
    let mut partial = SharedMemory::<F>::new(columns * lanes);

    let mut sum = F::new(0.0);
    if column < d {
        let b = bias[column * bias.stride(0)];
        let (product_column, d_hidden_column) = (Column::of::<F>(product, column), Column::of::<F>(d_hidden, column));
        let mut first = UNIT_POS_Y as usize;
        while first < rows {
            let products = lane_rows::<F>(product, &product_column, first, lanes);
            let d_hiddens = lane_rows::<F>(d_hidden, &d_hidden_column, first, lanes);
            #[unroll]
            for n in 0..ROWS_AT_ONCE {
                let row = first + n * lanes;
                if row < rows {
                    let gradient = d_hiddens[n] * gelu_derivative::<F>(products[n] + b);
                    d_product[row * d + column] = P::cast_from(gradient);
                    sum += gradient;
                }
            }
            first += ROWS_AT_ONCE * lanes;
        }
    }
    let total = lanes_total::<F>(&mut partial, sum, columns, lanes);
    if UNIT_POS_Y == 0 && column < d {
        d_bias[column] = total;
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> BiasGelu for CubeBackend<R, F, I, BT> {
    fn bias_gelu(product: FloatTensor<Self>, bias: FloatTensor<Self>, output: DType) -> FloatTensor<Self> {
        let launch = launch_for_element!(bias_gelu_kernel::<F, R>, output, product.dtype, "GELU: the output");
        let shape = product.meta.shape().clone();
        let hidden = empty_device_contiguous_dtype(product.client.clone(), product.device.clone(), shape, output);
        let (cubes, units) = unit_grid(hidden.meta.num_elements());
        launch(
            &product.client.clone(),
            cubes,
            units,
            product.into_tensor_arg(),
            bias.into_tensor_arg(),
            hidden.clone().into_tensor_arg(),
        );
        hidden
    }

    fn bias_gelu_backward(
        product: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        d_hidden: FloatTensor<Self>,
        d_product: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let launch = launch_for_element!(
            bias_gelu_backward_kernel::<F, R>,
            d_product,
            product.dtype,
            "GELU: the product's gradient"
        );
        let [rows, d] = d_hidden.meta.shape().dims::<2>();
        let empty = |shape: Shape, dtype| {
            empty_device_contiguous_dtype(d_hidden.client.clone(), d_hidden.device.clone(), shape, dtype)
        };
        let (d_product, d_bias) = (empty(Shape::new([rows, d]), d_product), empty(Shape::new([d]), product.dtype));
        let (cubes, units) = column_blocks(d);
        launch(
            &d_hidden.client.clone(),
            cubes,
            units,
            product.into_tensor_arg(),
            bias.into_tensor_arg(),
            d_hidden.into_tensor_arg(),
            d_product.clone().into_tensor_arg(),
            d_bias.clone().into_tensor_arg(),
            COLUMNS as usize,
            LANES as usize,
        );
        (d_product, d_bias)
    }
}

impl<B: FusionBackend + BiasGelu> BiasGelu for Fusion<B> {
    fn bias_gelu(product: FloatTensor<Self>, bias: FloatTensor<Self>, output: DType) -> FloatTensor<Self> {
        let outputs = [(product.shape.clone(), output)];
        let launch: Launch<B, _> = |&output, mut inputs| vec![B::bias_gelu(inputs.float(), inputs.float(), output)];
        let [hidden] = register_kernel_typed::<B, _>("bias_gelu", vec![product, bias], &outputs, output, launch)
            .try_into()
            .expect("one output");
        hidden
    }

    fn bias_gelu_backward(
        product: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        d_hidden: FloatTensor<Self>,
        d_product: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [_, d] = d_hidden.shape.dims::<2>();
        let outputs = [(d_hidden.shape.clone(), d_product), (Shape::new([d]), product.dtype)];
        let launch: Launch<B, _> = |&d_product, mut inputs| {
            let (product, bias, d_hidden) = (inputs.float(), inputs.float(), inputs.float());
            let (d_product, d_bias) = B::bias_gelu_backward(product, bias, d_hidden, d_product);
            vec![d_product, d_bias]
        };
        let inputs = vec![product, bias, d_hidden];
        let [d_product, d_bias] =
            register_kernel_typed::<B, _>("bias_gelu_backward", inputs, &outputs, d_product, launch)
                .try_into()
                .expect("two outputs");
        (d_product, d_bias)
    }
}
