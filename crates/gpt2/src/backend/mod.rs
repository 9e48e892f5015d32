//! The backends the model runs on, and the operations it leaves to each of them: the products
//! with a weight matrix, the core of attention, GELU, the view of a KV cache's positions, and
//! the training and sampling operations the GPU backends do in kernels of their own. The trait
//! [`Gpt2Backend`] gives each operation burn's own composition by default; `cube.rs` overrides
//! them for CUDA and wgpu, `cpu.rs` for burn's CPU backend.

mod cpu;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod cube;

use crate::{
    attention::split_heads,
    dropout::{dropped, Dropout},
    kv_cache::decode_attention_by_parts,
    precision::rounded_matmul,
    training_attention, PreNorm, Precision,
};
use burn::{
    backend::NdArray,
    nn::Linear,
    prelude::*,
    tensor::{
        activation::{gelu_approximate, softmax},
        ops::FloatTensor,
        FloatDType, IndexingUpdateOp, TensorData, TensorMetadata, TensorPrimitive,
    },
};
use kernels::{AdamWStep, MaskStream};

/// The CPU backend (ndarray), used for tests and as the fallback.
pub type Cpu = NdArray<f32>;
/// The CUDA backend.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda<f32, i32>;
/// burn's wgpu backend: CUDA's CubeCL + fusion path on Vulkan (development only).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu<f32, i32>;
/// The CUDA backend without burn's fusion: each operation launches its kernel as it comes.
/// Decoding takes it: its steps are `cube_kernels`' own kernels, with nothing to fuse, and
/// fusion's bookkeeping costs host time on every operation (on wgpu, 37 → 22 ms a token of a
/// 12-layer model for the same 70 launches: BENCHMARKS.md).
#[cfg(feature = "cuda")]
pub type GpuEager = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;
/// [`Wgpu`] without fusion, as [`GpuEager`] is CUDA's (development only).
#[cfg(feature = "wgpu")]
pub type WgpuEager = burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

/// The end of a residual branch, before it is added to the stream: `product` `[rows, d]` (the
/// branch's last product, without its bias), the bias `[d]`, and dropout on their sum.
#[derive(Debug, Clone)]
pub struct ResidualBranch<B: Backend> {
    pub product: Tensor<B, 2>,
    pub bias: Tensor<B, 1>,
    pub dropout: Option<Dropout>,
    /// The type of the product's operands: its backward pass reads the product's gradient in
    /// it, so training writes that gradient so.
    pub operands: FloatDType,
}

impl<B: Gpt2Backend> ResidualBranch<B> {
    /// The end of a branch whose last layer is `layer` on `x`, with `dropout`; `rounded`:
    /// `layer`'s weight rounded for `precision`, where the step rounded it.
    pub fn end(
        layer: &Linear<B>,
        x: Tensor<B, 2>,
        dropout: Option<Dropout>,
        precision: Precision,
        rounded: Option<Tensor<B, 2>>,
    ) -> Self {
        let product = precision.product(x, layer.weight.val(), rounded);
        Self { product, bias: bias_or_zeros(layer), dropout, operands: precision.operands() }
    }

    /// The stream after the branch: `residual + dropout(product + bias)`.
    pub fn added_to(self, residual: Tensor<B, 2>) -> Tensor<B, 2> {
        residual + dropped(self.product + self.bias.unsqueeze(), self.dropout)
    }
}

/// `product`, `layer`'s product of `operands`, plus its bias where it has one, added by
/// [`Gpt2Backend::bias_add`] (under autodiff, a node whose backward pass takes the bias's
/// gradient from the backend's column sums).
pub(crate) fn with_bias<B: Gpt2Backend>(
    layer: &Linear<B>,
    product: Tensor<B, 2>,
    operands: FloatDType,
) -> Tensor<B, 2> {
    match &layer.bias {
        Some(bias) => B::bias_add(product, bias.val(), operands),
        None => product,
    }
}

/// `layer`'s bias, or zeros for a layer without one.
pub(crate) fn bias_or_zeros<B: Backend>(layer: &Linear<B>) -> Tensor<B, 1> {
    match &layer.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([layer.weight.dims()[1]], &layer.weight.device()),
    }
}

/// [`Gpt2Backend::sum_of_squares`]' rows on the CPU: it sums the columns of `[NORM_ROWS, len /
/// NORM_ROWS]` first when `len` is a multiple of this (the train stage pads its buffers to one).
pub const NORM_ROWS: usize = 1024;

/// A burn backend the model can run on.
pub trait Gpt2Backend: Backend {
    /// `norm` over each row of `x` `[rows, d]`, written in `norm.output`'s type.
    fn layer_norm_rows(norm: PreNorm<'_, Self>, x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        norm.layer.forward(x).cast(norm.output)
    }

    /// `(x − mean) / √(variance + ε) · γ + β` over each row of `x` `[rows, d]` (γ, β `[d]`), and
    /// what its backward pass needs: `(output, the normalised rows, each row's
    /// 1 / √(variance + ε) [rows, 1])`, the output in the type `output`.
    fn layer_norm_keeping(
        x: Tensor<Self, 2>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        epsilon: f64,
        output: FloatDType,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
        let centered = x.clone() - x.mean_dim(1);
        let variance = (centered.clone() * centered.clone()).mean_dim(1);
        let inverse_deviation = (variance + epsilon).sqrt().recip();
        let normalized = centered * inverse_deviation.clone();
        let y = normalized.clone() * gamma.unsqueeze() + beta.unsqueeze();
        (y.cast(output), normalized, inverse_deviation)
    }

    /// [`layer_norm_keeping`] of `residual + dropout(product + bias)`: a residual branch's end
    /// and the LayerNorm after it, as training runs them. Returns that sum (the residual
    /// stream after the branch) first.
    ///
    /// [`layer_norm_keeping`]: Gpt2Backend::layer_norm_keeping
    fn residual_layer_norm_keeping(
        residual: Tensor<Self, 2>,
        branch: ResidualBranch<Self>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        epsilon: f64,
        output: FloatDType,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
        let stream = branch.added_to(residual);
        let (y, normalized, inverse_deviation) = Self::layer_norm_keeping(stream.clone(), gamma, beta, epsilon, output);
        (stream, y, normalized, inverse_deviation)
    }

    /// The gradient of [`layer_norm_keeping`]'s input from that of its output `d_y` `[rows, d]`,
    /// the normalised rows and inverse deviations it kept, and γ: with `g = d_y · γ`,
    /// `(g − mean(g) − normalized · mean(g · normalized)) · inverse_deviation` (means over each
    /// row), plus `d_stream`, the gradient the input gets from elsewhere (the residual stream's
    /// from the layers after), where there is one.
    ///
    /// [`layer_norm_keeping`]: Gpt2Backend::layer_norm_keeping
    fn layer_norm_backward(
        d_y: Tensor<Self, 2>,
        normalized: Tensor<Self, 2>,
        inverse_deviation: Tensor<Self, 2>,
        gamma: Tensor<Self, 1>,
        d_stream: Option<Tensor<Self, 2>>,
    ) -> Tensor<Self, 2> {
        let g = d_y * gamma.unsqueeze();
        let mean_g_n = (g.clone() * normalized.clone()).mean_dim(1);
        let d_x = (g.clone() - g.mean_dim(1) - normalized * mean_g_n) * inverse_deviation;
        match d_stream {
            Some(d_stream) => d_x + d_stream,
            None => d_x,
        }
    }

    /// The gradients of [`layer_norm_keeping`]'s γ and β from that of its output `d_y`
    /// `[rows, d]` and the normalised rows it kept: `(Σ_rows d_y · normalized, Σ_rows d_y)`.
    /// With the residual branch before it ([`residual_layer_norm_keeping`]), `branch` is the
    /// gradient of the LayerNorm's input `d_x` (all of it), the branch's dropout and its
    /// product's operands' type, and the branch's gradients come third: the product's, `d_x`
    /// through dropout, in that type, and the bias's, its sum over the rows.
    ///
    /// [`layer_norm_keeping`]: Gpt2Backend::layer_norm_keeping
    /// [`residual_layer_norm_keeping`]: Gpt2Backend::residual_layer_norm_keeping
    #[allow(clippy::type_complexity)]
    fn layer_norm_parameter_gradients(
        d_y: Tensor<Self, 2>,
        normalized: Tensor<Self, 2>,
        branch: Option<(Tensor<Self, 2>, Option<Dropout>, FloatDType)>,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>, Option<(Tensor<Self, 2>, Tensor<Self, 1>)>) {
        let d = d_y.dims()[1];
        let branch = branch.map(|(d_x, dropout, operands)| {
            let (d_bias, d_product) = Self::column_sums(dropped(d_x, dropout), operands);
            (d_product, d_bias)
        });
        ((d_y.clone() * normalized).sum_dim(0).reshape([d]), d_y.sum_dim(0).reshape([d]), branch)
    }

    /// `residual + dropout(product + bias)`, and `norm` over it: the end of a block's branch
    /// and the LayerNorm after it (`ln_2`, the next block's `ln_1`, or `ln_f`), as training
    /// runs them. `continues`: the stream (returned first) goes on to another branch's end;
    /// the last one only feeds `ln_f`.
    fn residual_layer_norm(
        residual: Tensor<Self, 2>,
        branch: ResidualBranch<Self>,
        norm: PreNorm<'_, Self>,
        continues: bool,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>) {
        let _ = continues;
        let stream = branch.added_to(residual);
        (stream.clone(), Self::layer_norm_rows(norm, stream))
    }

    /// Self-attention over whole rows, without a cache, as training runs it: from the q/k/v
    /// projection's output `[batch × time, 3 × d]` (q, k and v side by side, each with its
    /// heads side by side) to the heads' outputs side by side, `[batch × time, d]`. `mask` is
    /// `[batch, time, time]`, `true` where a query must not see a key; `dropout` on the
    /// attention weights.
    fn self_attention(
        qkv: Tensor<Self, 2>,
        heads: usize,
        mask: Tensor<Self, 3, Bool>,
        dropout: Option<Dropout>,
        precision: Precision,
    ) -> Tensor<Self, 2> {
        self_attention_by_parts(qkv, heads, mask, dropout, precision)
    }

    /// Causal self-attention's core as training's custom backward pass takes it: from the q/k/v
    /// projection's rows `[batch × time, 3 × d]` (q, k and v side by side, each with its `heads`
    /// heads side by side) to the heads' outputs side by side `[batch × time, d]`, with each
    /// query's log-sum-exp of its scaled scores `[batch, heads, time]`, from which
    /// [`attention_backward`] computes the weights again. `mask` `[batch, time, time]` is `true`
    /// where a query must not see a key (keys after the query among them); `dropout` on the
    /// weights. The outputs come in `precision`'s operand type, as the projection after them
    /// reads them, and the backward pass reads them so.
    ///
    /// [`attention_backward`]: Gpt2Backend::attention_backward
    fn attention_keeping(
        qkv: Tensor<Self, 2>,
        heads: usize,
        mask: Tensor<Self, 3, Bool>,
        dropout: Option<Dropout>,
        precision: Precision,
    ) -> (Tensor<Self, 2>, Tensor<Self, 3>) {
        training_attention::attention_keeping(qkv, heads, mask, dropout, precision)
    }

    /// The gradient of [`attention_keeping`]'s q/k/v rows (in their layout) from that of its
    /// output, `d_output`, and what it took and returned. With `p` the weights, `z` dropout's
    /// mask and scale (1 without), `y = (z · p) · v` and `D = Σ d_y · y` over each query's row
    /// (which is `Σ_keys z · p · dp` for `dp = d_y · vᵀ`): `d_v = (z · p)ᵀ · d_y`, the scores'
    /// gradient `ds = p · (z · dp − D) / √head_dim`, `d_q = ds · k`, `d_k = dsᵀ · q`. Masked
    /// keys have `p = 0`, so their `ds` is 0 with no mask.
    ///
    /// [`attention_keeping`]: Gpt2Backend::attention_keeping
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        qkv: Tensor<Self, 2>,
        output: Tensor<Self, 2>,
        logsumexp: Tensor<Self, 3>,
        d_output: Tensor<Self, 2>,
        heads: usize,
        mask: Tensor<Self, 3, Bool>,
        dropout: Option<Dropout>,
        precision: Precision,
    ) -> Tensor<Self, 2> {
        training_attention::attention_backward(qkv, output, logsumexp, d_output, heads, mask, dropout, precision)
    }

    /// The weights of [`attention_keeping`] on its products' route: from the scores `q · kᵀ`
    /// `[batch, heads, time, time]` (`q`'s heads `head_dim` wide), `softmax(scores /
    /// √head_dim)` over the keys `mask` lets each query see, through `dropout`, with each
    /// query's log-sum-exp of its scaled scores `[batch, heads, time]`. The weights come in
    /// f32 or in `precision`'s operand type, as the product after them reads them.
    ///
    /// [`attention_keeping`]: Gpt2Backend::attention_keeping
    fn attention_softmax(
        scores: Tensor<Self, 4>,
        mask: Tensor<Self, 3, Bool>,
        head_dim: usize,
        dropout: Option<Dropout>,
        precision: Precision,
    ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
        let _ = precision;
        training_attention::softmax_by_operations(scores, mask, head_dim, dropout)
    }

    /// [`attention_softmax`]'s weights again and the scores' gradient, from the same scores,
    /// mask and dropout and the log-sum-exps it returned, with `d_weights` the gradient of the
    /// weights (`d_output · vᵀ`) and `delta` `[batch, heads, time]` each query's `Σ d_output
    /// · output` (see [`attention_backward`]); both in f32 or in `precision`'s operand type, as
    /// the products after them read them.
    ///
    /// [`attention_softmax`]: Gpt2Backend::attention_softmax
    /// [`attention_backward`]: Gpt2Backend::attention_backward
    #[allow(clippy::too_many_arguments)]
    fn attention_softmax_backward(
        scores: Tensor<Self, 4>,
        d_weights: Tensor<Self, 4>,
        logsumexp: Tensor<Self, 3>,
        delta: Tensor<Self, 3>,
        mask: Tensor<Self, 3, Bool>,
        head_dim: usize,
        dropout: Option<Dropout>,
        precision: Precision,
    ) -> (Tensor<Self, 4>, Tensor<Self, 4>) {
        let _ = precision;
        training_attention::softmax_backward_by_operations(scores, d_weights, logsumexp, delta, mask, head_dim, dropout)
    }

    /// `layer(norm(x))`, then GPT-2's GELU if `gelu`: the product after each of a block's
    /// LayerNorms, `x` `[rows, d]`.
    fn normed_linear(
        norm: PreNorm<'_, Self>,
        layer: &Linear<Self>,
        x: Tensor<Self, 2>,
        gelu: bool,
        precision: Precision,
    ) -> Tensor<Self, 2> {
        normed_linear_by_parts(norm, layer, x, gelu, precision)
    }

    /// `residual + layer(x)`: the product that ends each of a block's branches (outside
    /// training: [`residual_layer_norm`] is training's).
    ///
    /// [`residual_layer_norm`]: Gpt2Backend::residual_layer_norm
    fn linear_residual(
        layer: &Linear<Self>,
        x: Tensor<Self, 2>,
        residual: Tensor<Self, 2>,
        precision: Precision,
    ) -> Tensor<Self, 2> {
        linear_residual_by_parts(layer, x, residual, precision)
    }

    /// `x · W + b` for `x` `[rows, d_in]`, `W` held as `[d_in, d_out]` (burn's and GPT-2's
    /// layout).
    fn linear_forward(layer: &Linear<Self>, x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        with_bias(layer, x.matmul(layer.weight.val()), Precision::F32.operands())
    }

    /// `lhs · rhs` for `lhs` `[m, k]` and `rhs` `[k, n]` with both operands rounded to
    /// `operands` and the product returned in f32, as tensor cores accumulate it: bf16
    /// autocast's products ([`Precision::Bf16`]). `rounded_rhs`: `rhs` already rounded (a
    /// step's [`RoundedWeights`](crate::RoundedWeights)), read in its place; under autodiff
    /// `rhs` still takes the gradient.
    fn mixed_matmul(
        lhs: Tensor<Self, 2>,
        rhs: Tensor<Self, 2>,
        rounded_rhs: Option<Tensor<Self, 2>>,
        operands: FloatDType,
    ) -> Tensor<Self, 2> {
        rounded_matmul(lhs, rounded_rhs.unwrap_or(rhs), operands)
    }

    /// `lhs · rhs` for batches of matrices, `[…, m, k]` by `[…, k, n]` (attention's products,
    /// where its kernels do not apply), with both operands rounded to `operands` and the product
    /// returned in f32: by default burn's product in `operands`, cast back.
    fn batched_mixed_matmul<const D: usize>(
        lhs: Tensor<Self, D>,
        rhs: Tensor<Self, D>,
        operands: FloatDType,
    ) -> Tensor<Self, D> {
        rounded_matmul(lhs, rhs, operands)
    }

    /// Whether f32 products take [`mixed_matmul`](Gpt2Backend::mixed_matmul) too, rather than
    /// burn's product: on CubeCL backends when `GPT2_PRODUCTS` names one of
    /// `cube_kernels::product_routines`, for every product to take that routine.
    fn products_by_routine() -> bool {
        false
    }

    /// How many columns training's LM head computes for a vocabulary of `vocab` tokens: the
    /// vocabulary's, then zeros (rows of zeros after the tied token embedding), which the loss
    /// leaves out. The CPU's products take any width: `vocab`. CubeCL's read and write a
    /// matrix in vectors only along a dimension their width divides, so GPT-2's 50,257 columns
    /// took one of each of the LM head's three products element by element.
    fn lm_head_columns(vocab: usize) -> usize {
        vocab
    }

    /// The LM head: `norm(x) · embeddingᵀ` for `x` `[rows, d]` (the last block's output) and the
    /// token embedding `[vocab, d]`, the logits `[rows, vocab]` with the product's operands in
    /// `precision`'s type.
    fn lm_head(
        norm: PreNorm<'_, Self>,
        embedding: Tensor<Self, 2>,
        x: Tensor<Self, 2>,
        precision: Precision,
    ) -> Tensor<Self, 2> {
        lm_head_by_parts(norm, embedding, x, precision)
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
        dropout: Option<Dropout>,
        precision: Precision,
    ) -> Tensor<Self, 3> {
        attention_with_burn(q, k, v, mask, dropout, precision)
    }

    /// Attention for one new position a row, with a layer's KV cache: `qkv` `[batch, 3 × d]` is
    /// each row's new q, k and v side by side, `keys` and `values` `[batch, heads, capacity,
    /// head_dim]` the cache's buffers, filled before `position`. Writes the new keys and values
    /// at `position` and attends each query to positions `0..=position` (the causal mask hides
    /// none of them). Returns the heads' outputs side by side, `[batch, d]`, and the buffers.
    fn decode_attention(
        qkv: Tensor<Self, 2>,
        keys: Tensor<Self, 4>,
        values: Tensor<Self, 4>,
        position: usize,
        heads: usize,
        precision: Precision,
    ) -> (Tensor<Self, 2>, Tensor<Self, 4>, Tensor<Self, 4>) {
        decode_attention_by_parts(qkv, keys, values, position, heads, precision)
    }

    /// `[len]`: `kept` where dropout at probability `p` keeps element `i` of `stream`, 0.0
    /// where it drops it (`kernels::dropout_keeps`). Drawn on the host and copied to the device.
    fn dropout_keeps(stream: MaskStream, p: f64, kept: f32, len: usize, device: &Self::Device) -> Tensor<Self, 1> {
        let mut keeps = vec![0.0f32; len];
        kernels::dropout_keeps(stream, p, &mut keeps);
        keeps.iter_mut().for_each(|keep| *keep *= kept);
        Tensor::from_data(TensorData::new(keeps, [len]), device)
    }

    /// `buffer` `[len]` with each of `pieces` `(tensor, start)`, its `n` elements in row-major
    /// order, added to its stretch `start..start + n` (the stretches apart): how the train stage
    /// sums each micro-batch's gradients into the optimizer's flat buffers. The pieces keep
    /// their shapes: flattening each would be an operation more for fusion to record on CUDA.
    fn add_to_stretches(buffer: Tensor<Self, 1>, pieces: Vec<(FloatTensor<Self>, usize)>) -> Tensor<Self, 1> {
        pieces.into_iter().fold(buffer, |buffer, (piece, start)| {
            let len = piece.shape().num_elements();
            let piece: Tensor<Self, 1> = float(Self::float_reshape(piece, Shape::new([len])));
            let stretch = start..start + len;
            // Summed before the assignment, so that the buffer is held once and written in place.
            let sum = buffer.clone().slice(stretch.clone()) + piece;
            buffer.slice_assign(stretch, sum)
        })
    }

    /// `buffer` `[len]`'s stretches `start..start + n` as tensors of `shape` (`n` elements,
    /// row-major), one a `(start, shape)`: the train stage's parameters as views of the
    /// optimizer's flat buffers.
    fn views(buffer: Tensor<Self, 1>, stretches: Vec<(usize, Shape)>) -> Vec<FloatTensor<Self>> {
        stretches
            .into_iter()
            .map(|(start, shape)| {
                let stretch = buffer.clone().slice(start..start + shape.num_elements());
                Self::float_reshape(primitive(stretch), shape)
            })
            .collect()
    }

    /// `Σ xᵢ²` over the flat buffer `x`: `[1]`, the global-norm clip's sum for one parameter
    /// group. Here down the columns of `[NORM_ROWS, len / NORM_ROWS]` first where the length
    /// allows (the train stage pads its buffers to allow it): each partial sum adds a short run
    /// of numbers rather than one run of all.
    fn sum_of_squares(x: Tensor<Self, 1>) -> Tensor<Self, 1> {
        let len = x.dims()[0];
        let squares = x.square();
        if len > 0 && len.is_multiple_of(NORM_ROWS) {
            squares.reshape([NORM_ROWS, len / NORM_ROWS]).sum_dim(0).sum()
        } else {
            squares.sum()
        }
    }

    /// `param`, `first` and `second` (PyTorch's `exp_avg` and `exp_avg_sq`), flat buffers of
    /// one parameter group, after AdamW's `step` on `grad`, first multiplied by `clip` (`[1]`,
    /// the global-norm clip's factor) where given: how the train stage updates its weights.
    fn adamw_update(
        param: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
        clip: Option<Tensor<Self, 1>>,
        first: Tensor<Self, 1>,
        second: Tensor<Self, 1>,
        step: AdamWStep,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>, Tensor<Self, 1>) {
        let grad = match clip {
            Some(factor) => grad * factor,
            None => grad,
        };
        let param = if step.decay == 1.0 { param } else { param.mul_scalar(step.decay) };
        // `exp_avg.lerp_(grad, 1 - beta1)`, `exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)`.
        let first = first.clone() + (grad.clone() - first).mul_scalar(1.0 - step.beta1);
        let second = second.mul_scalar(step.beta2) + grad.square().mul_scalar(1.0 - step.beta2);
        let denominator = second.clone().sqrt().div_scalar(step.bias_correction2_sqrt).add_scalar(step.eps);
        let param = param - (first.clone() / denominator).mul_scalar(step.step_size);
        (param, first, second)
    }

    /// `Σ weights · −log softmax(logits)[target] / Σ weights`, `[1]`: the weighted mean of each
    /// row's cross-entropy, for `logits` `[rows, columns]` whose first `vocab` columns are the
    /// vocabulary (the rest, [`lm_head_columns`]' padding, left out), `targets` and `weights`
    /// `[rows]`. Under autodiff the logits' gradient is written in the type `gradient`: that of
    /// the LM head's operands, as its backward pass reads it; zero on the padding.
    ///
    /// [`lm_head_columns`]: Gpt2Backend::lm_head_columns
    fn cross_entropy(
        logits: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        weights: Tensor<Self, 1>,
        _gradient: FloatDType,
        vocab: usize,
    ) -> Tensor<Self, 1> {
        let (losses, _) = Self::cross_entropy_rows(logits, targets, vocab);
        (losses * weights.clone()).sum() / weights.sum()
    }

    /// Each row's cross-entropy against its target, `log Σ exp(logits) − logits[target]`, and
    /// its log-normaliser `log Σ exp(logits)` (what the backward pass takes), both `[rows]`, for
    /// `logits` `[rows, columns]` whose first `vocab` columns are the vocabulary, and `targets`
    /// `[rows]`.
    fn cross_entropy_rows(
        logits: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        vocab: usize,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>) {
        let rows = targets.dims()[0];
        let logits = logits.narrow(1, 0, vocab);
        let max = logits.clone().max_dim(1);
        let log_normalisers = max.clone() + (logits.clone() - max).exp().sum_dim(1).log();
        let target_logits = logits.gather(1, targets.reshape([rows, 1]));
        ((log_normalisers.clone() - target_logits).reshape([rows]), log_normalisers.reshape([rows]))
    }

    /// The gradient of `logits` from that of each row's [`cross_entropy_rows`], `d_losses`
    /// `[rows]`: `(softmax(logits) − one-hot(target)) · d_loss` on each row's first `vocab`
    /// columns and zero after them, with the log-normalisers it returned, written in the type
    /// `d_logits`.
    ///
    /// [`cross_entropy_rows`]: Gpt2Backend::cross_entropy_rows
    fn cross_entropy_rows_backward(
        logits: Tensor<Self, 2>,
        log_normalisers: Tensor<Self, 1>,
        targets: Tensor<Self, 1, Int>,
        d_losses: Tensor<Self, 1>,
        d_logits: FloatDType,
        vocab: usize,
    ) -> Tensor<Self, 2> {
        let ([rows, columns], device) = (logits.dims(), logits.device());
        let scale = d_losses.reshape([rows, 1]);
        // The one-hot part is one number a row, scattered in: no `rows × vocab` comparison.
        let gradient = ((logits.narrow(1, 0, vocab) - log_normalisers.reshape([rows, 1])).exp() * scale.clone())
            .scatter(1, targets.reshape([rows, 1]), -scale, IndexingUpdateOp::Add);
        let gradient = match columns - vocab {
            0 => gradient,
            padding => Tensor::cat(vec![gradient, Tensor::zeros([rows, padding], &device)], 1),
        };
        gradient.cast(d_logits)
    }

    /// GPT-2's GELU, with tanh: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
    fn gelu_tanh<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        gelu_approximate(x)
    }

    /// `product + bias` for `product` `[rows, d]` and `bias` `[d]`: the end of a linear layer
    /// whose bias no kernel takes in (the q/k/v projection's, in training). Under autodiff the
    /// product gets its gradient in `operands`, the type of its operands, as its backward pass
    /// reads it.
    fn bias_add(product: Tensor<Self, 2>, bias: Tensor<Self, 1>, _operands: FloatDType) -> Tensor<Self, 2> {
        product + bias.unsqueeze()
    }

    /// The rows of `weights` `[rows, d]` that `indices` `[batch, time]` name: `[batch, time, d]`
    /// (burn's lookup). Under autodiff the weights' gradient is
    /// [`embedding_gradient`](Gpt2Backend::embedding_gradient).
    fn embed(weights: Tensor<Self, 2>, indices: Tensor<Self, 2, Int>) -> Tensor<Self, 3> {
        burn::tensor::module::embedding(weights, indices)
    }

    /// An embedding lookup's gradient: `[rows, d]`, row `r` the sum of the rows `i` of
    /// `d_output` `[n, d]` whose `indices[i]` (`[n]`) is `r`, added in the order of `i`; zeros
    /// where no index names a row.
    fn embedding_gradient(d_output: Tensor<Self, 2>, indices: Tensor<Self, 1, Int>, rows: usize) -> Tensor<Self, 2> {
        let d = d_output.dims()[1];
        Tensor::zeros([rows, d], &d_output.device()).select_assign(0, indices, d_output, IndexingUpdateOp::Add)
    }

    /// `Σ_rows x` for `x` `[rows, d]`: `[d]`, a bias's gradient from that of its layer's output;
    /// and `x` in the type `rounded`, its product's operands' (`x` itself where it has it),
    /// as that product's backward pass reads it.
    fn column_sums(x: Tensor<Self, 2>, rounded: FloatDType) -> (Tensor<Self, 1>, Tensor<Self, 2>) {
        let d = x.dims()[1];
        (x.clone().sum_dim(0).reshape([d]), x.cast(rounded))
    }

    /// GPT-2's GELU of `product + bias`, for `product` `[rows, d]` and `bias` `[d]`: the end of
    /// the MLP's first layer, as training runs it, written in `operands`, the type of the
    /// products around it: that of the one that reads it and, under autodiff, of `product`'s,
    /// whose gradient is written in it too.
    fn bias_gelu(product: Tensor<Self, 2>, bias: Tensor<Self, 1>, operands: FloatDType) -> Tensor<Self, 2> {
        Self::gelu_tanh(product + bias.unsqueeze()).cast(operands)
    }

    /// The gradients of [`bias_gelu`]'s product and bias from that of its output, `d_hidden`:
    /// the product's `d_hidden · gelu'(product + bias)`, with `t = tanh(√(2/π) · (x + 0.044715
    /// x³))` and `gelu'(x) = (1 + t)/2 + x/2 · (1 − t²) · √(2/π) · (1 + 3 · 0.044715 x²)`,
    /// written in the type `d_product` (that of the product's operands, as its backward pass
    /// reads it), and the bias's, the sum of those over the rows.
    ///
    /// [`bias_gelu`]: Gpt2Backend::bias_gelu
    fn bias_gelu_backward(
        product: Tensor<Self, 2>,
        bias: Tensor<Self, 1>,
        d_hidden: Tensor<Self, 2>,
        d_product: FloatDType,
    ) -> (Tensor<Self, 2>, Tensor<Self, 1>) {
        let x = product + bias.unsqueeze();
        let squared = x.clone() * x.clone();
        let (cubic, sqrt_2_over_pi) = (kernels::GELU_CUBIC, kernels::GELU_SQRT_2_OVER_PI);
        let t = ((x.clone() * squared.clone() * cubic + x.clone()) * sqrt_2_over_pi).tanh();
        let inner_derivative = (squared * (3.0 * cubic) + 1.0) * sqrt_2_over_pi;
        let derivative = (t.clone() + 1.0) * 0.5 + x * 0.5 * (-(t.clone() * t) + 1.0) * inner_derivative;
        let (d_bias, d_product) = Self::column_sums(d_hidden * derivative, d_product);
        (d_product, d_bias)
    }

    /// The first `count` positions (dimension 2) of a KV cache buffer
    /// `[batch, heads, capacity, head_dim]`.
    fn first_positions(buffer: Tensor<Self, 4>, count: usize) -> Tensor<Self, 4> {
        first_positions_by_slice(buffer, count)
    }

    /// What the device's allocator holds once the work queued so far has run (this waits for
    /// it); `None` where nothing counts it (the CPU) or the device has failed.
    fn allocator_memory(device: &Self::Device) -> Option<AllocatorMemory> {
        let _ = device;
        None
    }

    /// The `k` most likely tokens of each row of `logits` `[rows, vocab]`, for top-k sampling
    /// on the host: `[rows, 2k]`, each row's `k` greatest logits, greatest first (of equal
    /// logits the lower id first), then their ids as floats. `None` where the host had better
    /// read whole rows: on the CPU, whose logits are in host memory already, and beyond the
    /// device kernel's limits.
    fn most_likely(logits: Tensor<Self, 2>, k: usize) -> Option<Tensor<Self, 2>> {
        let _ = (logits, k);
        None
    }

    /// Each row's softmax denominator at `temperature` (above 0) for `logits` `[rows, vocab]`:
    /// `[rows]`, `Σⱼ exp(lⱼ / t − m)` with `m` the row's largest `lⱼ / t`. With the row's most
    /// likely tokens it gives their probabilities, for top-p sampling on the host. `None` where
    /// the host had better read whole rows (as for [`Gpt2Backend::most_likely`]).
    fn softmax_denominators(logits: Tensor<Self, 2>, temperature: f32) -> Option<Tensor<Self, 1>> {
        let _ = (logits, temperature);
        None
    }

    /// `logits` `[rows, vocab]` with the repetition penalty applied to the tokens each row has
    /// seen, which `seen` gives `[rows, n]`: each token once, shorter rows padded with `vocab`.
    /// `Err` with `logits` as they were, `seen` not called, where the host had better apply it
    /// to whole rows (the CPU, whose logits are in host memory already).
    fn penalise_seen(
        logits: Tensor<Self, 2>,
        seen: impl FnOnce() -> Tensor<Self, 2, Int>,
        penalty: f32,
    ) -> Result<Tensor<Self, 2>, Tensor<Self, 2>> {
        let _ = (seen, penalty);
        Err(logits)
    }
}

/// Bytes of device memory as the backend's allocator counts them: PyTorch's
/// `memory_allocated` and `memory_reserved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorMemory {
    /// Held by live tensors.
    pub in_use: u64,
    /// Taken from the device: in use, padding, and free pages the pools keep for reuse.
    pub reserved: u64,
}

fn normed_linear_by_parts<B: Gpt2Backend>(
    norm: PreNorm<'_, B>,
    layer: &Linear<B>,
    x: Tensor<B, 2>,
    gelu: bool,
    precision: Precision,
) -> Tensor<B, 2> {
    let y = precision.linear(layer, B::layer_norm_rows(norm, x), None);
    match gelu {
        true => B::gelu_tanh(y),
        false => y,
    }
}

/// [`Gpt2Backend::self_attention`] as the heads' q, k and v and [`Gpt2Backend::masked_attention`].
pub(crate) fn self_attention_by_parts<B: Gpt2Backend>(
    qkv: Tensor<B, 2>,
    heads: usize,
    mask: Tensor<B, 3, Bool>,
    dropout: Option<Dropout>,
    precision: Precision,
) -> Tensor<B, 2> {
    let [rows, width] = qkv.dims();
    let (q, k, v) = split_heads(qkv, heads, mask.dims());
    B::masked_attention(q, k, v, mask, dropout, precision).reshape([rows, width / 3])
}

/// [`Gpt2Backend::lm_head`] as the LayerNorm, then the product.
fn lm_head_by_parts<B: Gpt2Backend>(
    norm: PreNorm<'_, B>,
    embedding: Tensor<B, 2>,
    x: Tensor<B, 2>,
    precision: Precision,
) -> Tensor<B, 2> {
    precision.matmul_transposed(B::layer_norm_rows(norm, x), embedding, None)
}

fn linear_residual_by_parts<B: Gpt2Backend>(
    layer: &Linear<B>,
    x: Tensor<B, 2>,
    residual: Tensor<B, 2>,
    precision: Precision,
) -> Tensor<B, 2> {
    residual + precision.linear(layer, x, None)
}

fn first_positions_by_slice<B: Backend>(buffer: Tensor<B, 4>, count: usize) -> Tensor<B, 4> {
    let [batch, heads, _, head_dim] = buffer.dims();
    buffer.slice([0..batch, 0..heads, 0..count, 0..head_dim])
}

fn attention_with_burn<B: Gpt2Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    dropout: Option<Dropout>,
    precision: Precision,
) -> Tensor<B, 3> {
    let [batch, heads, time, head_dim] = q.dims();
    let weights = dropped(attention_weights(q, k, mask, precision), dropout);
    precision.matmul(weights, v).swap_dims(1, 2).reshape([batch, time, heads * head_dim])
}

/// `softmax(q · kᵀ / √head_dim)` over the keys a query may see (`mask` `[batch, time, keys]`
/// is `true` where it may not), for `q` `[batch, heads, time, head_dim]` and `k` `[batch,
/// heads, keys, head_dim]`.
fn attention_weights<B: Gpt2Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    precision: Precision,
) -> Tensor<B, 4> {
    softmax(attention_scores(q, k, mask, precision), 3)
}

/// `q · kᵀ / √head_dim`, −∞ where `mask` hides a key: the scores before the softmax.
fn attention_scores<B: Gpt2Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    precision: Precision,
) -> Tensor<B, 4> {
    let head_dim = q.dims()[3];
    scaled_and_masked(precision.matmul(q, k.transpose()), mask, head_dim)
}

/// `products / √head_dim` for `products` `q · kᵀ` `[batch, heads, time, keys]`, −∞ where `mask`
/// `[batch, time, keys]` hides a key.
pub(crate) fn scaled_and_masked<B: Backend>(
    products: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    head_dim: usize,
) -> Tensor<B, 4> {
    let mask = mask.unsqueeze_dim::<4>(1).expand(products.dims());
    // Scaled after the mask, not before: fusion then does both in one kernel, where it leaves a
    // scaling straight after the product on its own.
    products.mask_fill(mask, f32::NEG_INFINITY) / (head_dim as f64).sqrt()
}

/// The backend's own tensor behind a float tensor.
pub(crate) fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// A float tensor around the backend's own.
pub(crate) fn float<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}
