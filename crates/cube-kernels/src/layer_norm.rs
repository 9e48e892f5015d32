//! LayerNorm over the rows of a matrix in one launch, keeping what its backward pass needs, the
//! gradient of its input in one launch, and those of γ and β together in one: burn 0.21 takes
//! two reductions and a few element-wise kernels for each of the first two, and a reduction for
//! each of the last.
//!
//! Each of a block's LayerNorms follows a residual branch, `x = residual + dropout(product +
//! bias)`: with that branch ([`Branch`]) the forward kernel adds it first (dropout's mask drawn
//! inside), the input's gradient takes the residual stream's gradient from later layers as
//! well, and the parameter kernel also gives the branch's gradients (the product's, and the
//! bias's, a sum over the rows like γ's and β's). burn takes a mask, an element-wise kernel, an
//! add of the two gradients, another element-wise kernel and a reduction for those.
//!
//! The output is written in the type of the product that reads it, bf16 under `--precision
//! bf16`, where burn would write it in f32 and round it in a kernel of its own before each
//! q/k/v, MLP and LM-head product; so is the gradient of a branch's product, which that
//! product's backward pass reads.

use crate::{
    draw::{mask_args, Draw, DropoutDraw, MaskArgs},
    element::launch_for_element,
    fusion_op::{register_kernel, register_kernel_typed, Launch},
    reduce::{
        column_blocks, cube_a_row, cube_row, cube_sum, cube_sums, lane_rows, lanes_total, Column, COLUMNS, LANES,
        ROWS_AT_ONCE,
    },
};
use burn::tensor::{ops::FloatTensor, DType, Shape};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
    FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeDim};

/// Units of a cube, one cube a row: GPT-2's rows are 768 to 1,600 wide. A power of two (the
/// sums halve it).
const UNITS: u32 = 256;

/// A residual branch's end, added to the stream before the LayerNorm: `residual +
/// dropout(product + bias)`, with `product` `[rows, d]` and `bias` `[d]`.
#[derive(Clone, Debug)]
pub struct Branch<T> {
    pub product: T,
    pub bias: T,
    pub dropout: Option<DropoutDraw>,
}

/// [`LayerNormRows::layer_norm_rows`]'s results.
#[derive(Clone, Debug)]
pub struct Normed<T> {
    /// In the type asked for.
    pub output: T,
    /// The rows normalised, before γ and β.
    pub normalized: T,
    /// Each row's `1 / √(variance + ε)`, `[rows, 1]`.
    pub inverse_deviation: T,
    /// With a branch, the stream it was added to (LayerNorm's input).
    pub stream: Option<T>,
}

/// [`LayerNormRows::layer_norm_rows_parameter_gradients`]'s results.
#[derive(Clone, Debug)]
pub struct ParameterGradients<T> {
    pub gamma: T,
    pub beta: T,
    /// With a branch, the gradients of its product and its bias.
    pub branch: Option<(T, T)>,
}

pub trait LayerNormRows: burn::tensor::backend::Backend {
    /// `(x − mean) / √(variance + ε) · γ + β` over each row of `x` `[rows, d]` (the mean and
    /// variance of the row; γ and β `[d]`), with what its backward pass needs. With a `branch`,
    /// `x` is the residual stream it is added to first, and the sum is returned too. The
    /// output is written in the type `output` (x's, bf16 or f16), the rest in x's.
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        branch: Option<Branch<FloatTensor<Self>>>,
        output: DType,
    ) -> Normed<FloatTensor<Self>>;

    /// The gradient of LayerNorm's input `x` from that of its output, `d_y` `[rows, d]`, and
    /// what the forward pass kept (`normalized`, `inverse_deviation`) with γ: with
    /// `g = d_y · γ`, `(g − mean(g) − normalized · mean(g · normalized)) · inverse_deviation`
    /// (means over each row), plus `d_stream`, the gradient `x` gets from elsewhere (the
    /// residual stream's, from the layers after), where there is one.
    fn layer_norm_rows_backward(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        inverse_deviation: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        d_stream: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self>;

    /// The gradients of γ and β from that of the output, `d_y` `[rows, d]`, and the normalised
    /// rows: `Σ_rows d_y · normalized` and `Σ_rows d_y`, each `[d]`. With a branch before the
    /// LayerNorm, `d_x`, the gradient of its input (all of it: see
    /// [`layer_norm_rows_backward`]), the branch's dropout and a type: the product's gradient
    /// `d_x · dropout's mask and scale`, written in that type (`d_x`'s, or bf16 or f16 for a
    /// product of 16-bit operands, which would round it), and the bias's, the sum of those
    /// over the rows before rounding.
    ///
    /// [`layer_norm_rows_backward`]: LayerNormRows::layer_norm_rows_backward
    fn layer_norm_rows_parameter_gradients(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        branch: Option<(FloatTensor<Self>, Option<DropoutDraw>, DType)>,
    ) -> ParameterGradients<FloatTensor<Self>>;
}

/// One cube a row: its units sum the row's values, then the squares of their distances to the
/// mean (two passes, as burn computes the variance), then write the row out. With a `branch`,
/// the row's values are `x + dropout(product + bias)`, written to `stream` in the first pass
/// and read back from it (each unit reads only what it wrote). The output is rounded to `O`.
#[cube(launch)]
fn layer_norm_kernel<F: Float, O: Float>(
    x: &Tensor<F>,
    product: &Tensor<F>,
    bias: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    output: &mut Tensor<O>,
    normalized: &mut Tensor<F>,
    inverse_deviation: &mut Tensor<F>,
    stream: &mut Tensor<F>,
    epsilon: f32,
    mask: &MaskArgs,
    #[comptime] units: usize,
    #[comptime] branch: bool,
    #[comptime] dropout: bool,
) {
    let row = cube_row();
    if row >= x.shape(0) {
        terminate!();
    }
    let d = x.shape(1);
    let unit = UNIT_POS_X as usize;
    let start = row * x.stride(0);
    let mut partial = SharedMemory::<F>::new(units);
    let mut draw = Draw::new(mask, row * d);

    let mut sum = F::new(0.0);
    let mut i = unit;
    while i < d {
        let mut value = x[start + i * x.stride(1)];
        if branch {
            let added = product[row * product.stride(0) + i * product.stride(1)] + bias[i * bias.stride(0)];
            value += added * draw.keep_scale::<F>(i, dropout);
            stream[row * d + i] = value;
        }
        sum += value;
        i += units;
    }
    let mean = cube_sum::<F>(&mut partial, sum) / F::cast_from(d as u32);

    let mut squares = F::new(0.0);
    let mut i = unit;
    while i < d {
        let centered = row_value::<F>(x, stream, start, row * d, i, branch) - mean;
        squares += centered * centered;
        i += units;
    }
    let variance = cube_sum::<F>(&mut partial, squares) / F::cast_from(d as u32);
    let inverse = F::new(1.0) / F::sqrt(variance + F::cast_from(epsilon));

    let mut i = unit;
    while i < d {
        let n = (row_value::<F>(x, stream, start, row * d, i, branch) - mean) * inverse;
        normalized[row * normalized.stride(0) + i * normalized.stride(1)] = n;
        output[row * output.stride(0) + i * output.stride(1)] =
            O::cast_from(n * gamma[i * gamma.stride(0)] + beta[i * beta.stride(0)]);
        i += units;
    }
    if unit == 0 {
        inverse_deviation[row * inverse_deviation.stride(0)] = inverse;
    }
}

/// Element `i` of a row of LayerNorm's input: of `x` (from `x_start`), or with a branch of the
/// stream the first pass wrote (a contiguous row from `stream_start`).
#[cube]
fn row_value<F: Float>(
    x: &Tensor<F>,
    stream: &Tensor<F>,
    x_start: usize,
    stream_start: usize,
    i: usize,
    #[comptime] branch: bool,
) -> F {
    if branch {
        stream[stream_start + i]
    } else {
        x[x_start + i * x.stride(1)]
    }
}

/// One cube a row: its units sum `g` and `g · normalized` over the row, then write the row of
/// `d_x`, plus the row of `d_stream` where there is one.
#[cube(launch)]
fn layer_norm_backward_kernel<F: Float>(
    d_y: &Tensor<F>,
    normalized: &Tensor<F>,
    inverse_deviation: &Tensor<F>,
    gamma: &Tensor<F>,
    d_stream: &Tensor<F>,
    d_x: &mut Tensor<F>,
    #[comptime] units: usize,
    #[comptime] stream: bool,
) {
    let row = cube_row();
    if row >= d_y.shape(0) {
        terminate!();
    }
    let d = d_y.shape(1);
    let unit = UNIT_POS_X as usize;
    let mut partial = SharedMemory::<F>::new(2 * units);

    // The strides read once: CubeCL keeps them in memory, and a load of one in the loops put
    // a wait before each element's address.
    let (d_y_row, d_y_column) = (d_y.stride(0) * row, d_y.stride(1));
    let (normalized_row, normalized_column) = (normalized.stride(0) * row, normalized.stride(1));
    let gamma_column = gamma.stride(0);
    let mut g_sum = F::new(0.0);
    let mut gn_sum = F::new(0.0);
    let mut i = unit;
    while i < d {
        let g = d_y[d_y_row + i * d_y_column] * gamma[i * gamma_column];
        g_sum += g;
        gn_sum += g * normalized[normalized_row + i * normalized_column];
        i += units;
    }
    // Both sums in one tree of barriers.
    let mut sums = Array::<F>::new(2usize);
    sums[0] = g_sum;
    sums[1] = gn_sum;
    let means = cube_sums::<F>(&mut partial, &sums, 2usize);
    let g_mean = means[0] / F::cast_from(d as u32);
    let gn_mean = means[1] / F::cast_from(d as u32);
    let inverse = inverse_deviation[row * inverse_deviation.stride(0)];

    let (d_stream_row, d_stream_column) = (d_stream.stride(0) * row, d_stream.stride(1));
    let (d_x_row, d_x_column) = (d_x.stride(0) * row, d_x.stride(1));
    let mut i = unit;
    while i < d {
        let g = d_y[d_y_row + i * d_y_column] * gamma[i * gamma_column];
        let n = normalized[normalized_row + i * normalized_column];
        let mut gradient = (g - g_mean - n * gn_mean) * inverse;
        if stream {
            gradient += d_stream[d_stream_row + i * d_stream_column];
        }
        d_x[d_x_row + i * d_x_column] = gradient;
        i += units;
    }
}

/// One cube a block of [`COLUMNS`] columns: lane `y` sums rows `y`, `y + LANES`, … of each
/// column, then lane 0 adds the lanes' sums: one launch for all the gradients. With a
/// `branch`, each element of `d_x` times dropout's factor is the product's gradient, written
/// out (rounded to `P`) and summed down its column for the bias's.
#[cube(launch)]
fn layer_norm_parameter_gradients_kernel<F: Float, P: Float>(
    d_y: &Tensor<F>,
    normalized: &Tensor<F>,
    d_x: &Tensor<F>,
    d_gamma: &mut Tensor<F>,
    d_beta: &mut Tensor<F>,
    d_product: &mut Tensor<P>,
    d_bias: &mut Tensor<F>,
    mask: &MaskArgs,
    #[comptime] columns: usize,
    #[comptime] lanes: usize,
    #[comptime] branch: bool,
    #[comptime] dropout: bool,
) {
    let column = CUBE_POS_X as usize * columns + UNIT_POS_X as usize;
    let (rows, d) = (d_y.shape(0), d_y.shape(1));
    let mut partial = SharedMemory::<F>::new(columns * lanes);
    let mut draw = Draw::new(mask, 0);

    let mut gamma_sum = F::new(0.0);
    let mut beta_sum = F::new(0.0);
    let mut bias_sum = F::new(0.0);
    if column < d {
        let (d_y_column, normalized_column) = (Column::of::<F>(d_y, column), Column::of::<F>(normalized, column));
        let d_x_column = Column::of::<F>(d_x, column);
        let mut first = UNIT_POS_Y as usize;
        while first < rows {
            let gs = lane_rows::<F>(d_y, &d_y_column, first, lanes);
            let normalizeds = lane_rows::<F>(normalized, &normalized_column, first, lanes);
            #[unroll]
            for n in 0..ROWS_AT_ONCE {
                if first + n * lanes < rows {
                    gamma_sum += gs[n] * normalizeds[n];
                    beta_sum += gs[n];
                }
            }
            if branch {
                let d_xs = lane_rows::<F>(d_x, &d_x_column, first, lanes);
                #[unroll]
                for n in 0..ROWS_AT_ONCE {
                    let row = first + n * lanes;
                    if row < rows {
                        let gradient = d_xs[n] * draw.keep_scale::<F>(row * d + column, dropout);
                        d_product[row * d + column] = P::cast_from(gradient);
                        bias_sum += gradient;
                    }
                }
            }
            first += ROWS_AT_ONCE * lanes;
        }
    }
    let gamma_total = lanes_total::<F>(&mut partial, gamma_sum, columns, lanes);
    let beta_total = lanes_total::<F>(&mut partial, beta_sum, columns, lanes);
    let bias_total = lanes_total::<F>(&mut partial, bias_sum, columns, lanes);
    if UNIT_POS_Y == 0 && column < d {
        d_gamma[column * d_gamma.stride(0)] = gamma_total;
        d_beta[column * d_beta.stride(0)] = beta_total;
        if branch {
            d_bias[column] = bias_total;
        }
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> LayerNormRows for CubeBackend<R, F, I, BT> {
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        branch: Option<Branch<FloatTensor<Self>>>,
        output: DType,
    ) -> Normed<FloatTensor<Self>> {
        let [rows, d] = x.meta.shape().dims::<2>();
        let empty = empty_like(&x);
        let launch = launch_for_element!(layer_norm_kernel::<F, R>, output, x.dtype, "LayerNorm: the output");
        let output = empty_device_contiguous_dtype(x.client.clone(), x.device.clone(), Shape::new([rows, d]), output);
        let (normalized, inverse_deviation) = (empty(&[rows, d]), empty(&[rows, 1]));
        let stream = branch.is_some().then(|| empty(&[rows, d]));
        let with_branch = branch.is_some();
        let Branch { product, bias, dropout } =
            branch.unwrap_or_else(|| Branch { product: empty(&[1]), bias: empty(&[1]), dropout: None });
        launch(
            &x.client.clone(),
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            x.into_tensor_arg(),
            product.into_tensor_arg(),
            bias.into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            normalized.clone().into_tensor_arg(),
            inverse_deviation.clone().into_tensor_arg(),
            stream.clone().unwrap_or_else(|| empty(&[1])).into_tensor_arg(),
            epsilon as f32,
            mask_args(dropout),
            UNITS as usize,
            with_branch,
            dropout.is_some(),
        );
        Normed { output, normalized, inverse_deviation, stream }
    }

    fn layer_norm_rows_backward(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        inverse_deviation: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        d_stream: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let [rows, d] = d_y.meta.shape().dims::<2>();
        let empty = empty_like(&d_y);
        let d_x = empty(&[rows, d]);
        let with_stream = d_stream.is_some();
        layer_norm_backward_kernel::launch::<F, R>(
            &d_y.client.clone(),
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            d_y.into_tensor_arg(),
            normalized.into_tensor_arg(),
            inverse_deviation.into_tensor_arg(),
            gamma.into_tensor_arg(),
            d_stream.unwrap_or_else(|| empty(&[1])).into_tensor_arg(),
            d_x.clone().into_tensor_arg(),
            UNITS as usize,
            with_stream,
        );
        d_x
    }

    fn layer_norm_rows_parameter_gradients(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        branch: Option<(FloatTensor<Self>, Option<DropoutDraw>, DType)>,
    ) -> ParameterGradients<FloatTensor<Self>> {
        let [rows, d] = d_y.meta.shape().dims::<2>();
        let empty = empty_like(&d_y);
        let (d_gamma, d_beta) = (empty(&[d]), empty(&[d]));
        let with_branch = branch.is_some();
        let (d_x, dropout, product) = branch.unwrap_or_else(|| (empty(&[1]), None, d_y.dtype));
        let launch = launch_for_element!(
            layer_norm_parameter_gradients_kernel::<F, R>,
            product,
            d_y.dtype,
            "LayerNorm's gradients: the branch product's"
        );
        let product_shape = Shape::from(if with_branch { vec![rows, d] } else { vec![1] });
        let d_product = empty_device_contiguous_dtype(d_y.client.clone(), d_y.device.clone(), product_shape, product);
        let d_bias = empty(&[if with_branch { d } else { 1 }]);
        let (cubes, units) = column_blocks(d);
        launch(
            &d_y.client.clone(),
            cubes,
            units,
            d_y.into_tensor_arg(),
            normalized.into_tensor_arg(),
            d_x.into_tensor_arg(),
            d_gamma.clone().into_tensor_arg(),
            d_beta.clone().into_tensor_arg(),
            d_product.clone().into_tensor_arg(),
            d_bias.clone().into_tensor_arg(),
            mask_args(dropout),
            COLUMNS as usize,
            LANES as usize,
            with_branch,
            dropout.is_some(),
        );
        ParameterGradients { gamma: d_gamma, beta: d_beta, branch: with_branch.then_some((d_product, d_bias)) }
    }
}

/// Uninitialised tensors of `like`'s device and type (one element where a kernel takes a tensor
/// it does not touch).
fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>) -> impl Fn(&[usize]) -> CubeTensor<R> {
    let (client, device, dtype) = (like.client.clone(), like.device.clone(), like.dtype);
    move |shape| empty_device_contiguous_dtype(client.clone(), device.clone(), Shape::from(shape.to_vec()), dtype)
}

/// Each operation's kernel runs when fusion's stream reaches it, after the operations it reads.
impl<B: FusionBackend + LayerNormRows> LayerNormRows for Fusion<B> {
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        branch: Option<Branch<FloatTensor<Self>>>,
        output: DType,
    ) -> Normed<FloatTensor<Self>> {
        let ([rows, d], dtype) = (x.shape.dims::<2>(), x.dtype);
        // With a branch, its dropout; the inputs are x, γ, β, then the branch's product and bias.
        let dropout = branch.as_ref().map(|branch| branch.dropout);
        let mut inputs = vec![x, gamma, beta];
        inputs.extend(branch.into_iter().flat_map(|branch| [branch.product, branch.bias]));
        let mut outputs =
            vec![(Shape::new([rows, d]), output), (Shape::new([rows, d]), dtype), (Shape::new([rows, 1]), dtype)];
        outputs.extend(dropout.map(|_| (Shape::new([rows, d]), dtype)));
        type Args = (f64, Option<Option<DropoutDraw>>, DType);
        let launch: Launch<B, _> = |&(epsilon, dropout, output): &Args, mut inputs| {
            let (x, gamma, beta) = (inputs.float(), inputs.float(), inputs.float());
            let branch = dropout.map(|dropout| Branch { product: inputs.float(), bias: inputs.float(), dropout });
            let normed = B::layer_norm_rows(x, gamma, beta, epsilon, branch, output);
            [Some(normed.output), Some(normed.normalized), Some(normed.inverse_deviation), normed.stream]
                .into_iter()
                .flatten()
                .collect()
        };
        let mut results =
            register_kernel_typed::<B, _>("layer_norm_rows", inputs, &outputs, (epsilon, dropout, output), launch)
                .into_iter();
        let mut result = || results.next().expect("the outputs registered");
        let (output, normalized, inverse_deviation) = (result(), result(), result());
        Normed { output, normalized, inverse_deviation, stream: dropout.map(|_| result()) }
    }

    fn layer_norm_rows_backward(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        inverse_deviation: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        d_stream: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let shape = d_y.shape.clone();
        let mut inputs = vec![d_y, normalized, inverse_deviation, gamma];
        inputs.extend(d_stream);
        let launch: Launch<B, _> = |&(), mut inputs| {
            let (d_y, normalized, inverse_deviation, gamma) =
                (inputs.float(), inputs.float(), inputs.float(), inputs.float());
            vec![B::layer_norm_rows_backward(d_y, normalized, inverse_deviation, gamma, inputs.floats().next())]
        };
        let [d_x] = register_kernel::<B, _>("layer_norm_rows_backward", inputs, &[shape], (), launch)
            .try_into()
            .expect("one output");
        d_x
    }

    fn layer_norm_rows_parameter_gradients(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        branch: Option<(FloatTensor<Self>, Option<DropoutDraw>, DType)>,
    ) -> ParameterGradients<FloatTensor<Self>> {
        let ([rows, d], dtype) = (d_y.shape.dims::<2>(), d_y.dtype);
        // With a branch, its dropout and product's type; the inputs are d_y, the normalised
        // rows, then d_x.
        let branch_args = branch.as_ref().map(|&(_, dropout, product)| (dropout, product));
        let mut inputs = vec![d_y, normalized];
        inputs.extend(branch.map(|(d_x, _, _)| d_x));
        let mut outputs = vec![(Shape::new([d]), dtype), (Shape::new([d]), dtype)];
        if let Some((_, product)) = branch_args {
            outputs.extend([(Shape::new([rows, d]), product), (Shape::new([d]), dtype)]);
        }
        let launch: Launch<B, _> = |&branch: &Option<(Option<DropoutDraw>, DType)>, mut inputs| {
            let (d_y, normalized) = (inputs.float(), inputs.float());
            let branch = branch.map(|(dropout, product)| (inputs.float(), dropout, product));
            let gradients = B::layer_norm_rows_parameter_gradients(d_y, normalized, branch);
            let branch = gradients.branch.into_iter().flat_map(|(product, bias)| [product, bias]);
            [gradients.gamma, gradients.beta].into_iter().chain(branch).collect()
        };
        let mut results =
            register_kernel_typed::<B, _>("layer_norm_rows_parameter_gradients", inputs, &outputs, branch_args, launch)
                .into_iter();
        let mut result = || results.next().expect("the outputs registered");
        let (gamma, beta) = (result(), result());
        let branch = branch_args.map(|_| (result(), result()));
        ParameterGradients { gamma, beta, branch }
    }
}
