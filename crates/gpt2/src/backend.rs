//! The backends the model runs on, and the operations it leaves to each of them: the products
//! with a weight matrix, the core of attention, GELU, and the view of a KV cache's positions.
//!
//! burn 0.21's CPU backend copies both operands of every matrix product (its reshape copies
//! even a contiguous tensor) and makes a transposed operand contiguous element by element.
//! Decoding multiplies a few rows by every weight, so a gpt2 decoding step spent ~1 s copying
//! weights, 0.43 s of it transposing the 154 MB token embedding for the LM head, and attention
//! copied the cached keys and values several times a step. The CPU backend here works on the
//! arrays where they lie (the products with few rows in [`crate::few_rows`]). Other backends
//! (CUDA, and autodiff for training) keep burn's own operations.

use crate::{few_rows, Precision};
use burn::{
    backend::{Autodiff, NdArray},
    nn::{Dropout, Linear},
    prelude::*,
    tensor::{
        activation::{gelu_approximate, softmax},
        TensorPrimitive,
    },
};
use burn_ndarray::NdArrayTensor;
use ndarray::{
    parallel::prelude::*, s, ArcArray, Array, Array2, Array4, ArrayView2, ArrayView3, ArrayView4, ArrayViewD, Axis,
    Dimension, Ix1, Ix3, IxDyn, Slice,
};

/// A burn backend the model can run on.
pub trait Gpt2Backend: Backend {
    /// `x · W + b`, `W` held as `[d_in, d_out]` (burn's and GPT-2's layout).
    fn linear_forward<const D: usize>(layer: &Linear<Self>, x: Tensor<Self, D>) -> Tensor<Self, D> {
        layer.forward(x)
    }

    /// `x · Wᵀ` for `x` `[rows, k]` and `W` `[n, k]` (the LM head, tied to the token embedding).
    fn matmul_transposed(x: Tensor<Self, 2>, weight: Tensor<Self, 2>) -> Tensor<Self, 2> {
        x.matmul(weight.transpose())
    }

    /// Attention's core: `softmax(q · kᵀ / √head_dim)` with the masked keys left out, dropout
    /// on those weights, times `v`. `q` is `[batch, heads, time, head_dim]`, `k` and `v`
    /// `[batch, heads, keys, head_dim]`, `mask` `[batch, time, keys]` (`true` where a query
    /// must not see a key). Returns the heads side by side: `[batch, time, heads × head_dim]`.
    fn masked_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: Tensor<Self, 3, Bool>,
        dropout: &Dropout,
        precision: Precision,
    ) -> Tensor<Self, 3> {
        attention_with_burn(q, k, v, mask, dropout, precision)
    }

    /// GPT-2's GELU, with tanh: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
    fn gelu_tanh<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        gelu_approximate(x)
    }

    /// The first `count` positions (dimension 2) of a KV cache buffer
    /// `[batch, heads, capacity, head_dim]`.
    fn first_positions(buffer: Tensor<Self, 4>, count: usize) -> Tensor<Self, 4> {
        first_positions_by_slice(buffer, count)
    }
}

fn first_positions_by_slice<B: Backend>(buffer: Tensor<B, 4>, count: usize) -> Tensor<B, 4> {
    let [batch, heads, _, head_dim] = buffer.dims();
    buffer.slice([0..batch, 0..heads, 0..count, 0..head_dim])
}

fn attention_with_burn<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    dropout: &Dropout,
    precision: Precision,
) -> Tensor<B, 3> {
    let [batch, heads, time, head_dim] = q.dims();
    let keys = k.dims()[2];
    let scores = precision.matmul(q, k.transpose()) / (head_dim as f64).sqrt();
    let mask = mask.unsqueeze_dim::<4>(1).expand([batch, heads, time, keys]);
    let weights = dropout.forward(softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3));
    precision.matmul(weights, v).swap_dims(1, 2).reshape([batch, time, heads * head_dim])
}

impl<B: Backend> Gpt2Backend for Autodiff<B> {}

#[cfg(feature = "cuda")]
impl Gpt2Backend for crate::device::Gpu {}

/// burn's CPU backend: f32 products run on the arrays in place; other element types (which
/// the model never makes) take burn's path.
impl Gpt2Backend for NdArray<f32> {
    fn linear_forward<const D: usize>(layer: &Linear<Self>, x: Tensor<Self, D>) -> Tensor<Self, D> {
        let mut dims = x.dims();
        let [d_in, d_out] = layer.weight.dims();
        let (inputs, weight) = (primitive(x.clone()), primitive(layer.weight.val()));
        let (Some(inputs), Some(weight)) = (f32_view(&inputs), f32_view(&weight)) else {
            return layer.forward(x);
        };
        let rows = inputs.len() / d_in;
        let inputs = inputs.to_shape((rows, d_in)).expect("the input's last dimension is d_in");
        let mut y = product(inputs.view(), matrix(weight));
        if let Some(bias) = &layer.bias {
            let bias = primitive(bias.val());
            y += &f32_view(&bias)
                .expect("an f32 bias beside the f32 weight")
                .into_dimensionality::<Ix1>()
                .expect("a 1-D bias");
        }
        dims[D - 1] = d_out;
        tensor(y, dims)
    }

    fn matmul_transposed(x: Tensor<Self, 2>, weight: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let ([rows, _], [n, _]) = (x.dims(), weight.dims());
        let (inputs, weights) = (primitive(x.clone()), primitive(weight.clone()));
        let (Some(inputs), Some(weights)) = (f32_view(&inputs), f32_view(&weights)) else {
            return x.matmul(weight.transpose());
        };
        tensor(product(matrix(inputs), matrix(weights).reversed_axes()), [rows, n])
    }

    /// Each (row, head) pair on its own thread, on the arrays in place. Dropout does nothing
    /// without autodiff, and this backend has no bf16.
    fn masked_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: Tensor<Self, 3, Bool>,
        dropout: &Dropout,
        precision: Precision,
    ) -> Tensor<Self, 3> {
        let [batch, heads, time, head_dim] = q.dims();
        let arrays = (primitive(q.clone()), primitive(k.clone()), primitive(v.clone()), mask.clone().into_primitive());
        let (Some(queries), Some(keys), Some(values), NdArrayTensor::Bool(hidden)) =
            (f32_view(&arrays.0), f32_view(&arrays.1), f32_view(&arrays.2), &arrays.3)
        else {
            return attention_with_burn(q, k, v, mask, dropout, precision);
        };
        let hidden = hidden.view().into_dimensionality::<Ix3>().expect("a 3-D mask");
        tensor(attend(four_d(queries), four_d(keys), four_d(values), hidden), [batch, time, heads * head_dim])
    }

    /// In place, in one pass over the elements (burn's takes six, each into a new array).
    fn gelu_tanh<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        match primitive(x) {
            NdArrayTensor::F32(storage) => {
                let mut x = storage.into_shared().into_owned();
                x.par_mapv_inplace(|x| {
                    let inner = (x + x * x * x * 0.044715) * SQRT_2_OVER_PI;
                    x * (inner.tanh() + 1.0) * 0.5
                });
                from_shared(x.into_shared())
            }
            other => gelu_approximate(from_primitive(other)),
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
            other => first_positions_by_slice(from_primitive(other), count),
        }
    }
}

/// √(2/π), as burn's `gelu_approximate` has it.
const SQRT_2_OVER_PI: f32 = (std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2) as f32;

/// [`Gpt2Backend::masked_attention`] on ndarray views; returns `[batch, time, heads, head_dim]`.
fn attend(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    hidden: ArrayView3<'_, bool>,
) -> Array4<f32> {
    let (batch, heads, time, head_dim) = q.dim();
    let scale = (head_dim as f32).sqrt();
    let mut y = Array4::<f32>::zeros((batch, time, heads, head_dim));
    y.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(row, mut y)| {
        y.axis_iter_mut(Axis(1)).into_par_iter().enumerate().for_each(|(head, mut y)| {
            let (q, k, v) =
                (q.slice(s![row, head, .., ..]), k.slice(s![row, head, .., ..]), v.slice(s![row, head, .., ..]));
            let mut weights = product_on_this_thread(q, k.t());
            for (mut scores, hidden) in weights.rows_mut().into_iter().zip(hidden.slice(s![row, .., ..]).rows()) {
                scores.zip_mut_with(&hidden, |score, &hidden| {
                    *score = if hidden { f32::NEG_INFINITY } else { *score / scale }
                });
                let max = scores.fold(f32::NEG_INFINITY, |max, &score| max.max(score));
                scores.mapv_inplace(|score| (score - max).exp());
                let sum = scores.sum();
                scores.mapv_inplace(|weight| weight / sum);
            }
            y.assign(&product_on_this_thread(weights.view(), v));
        });
    });
    y
}

/// Products with at most this many rows go to the kernels of [`crate::few_rows`], which read
/// the weight where it lies, at memory speed; from about 64 rows on matrixmultiply (ndarray's
/// `dot`, which packs the weight first) is the faster (2-core x86-64, see BENCHMARKS.md).
const FEW_ROWS: usize = 32;

/// The few-row kernels run on one thread, so the weight is shared out among threads in blocks
/// of this many rows: contiguous in memory, and within the 2nd-level cache. A fixed size, not
/// one per thread, so that the numbers do not depend on how many threads there are.
const BLOCK: usize = 128;

/// `lhs · rhs` for views of any strides (a transposed weight included), copying neither.
fn product(lhs: ArrayView2<'_, f32>, rhs: ArrayView2<'_, f32>) -> Array2<f32> {
    let ((m, k), (rhs_rows, n)) = (lhs.dim(), rhs.dim());
    assert_eq!(k, rhs_rows, "matrix product of [{m}, {k}] and [{rhs_rows}, {n}]");
    let Some(weight) = few_row_weight(lhs, rhs) else {
        return lhs.dot(&rhs);
    };
    let lhs = lhs.as_standard_layout();
    let lhs = lhs.view();
    if weight == Weight::Transposed {
        // A transposed weight: blocks of its rows (our columns), each its own outputs.
        let mut out = Array2::<f32>::zeros((m, n));
        out.axis_chunks_iter_mut(Axis(1), BLOCK)
            .into_par_iter()
            .zip(rhs.reversed_axes().axis_chunks_iter(Axis(0), BLOCK))
            .for_each(|(out, weight)| {
                touch(weight, m);
                few_rows::times_transposed_weight(lhs, weight, out);
            });
        out
    } else {
        // Blocks of the weight's rows, each a partial sum, added up in order.
        let partials: Vec<Array2<f32>> = lhs
            .axis_chunks_iter(Axis(1), BLOCK)
            .into_par_iter()
            .zip(rhs.axis_chunks_iter(Axis(0), BLOCK))
            .map(|(lhs, weight)| {
                let mut partial = Array2::<f32>::zeros((m, n));
                touch(weight, m);
                few_rows::times_weight(lhs, weight, partial.view_mut());
                partial
            })
            .collect();
        partials.into_iter().reduce(|sum, partial| sum + partial).unwrap_or_else(|| Array2::zeros((m, n)))
    }
}

/// `lhs · rhs` on the calling thread, for products too small to share out (attention's, per
/// row and head).
fn product_on_this_thread(lhs: ArrayView2<'_, f32>, rhs: ArrayView2<'_, f32>) -> Array2<f32> {
    let lhs_rows_contiguous = lhs.ncols() <= 1 || lhs.strides()[1] == 1;
    let weight = few_row_weight(lhs, rhs).filter(|_| lhs_rows_contiguous);
    let mut out = Array2::<f32>::zeros((lhs.nrows(), rhs.ncols()));
    match weight {
        Some(Weight::Transposed) => few_rows::times_transposed_weight(lhs, rhs.reversed_axes(), out.view_mut()),
        Some(Weight::Rows) => few_rows::times_weight(lhs, rhs, out.view_mut()),
        None => return lhs.dot(&rhs),
    }
    out
}

/// How the right-hand side of a product lies for the few-row kernels.
#[derive(Clone, Copy, PartialEq)]
enum Weight {
    /// Rows contiguous: `x · W`.
    Rows,
    /// Columns contiguous: `x · Wᵀ` for a `W` with contiguous rows (the LM head).
    Transposed,
}

/// The few-row kernels' view of `rhs`, or `None` where they do not apply: `lhs` has more than
/// [`FEW_ROWS`] rows, or `rhs` has neither its rows nor its columns contiguous.
fn few_row_weight(lhs: ArrayView2<'_, f32>, rhs: ArrayView2<'_, f32>) -> Option<Weight> {
    match rhs.strides() {
        _ if lhs.nrows() > FEW_ROWS => None,
        [1, _] => Some(Weight::Transposed),
        [_, 1] => Some(Weight::Rows),
        _ => None,
    }
}

/// For products of several rows, reads one float of every cache line of `block` (a contiguous
/// block of a weight) front to back first, so that the kernels, which read it in column tiles,
/// find it in the cache: the memory prefetcher follows a stream front to back, not the tiles.
/// For one row the kernels are the faster alone.
fn touch(block: ArrayView2<'_, f32>, rows: usize) {
    if rows < TOUCH_FROM_ROWS {
        return;
    }
    let mut sum = 0.0f32;
    for row in block.rows() {
        for value in row.iter().step_by(16) {
            sum += value;
        }
    }
    std::hint::black_box(sum);
}

const TOUCH_FROM_ROWS: usize = 2;

fn primitive<const D: usize>(tensor: Tensor<NdArray<f32>, D>) -> NdArrayTensor {
    tensor.into_primitive().tensor()
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
    from_primitive(NdArrayTensor::from(array))
}

fn from_primitive<const D: usize>(tensor: NdArrayTensor) -> Tensor<NdArray<f32>, D> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;
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
            let x = random([2, rows, 300]);
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
        let dropout = burn::nn::DropoutConfig::new(0.1).init();
        let expected = attention_with_burn(q.clone(), k.clone(), v.clone(), mask.clone(), &dropout, Precision::F32);
        assert_close(<Cpu as Gpt2Backend>::masked_attention(q, k, v, mask, &dropout, Precision::F32), expected);
    }
}
