//! LayerNorm over the rows of a matrix in one launch, keeping what its backward pass needs, the
//! gradient of its input in one launch, and those of γ and β together in one: burn 0.21 takes
//! two reductions and a few element-wise kernels for each of the first two, and a reduction for
//! each of the last.

use crate::reduce::cube_sum;
use burn::tensor::{ops::FloatTensor, Shape};
use burn_cubecl::{ops::numeric::empty_device_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::{prelude::*, CubeCount, CubeDim};
use std::marker::PhantomData;

/// Units of a cube, one cube a row: GPT-2's rows are 768 to 1,600 wide. A power of two (the
/// sums halve it).
const UNITS: u32 = 256;

/// Most cubes along one dimension of a launch that every backend takes (wgpu's limit).
const MAX_CUBES_X: usize = 65_535;

/// One cube for each of `rows` rows, in rows of at most [`MAX_CUBES_X`] cubes: the kernels
/// take cube `(x, y)` for row `y · CUBE_COUNT_X + x`.
fn cube_a_row(rows: usize) -> CubeCount {
    let cubes_x = rows.clamp(1, MAX_CUBES_X);
    CubeCount::Static(cubes_x as u32, rows.div_ceil(cubes_x) as u32, 1)
}

pub trait LayerNormRows: burn::tensor::backend::Backend {
    /// `(x − mean) / √(variance + ε) · γ + β` over each row of `x` `[rows, d]` (the mean and
    /// variance of the row; γ and β `[d]`), with the rows normalised (before γ and β) and each
    /// row's `1 / √(variance + ε)` `[rows, 1]`: `(output, normalized, inverse_deviation)`.
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The gradient of LayerNorm's input `x` from that of its output, `d_y` `[rows, d]`, and
    /// what the forward pass kept (`normalized`, `inverse_deviation`) with γ: with
    /// `g = d_y · γ`, `(g − mean(g) − normalized · mean(g · normalized)) · inverse_deviation`
    /// (means over each row).
    fn layer_norm_rows_backward(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        inverse_deviation: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The gradients of γ and β from that of the output, `d_y` `[rows, d]`, and the normalised
    /// rows: `(Σ_rows d_y · normalized, Σ_rows d_y)`, each `[d]`.
    fn layer_norm_rows_parameter_gradients(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// Columns of a cube of [`layer_norm_parameter_gradients_kernel`], and its lanes of rows: 32
/// neighbouring columns are read together, 8 lanes share out the rows.
const COLUMNS: u32 = 32;
const LANES: u32 = 8;

/// One cube a row: its units sum the row's values, then the squares of their distances to the
/// mean (two passes, as burn computes the variance), then write the row out.
#[cube(launch)]
fn layer_norm_kernel<F: Float>(
    x: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    output: &mut Tensor<F>,
    normalized: &mut Tensor<F>,
    inverse_deviation: &mut Tensor<F>,
    epsilon: f32,
    #[comptime] units: usize,
) {
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    if row >= x.shape(0) {
        terminate!();
    }
    let d = x.shape(1);
    let unit = UNIT_POS_X as usize;
    let start = row * x.stride(0);
    let mut partial = SharedMemory::<F>::new(units);

    let mut sum = F::new(0.0);
    let mut i = unit;
    while i < d {
        sum += x[start + i * x.stride(1)];
        i += units;
    }
    let mean = cube_sum::<F>(&mut partial, sum) / F::cast_from(d as u32);

    let mut squares = F::new(0.0);
    let mut i = unit;
    while i < d {
        let centered = x[start + i * x.stride(1)] - mean;
        squares += centered * centered;
        i += units;
    }
    let variance = cube_sum::<F>(&mut partial, squares) / F::cast_from(d as u32);
    let inverse = F::new(1.0) / F::sqrt(variance + F::cast_from(epsilon));

    let mut i = unit;
    while i < d {
        let n = (x[start + i * x.stride(1)] - mean) * inverse;
        normalized[row * normalized.stride(0) + i * normalized.stride(1)] = n;
        output[row * output.stride(0) + i * output.stride(1)] =
            n * gamma[i * gamma.stride(0)] + beta[i * beta.stride(0)];
        i += units;
    }
    if unit == 0 {
        inverse_deviation[row * inverse_deviation.stride(0)] = inverse;
    }
}

/// One cube a row: its units sum `g` and `g · normalized` over the row, then write the row of
/// `d_x`.
#[cube(launch)]
fn layer_norm_backward_kernel<F: Float>(
    d_y: &Tensor<F>,
    normalized: &Tensor<F>,
    inverse_deviation: &Tensor<F>,
    gamma: &Tensor<F>,
    d_x: &mut Tensor<F>,
    #[comptime] units: usize,
) {
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    if row >= d_y.shape(0) {
        terminate!();
    }
    let d = d_y.shape(1);
    let unit = UNIT_POS_X as usize;
    let mut partial = SharedMemory::<F>::new(units);

    let mut g_sum = F::new(0.0);
    let mut gn_sum = F::new(0.0);
    let mut i = unit;
    while i < d {
        let g = d_y[row * d_y.stride(0) + i * d_y.stride(1)] * gamma[i * gamma.stride(0)];
        g_sum += g;
        gn_sum += g * normalized[row * normalized.stride(0) + i * normalized.stride(1)];
        i += units;
    }
    let g_mean = cube_sum::<F>(&mut partial, g_sum) / F::cast_from(d as u32);
    let gn_mean = cube_sum::<F>(&mut partial, gn_sum) / F::cast_from(d as u32);
    let inverse = inverse_deviation[row * inverse_deviation.stride(0)];

    let mut i = unit;
    while i < d {
        let g = d_y[row * d_y.stride(0) + i * d_y.stride(1)] * gamma[i * gamma.stride(0)];
        let n = normalized[row * normalized.stride(0) + i * normalized.stride(1)];
        d_x[row * d_x.stride(0) + i * d_x.stride(1)] = (g - g_mean - n * gn_mean) * inverse;
        i += units;
    }
}

/// One cube a block of [`COLUMNS`] columns: lane `y` sums rows `y`, `y + LANES`, … of each
/// column, then lane 0 adds the lanes' sums. burn's column sums run one thread a column over
/// every row, a few warps for the whole GPU; this is one launch for both gradients.
#[cube(launch)]
fn layer_norm_parameter_gradients_kernel<F: Float>(
    d_y: &Tensor<F>,
    normalized: &Tensor<F>,
    d_gamma: &mut Tensor<F>,
    d_beta: &mut Tensor<F>,
    #[comptime] columns: usize,
    #[comptime] lanes: usize,
) {
    let column = CUBE_POS_X as usize * columns + UNIT_POS_X as usize;
    let lane = UNIT_POS_Y as usize;
    let (rows, d) = (d_y.shape(0), d_y.shape(1));
    let mut gamma_partial = SharedMemory::<F>::new(columns * lanes);
    let mut beta_partial = SharedMemory::<F>::new(columns * lanes);

    let mut gamma_sum = F::new(0.0);
    let mut beta_sum = F::new(0.0);
    if column < d {
        let mut row = lane;
        while row < rows {
            let g = d_y[row * d_y.stride(0) + column * d_y.stride(1)];
            gamma_sum += g * normalized[row * normalized.stride(0) + column * normalized.stride(1)];
            beta_sum += g;
            row += lanes;
        }
    }
    let slot = lane * columns + UNIT_POS_X as usize;
    gamma_partial[slot] = gamma_sum;
    beta_partial[slot] = beta_sum;
    sync_cube();

    if lane == 0 && column < d {
        let mut gamma_total = F::new(0.0);
        let mut beta_total = F::new(0.0);
        for other in 0..lanes {
            gamma_total += gamma_partial[other * columns + UNIT_POS_X as usize];
            beta_total += beta_partial[other * columns + UNIT_POS_X as usize];
        }
        d_gamma[column * d_gamma.stride(0)] = gamma_total;
        d_beta[column * d_beta.stride(0)] = beta_total;
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> LayerNormRows for CubeBackend<R, F, I, BT> {
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [rows, d] = x.meta.shape().dims::<2>();
        let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
        let empty = |shape: [usize; 2]| empty_device_dtype(client.clone(), device.clone(), Shape::new(shape), dtype);
        let (output, normalized, inverse_deviation) = (empty([rows, d]), empty([rows, d]), empty([rows, 1]));
        layer_norm_kernel::launch::<F, R>(
            &client,
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            normalized.clone().into_tensor_arg(),
            inverse_deviation.clone().into_tensor_arg(),
            epsilon as f32,
            UNITS as usize,
        );
        (output, normalized, inverse_deviation)
    }

    fn layer_norm_rows_backward(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        inverse_deviation: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [rows, d] = d_y.meta.shape().dims::<2>();
        let client = d_y.client.clone();
        let d_x = empty_device_dtype(client.clone(), d_y.device.clone(), Shape::new([rows, d]), d_y.dtype);
        layer_norm_backward_kernel::launch::<F, R>(
            &client,
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            d_y.into_tensor_arg(),
            normalized.into_tensor_arg(),
            inverse_deviation.into_tensor_arg(),
            gamma.into_tensor_arg(),
            d_x.clone().into_tensor_arg(),
            UNITS as usize,
        );
        d_x
    }

    fn layer_norm_rows_parameter_gradients(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [_, d] = d_y.meta.shape().dims::<2>();
        let client = d_y.client.clone();
        let empty = || empty_device_dtype(client.clone(), d_y.device.clone(), Shape::new([d]), d_y.dtype);
        let (d_gamma, d_beta) = (empty(), empty());
        layer_norm_parameter_gradients_kernel::launch::<F, R>(
            &client,
            CubeCount::Static(d.div_ceil(COLUMNS as usize) as u32, 1, 1),
            CubeDim::new_2d(COLUMNS, LANES),
            d_y.into_tensor_arg(),
            normalized.into_tensor_arg(),
            d_gamma.clone().into_tensor_arg(),
            d_beta.clone().into_tensor_arg(),
            COLUMNS as usize,
            LANES as usize,
        );
        (d_gamma, d_beta)
    }
}

impl<B: FusionBackend + LayerNormRows> LayerNormRows for Fusion<B> {
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Clone, Debug)]
        struct LayerNormOp<B> {
            desc: CustomOpIr,
            epsilon: f64,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + LayerNormRows> Operation<B::FusionRuntime> for LayerNormOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([x, gamma, beta], [output, normalized, inverse_deviation]) = self.desc.as_fixed();
                let results = B::layer_norm_rows(
                    handles.get_float_tensor::<B>(x),
                    handles.get_float_tensor::<B>(gamma),
                    handles.get_float_tensor::<B>(beta),
                    self.epsilon,
                );
                handles.register_float_tensor::<B>(&output.id, results.0);
                handles.register_float_tensor::<B>(&normalized.id, results.1);
                handles.register_float_tensor::<B>(&inverse_deviation.id, results.2);
            }
        }

        let client = x.client.clone();
        let [rows, d] = x.shape.dims::<2>();
        let streams = OperationStreams::with_inputs([&x, &gamma, &beta]);
        let output = |shape: [usize; 2]| TensorIr::uninit(client.create_empty_handle(), Shape::new(shape), x.dtype);
        let outputs = [output([rows, d]), output([rows, d]), output([rows, 1])];
        let desc = CustomOpIr::new("layer_norm_rows", &[x.into_ir(), gamma.into_ir(), beta.into_ir()], &outputs);
        let [output, normalized, inverse_deviation] = client
            .register(
                streams,
                OperationIr::Custom(desc.clone()),
                LayerNormOp::<B> { desc, epsilon, backend: PhantomData },
            )
            .outputs();
        (output, normalized, inverse_deviation)
    }

    fn layer_norm_rows_backward(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
        inverse_deviation: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Clone, Debug)]
        struct LayerNormBackwardOp<B> {
            desc: CustomOpIr,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + LayerNormRows> Operation<B::FusionRuntime> for LayerNormBackwardOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([d_y, normalized, inverse_deviation, gamma], [d_x]) = self.desc.as_fixed();
                let gradient = B::layer_norm_rows_backward(
                    handles.get_float_tensor::<B>(d_y),
                    handles.get_float_tensor::<B>(normalized),
                    handles.get_float_tensor::<B>(inverse_deviation),
                    handles.get_float_tensor::<B>(gamma),
                );
                handles.register_float_tensor::<B>(&d_x.id, gradient);
            }
        }

        let client = d_y.client.clone();
        let streams = OperationStreams::with_inputs([&d_y, &normalized, &inverse_deviation, &gamma]);
        let d_x = TensorIr::uninit(client.create_empty_handle(), d_y.shape.clone(), d_y.dtype);
        let inputs = [d_y.into_ir(), normalized.into_ir(), inverse_deviation.into_ir(), gamma.into_ir()];
        let desc = CustomOpIr::new("layer_norm_rows_backward", &inputs, &[d_x]);
        client
            .register(
                streams,
                OperationIr::Custom(desc.clone()),
                LayerNormBackwardOp::<B> { desc, backend: PhantomData },
            )
            .output()
    }

    fn layer_norm_rows_parameter_gradients(
        d_y: FloatTensor<Self>,
        normalized: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Clone, Debug)]
        struct ParameterGradientsOp<B> {
            desc: CustomOpIr,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + LayerNormRows> Operation<B::FusionRuntime> for ParameterGradientsOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([d_y, normalized], [d_gamma, d_beta]) = self.desc.as_fixed();
                let (gamma, beta) = B::layer_norm_rows_parameter_gradients(
                    handles.get_float_tensor::<B>(d_y),
                    handles.get_float_tensor::<B>(normalized),
                );
                handles.register_float_tensor::<B>(&d_gamma.id, gamma);
                handles.register_float_tensor::<B>(&d_beta.id, beta);
            }
        }

        let client = d_y.client.clone();
        let d = d_y.shape.dims::<2>()[1];
        let streams = OperationStreams::with_inputs([&d_y, &normalized]);
        let output = || TensorIr::uninit(client.create_empty_handle(), Shape::new([d]), d_y.dtype);
        let outputs = [output(), output()];
        let desc =
            CustomOpIr::new("layer_norm_rows_parameter_gradients", &[d_y.into_ir(), normalized.into_ir()], &outputs);
        let [d_gamma, d_beta] = client
            .register(
                streams,
                OperationIr::Custom(desc.clone()),
                ParameterGradientsOp::<B> { desc, backend: PhantomData },
            )
            .outputs();
        (d_gamma, d_beta)
    }
}
