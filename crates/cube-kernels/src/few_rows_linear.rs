//! A linear layer on a few rows, `x · W + b` (decoding: one row a sample), in one launch with
//! what surrounds it in a GPT-2 block: the LayerNorm of its input before, GELU or the residual
//! add after. burn 0.21 runs the product as a general, tiled matrix product and the LayerNorm,
//! bias, GELU and add as kernels of their own; at a few rows the product only streams `W` once
//! a block of rows (from the cache after the first block), and the rest costs less than a
//! launch. `W` may be stored narrower than the rows (bf16 weights for sampling: half the bytes
//! to stream); the rows are then rounded to its type before each product, as an autocast
//! matrix product rounds its operands, and the sums kept in the rows'.

use crate::{
    chains::zeros,
    element::launch_for_element,
    fusion_op::{register_kernel, Launch},
    gelu::gelu_tanh,
    reduce::cube_sums,
};
use burn::tensor::{ops::FloatTensor, Shape};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeCount, CubeDim};

/// Most rows the kernel takes: as many samples as the sample stage decodes together. Each
/// block of [`BLOCK_ROWS`] reads all of `W` again; past this many rows a tiled product, which
/// reads it once, is the better deal.
pub const MAX_FEW_ROWS: usize = 64;

/// Rows a cube computes: each unit keeps a sum a row, and the cube's shared memory a value a row
/// and unit (8 × 256 × 4 bytes of WebGPU's 16 KiB): a chunk of the inputs, then the partial sums.
const BLOCK_ROWS: usize = 8;

/// Units of a cube: its columns (see [`columns_a_cube`]) by slices of the input dimension, each
/// slice summed by its own units, then the slices added in shared memory. Also the inputs of a
/// chunk (see [`few_rows_linear_kernel`]).
const UNITS: u32 = 256;

/// Cubes below which a product's columns are split finer: twice the SMs of an H100/H200 (132).
const ENOUGH_CUBES: usize = 256;

/// Columns of `W` a cube computes: 32 where the output is wide enough to give the GPU
/// [`ENOUGH_CUBES`] cubes that way (a warp's 32 units read 32 adjacent weights of a row of `W`),
/// else 8 (a warp reads 8 adjacent weights, a 32-byte sector, of 4 rows of `W`): gpt2's 768
/// outputs took 24 cubes of 32 columns, which left 108 of an H200's 132 SMs idle while 24
/// streamed the weights. With slices side by side ([`slices_adjacent`]: the LM head) a warp
/// reads 32 adjacent weights of a column at any width, and 8 keeps a unit's weights of a chunk
/// to 8, all loaded before the chunk's barrier: with 32, ptxas (13.5, sm_90a) issued a few of
/// them there and the rest two or three at a time among the multiply-adds (one row, f32:
/// ~8,300 cycles a chunk of 32 for one warp alone, against ~1,660 a chunk of 8), fewer bytes
/// in flight for a product whose time is the token embedding's bytes.
fn columns_a_cube(d_out: usize, slices_adjacent: bool) -> usize {
    if !slices_adjacent && d_out.div_ceil(32) >= ENOUGH_CUBES {
        32
    } else {
        8
    }
}

/// What the kernel applies to the input rows before the product.
#[derive(Clone, Debug)]
pub enum Before<T> {
    Nothing,
    /// LayerNorm over each row: `(x − mean) / √(variance + ε) · γ + β`.
    LayerNorm {
        gamma: T,
        beta: T,
        epsilon: f64,
    },
}

/// What the kernel applies to `x · W + b` after the product.
#[derive(Clone, Debug)]
pub enum After<T> {
    Nothing,
    /// GPT-2's GELU, with tanh.
    Gelu,
    /// `residual + (x · W + b)`, `residual` `[rows, d_out]`.
    Add(T),
}

impl<T> Before<T> {
    /// The same, with `f` applied to γ, then β.
    fn map<U>(self, mut f: impl FnMut(T) -> U) -> Before<U> {
        match self {
            Before::Nothing => Before::Nothing,
            Before::LayerNorm { gamma, beta, epsilon } => Before::LayerNorm { gamma: f(gamma), beta: f(beta), epsilon },
        }
    }
}

impl<T> After<T> {
    /// The same, with `f` applied to the residual.
    fn map<U>(self, f: impl FnOnce(T) -> U) -> After<U> {
        match self {
            After::Nothing => After::Nothing,
            After::Gelu => After::Gelu,
            After::Add(residual) => After::Add(f(residual)),
        }
    }
}

pub trait FewRowsLinear: burn::tensor::backend::Backend {
    /// `after(before(x) · W + b)` for `x` `[rows, d_in]` (at most [`MAX_FEW_ROWS`] rows), `W`
    /// `[d_in, d_out]` and `b` `[d_out]` (or none): `[rows, d_out]`, in `x`'s element type. `W`
    /// is in that type, bf16 or f16 (`before(x)` rounded to `W`'s type for the product), and
    /// may be a transposed view (the LM head's, the token embedding `[d_out, d_in]`).
    fn few_rows_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        before: Before<FloatTensor<Self>>,
        after: After<FloatTensor<Self>>,
    ) -> FloatTensor<Self>;
}

/// One cube a block of `columns` output columns for a block of `rows` rows (the last block may
/// hold fewer: it reads its last row again for the missing ones and writes none of them). Each
/// unit sums the products of one column over one slice of the input dimensions (`s`, `s +
/// slices`, ...; see [`slices_adjacent`] for which); the cube then adds the slices' sums. The
/// inputs go through shared memory a chunk of `units` dimensions at a time, each unit reading
/// one dimension of each row, normalising it (with LayerNorm) and rounding it to `W`'s type once
/// for the whole cube: when every unit read its inputs from the tensor and normalised them
/// itself, a multiply-add took 13.5 to 16 instructions at 8 rows (ptxas for sm_90a; 5 to 5.4
/// now, with γ, β and their strides read once a chunk, not once a row). A unit's weights of a
/// chunk are loaded before the chunk's inputs, so that they arrive while those are written. With
/// LayerNorm, every cube first takes each row's mean and deviation itself (a few rows of reads,
/// against a launch of its own), the rows side by side: their loads issued together and their
/// sums in one tree of barriers ([`cube_sums`]). The tensors that `before`, `after` and a
/// missing bias leave unused are passed anyway (as `x`) and never read.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn few_rows_linear_kernel<F: Float, W: Float>(
    x: &Tensor<F>,
    weight: &Tensor<W>,
    bias: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    residual: &Tensor<F>,
    output: &mut Tensor<F>,
    epsilon: f32,
    #[comptime] rows: usize,
    #[comptime] layer_norm: bool,
    #[comptime] gelu: bool,
    #[comptime] add: bool,
    #[comptime] with_bias: bool,
    #[comptime] units: usize,
    #[comptime] columns: usize,
    #[comptime] slices_adjacent: bool,
) {
    let unit = UNIT_POS_X as usize;
    let slices = units / columns;
    let (x_row, x_column) = (x.stride(0), x.stride(1));
    let (w_row, w_column) = (weight.stride(0), weight.stride(1));
    let first_column = CUBE_POS_X as usize * columns;
    let (lane, slice) = lane_and_slice(unit, columns, slices, slices_adjacent);
    let column = first_column + lane;
    let d_in = x.shape(1);
    let d_out = weight.shape(1);
    let first_row = CUBE_POS_Y as usize * rows;
    let last_row = x.shape(0) - 1;
    // LayerNorm's sums, then a chunk of inputs (row `r`'s at `r × units`), then the partial sums.
    let mut shared = SharedMemory::<F>::new(rows * units);

    let mut mean = Array::<F>::new(rows);
    let mut inverse_deviation = Array::<F>::new(rows);
    if layer_norm {
        // The rows side by side: each unit's loads of a dimension of every row issued together.
        let mut sums = zeros::<F>(rows);
        let mut i = unit;
        while i < d_in {
            #[unroll]
            for r in 0..rows {
                sums[r] += x[row_start(first_row + r, last_row, x_row) + i * x_column];
            }
            i += units;
        }
        let sums = cube_sums::<F>(&mut shared, &sums, rows);
        #[unroll]
        for r in 0..rows {
            mean[r] = sums[r] / F::cast_from(d_in as u32);
        }
        let mut squares = zeros::<F>(rows);
        let mut i = unit;
        while i < d_in {
            #[unroll]
            for r in 0..rows {
                let centered = x[row_start(first_row + r, last_row, x_row) + i * x_column] - mean[r];
                squares[r] += centered * centered;
            }
            i += units;
        }
        let squares = cube_sums::<F>(&mut shared, &squares, rows);
        #[unroll]
        for r in 0..rows {
            let variance = squares[r] / F::cast_from(d_in as u32);
            inverse_deviation[r] = F::new(1.0) / F::sqrt(variance + F::cast_from(epsilon));
        }
    }

    let mut sums = zeros::<F>(rows);
    let (gamma_step, beta_step) = (gamma.stride(0), beta.stride(0));
    let mut chunk = 0;
    while chunk < d_in {
        // The unit's weights in this chunk: `columns` of them, `slices` apart. No branch around
        // a load (ptxas waited for each such load before issuing the next): past the last
        // dimension or column a unit reads `W`'s first weight instead, which meets a staged
        // input of 0 (past the last dimension) or makes a sum never read (past the last column).
        let mut w = Array::<F>::new(columns);
        #[unroll]
        for u in 0..columns {
            let at = chunk + slice + u * slices;
            let inside = column < d_out && at < d_in;
            w[u] = F::cast_from(weight[select(inside, at * w_row + column * w_column, 0)]);
        }
        // Every unit is done with the shared memory's last use.
        sync_cube();
        let at = chunk + unit;
        let inside = at < d_in;
        let at = select(inside, at, 0);
        let mut scale = F::new(1.0);
        let mut shift = F::new(0.0);
        if layer_norm {
            scale = gamma[at * gamma_step];
            shift = beta[at * beta_step];
        }
        // Every row's load issued before the first is used (ptxas kept each next to its use).
        let mut inputs = Array::<F>::new(rows);
        #[unroll]
        for r in 0..rows {
            inputs[r] = x[row_start(first_row + r, last_row, x_row) + at * x_column];
        }
        #[unroll]
        for r in 0..rows {
            let mut value = inputs[r];
            if layer_norm {
                value = (value - mean[r]) * inverse_deviation[r] * scale + shift;
            }
            // A no-op where W is F.
            value = F::cast_from(W::cast_from(value));
            shared[r * units + unit] = select(inside, value, F::new(0.0));
        }
        sync_cube();
        #[unroll]
        for u in 0..columns {
            #[unroll]
            for r in 0..rows {
                sums[r] += shared[r * units + slice + u * slices] * w[u];
            }
        }
        chunk += units;
    }
    sync_cube();
    #[unroll]
    for r in 0..rows {
        shared[r * units + unit] = sums[r];
    }
    sync_cube();

    // The cube's rows × columns outputs, shared out among its units.
    let mut index = unit;
    while index < rows * columns {
        let r = index / columns;
        let row = first_row + r;
        let lane = index % columns;
        let out_column = first_column + lane;
        if out_column < d_out && row <= last_row {
            let mut y = F::new(0.0);
            if with_bias {
                y = bias[out_column * bias.stride(0)];
            }
            for s in 0..slices {
                y += shared[r * units + unit_of(lane, s, columns, slices, slices_adjacent)];
            }
            if gelu {
                y = gelu_tanh::<F>(y);
            }
            if add {
                y += residual[row * residual.stride(0) + out_column * residual.stride(1)];
            }
            output[row * output.stride(0) + out_column * output.stride(1)] = y;
        }
        index += units;
    }
}

/// Whether a cube's neighbouring units take neighbouring slices of the input dimensions of one
/// column (unit `u`: column `u / slices`, slice `u mod slices`), not neighbouring columns (column
/// `u mod columns`, slice `u / columns`): so that a warp's 32 units read neighbouring weights
/// whichever way `W` lies, a linear layer's `[d_in, d_out]` (neighbouring columns of one input
/// dimension) or the LM head's transposed view of the token embedding `[d_out, d_in]`
/// (neighbouring dimensions of a column: 32 loads in as many sectors the other way).
fn slices_adjacent(weight_strides: &[usize]) -> bool {
    weight_strides[0] == 1 && weight_strides[1] != 1
}

/// Unit `unit`'s column in the cube's block and its slice (see [`slices_adjacent`]).
#[cube]
fn lane_and_slice(
    unit: usize,
    #[comptime] columns: usize,
    #[comptime] slices: usize,
    #[comptime] slices_adjacent: bool,
) -> (usize, usize) {
    if slices_adjacent {
        (unit / slices, unit % slices)
    } else {
        (unit % columns, unit / columns)
    }
}

/// The unit that sums column `lane` of the cube's block over slice `slice`.
#[cube]
fn unit_of(
    lane: usize,
    slice: usize,
    #[comptime] columns: usize,
    #[comptime] slices: usize,
    #[comptime] slices_adjacent: bool,
) -> usize {
    if slices_adjacent {
        lane * slices + slice
    } else {
        slice * columns + lane
    }
}

/// Where row `row` of `x` starts, rows `x_row` apart: the last row's start past it (a block's
/// missing rows read the last row again).
#[cube]
fn row_start(row: usize, last_row: usize, x_row: usize) -> usize {
    usize::min(row, last_row) * x_row
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FewRowsLinear for CubeBackend<R, F, I, BT> {
    fn few_rows_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        before: Before<FloatTensor<Self>>,
        after: After<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let rows = x.meta.shape().dims::<2>()[0];
        let d_out = weight.meta.shape().dims::<2>()[1];
        let slices_adjacent = slices_adjacent(weight.meta.strides());
        assert!((1..=MAX_FEW_ROWS).contains(&rows), "the few-rows product takes 1 to {MAX_FEW_ROWS} rows, not {rows}");
        let client = x.client.clone();
        let output =
            empty_device_contiguous_dtype(client.clone(), x.device.clone(), Shape::new([rows, d_out]), x.dtype);
        let unused = || x.clone();
        let (with_bias, bias) = match bias {
            Some(bias) => (true, bias),
            None => (false, unused()),
        };
        let (layer_norm, gamma, beta, epsilon) = match before {
            Before::Nothing => (false, unused(), unused(), 0.0),
            Before::LayerNorm { gamma, beta, epsilon } => (true, gamma, beta, epsilon),
        };
        let (gelu, add, residual) = match after {
            After::Nothing => (false, false, unused()),
            After::Gelu => (true, false, unused()),
            After::Add(residual) => (false, true, residual),
        };
        let columns = columns_a_cube(d_out, slices_adjacent);
        let launch =
            launch_for_element!(few_rows_linear_kernel::<F, R>, weight.dtype, x.dtype, "few-rows product: the weights");
        launch(
            &client,
            CubeCount::Static(d_out.div_ceil(columns) as u32, rows.div_ceil(BLOCK_ROWS) as u32, 1),
            CubeDim::new_1d(UNITS),
            x.into_tensor_arg(),
            weight.into_tensor_arg(),
            bias.into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            residual.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            epsilon as f32,
            rows.min(BLOCK_ROWS),
            layer_norm,
            gelu,
            add,
            with_bias,
            UNITS as usize,
            columns,
            slices_adjacent,
        );
        output
    }
}

impl<B: FusionBackend + FewRowsLinear> FewRowsLinear for Fusion<B> {
    fn few_rows_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        before: Before<FloatTensor<Self>>,
        after: After<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let rows = x.shape.dims::<2>()[0];
        let d_out = weight.shape.dims::<2>()[1];
        // The inputs: x, W, then b where there is one, γ and β with LayerNorm, the residual
        // with the add; whether there is a bias, and `before` and `after` without their
        // tensors, say which are there.
        let mut inputs = vec![x, weight];
        let with_bias = bias.map(|tensor| inputs.push(tensor)).is_some();
        let before = before.map(|tensor| inputs.push(tensor));
        let after = after.map(|tensor| inputs.push(tensor));
        let launch: Launch<B, _> = |(with_bias, before, after): &(bool, Before<()>, After<()>), mut inputs| {
            let (x, weight) = (inputs.float(), inputs.float());
            let bias = with_bias.then(|| inputs.float());
            let before = before.clone().map(|()| inputs.float());
            let after = after.clone().map(|()| inputs.float());
            vec![B::few_rows_linear(x, weight, bias, before, after)]
        };
        let outputs = [Shape::new([rows, d_out])];
        let [y] = register_kernel::<B, _>("few_rows_linear", inputs, &outputs, (with_bias, before, after), launch)
            .try_into()
            .expect("one output");
        y
    }
}

#[cfg(test)]
mod tests {
    use super::slices_adjacent;

    #[test]
    fn a_transposed_weight_puts_slices_side_by_side() {
        // A linear layer's W `[768, 2304]` as stored, then the token embedding `[50257, 768]`
        // viewed as `[768, 50257]`.
        assert!(!slices_adjacent(&[2304, 1]));
        assert!(slices_adjacent(&[1, 768]));
        // One column: either way reads neighbours; a layer's layout is kept.
        assert!(!slices_adjacent(&[1, 1]));
    }
}
