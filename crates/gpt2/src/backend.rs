//! The backends the model runs on, and the operations it leaves to each of them: the products
//! with a weight matrix, the core of attention, GELU, and the view of a KV cache's positions.
//!
//! burn 0.21's CPU backend copies both operands of every matrix product (its reshape copies
//! even a contiguous tensor) and makes a transposed operand contiguous element by element.
//! Decoding multiplies a few rows by every weight, so a gpt2 decoding step spent ~1 s copying
//! weights, 0.43 s of it transposing the 154 MB token embedding for the LM head, and attention
//! copied the cached keys and values several times a step. The CPU backend here hands the
//! arrays, where they lie, to the `kernels` crate. Other backends (CUDA, and autodiff for
//! training) keep burn's own operations.

use crate::{
    attention::split_heads,
    dropout::{dropped, Dropout},
    kv_cache::decode_attention_by_parts,
    training_attention, PreNorm, Precision,
};
use burn::{
    backend::NdArray,
    nn::{LayerNorm, Linear},
    prelude::*,
    tensor::{
        activation::{gelu_approximate, softmax},
        ops::FloatTensor,
        IndexingUpdateOp, TensorData, TensorPrimitive,
    },
};
use burn_ndarray::NdArrayTensor;
use kernels::{AdamWStep, MaskStream};
use ndarray::{ArcArray, Array, ArrayView2, ArrayView4, ArrayViewD, Axis, Dimension, Ix1, Ix3, IxDyn, Slice};

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
}

impl<B: Gpt2Backend> ResidualBranch<B> {
    /// The end of a branch whose last layer is `layer` on `x`, with `dropout`.
    pub fn end(layer: &Linear<B>, x: Tensor<B, 2>, dropout: Option<Dropout>, precision: Precision) -> Self {
        Self { product: precision.matmul(x, layer.weight.val()), bias: bias_or_zeros(layer), dropout }
    }

    /// The stream after the branch: `residual + dropout(product + bias)`.
    pub fn added_to(self, residual: Tensor<B, 2>) -> Tensor<B, 2> {
        residual + dropped(self.product + self.bias.unsqueeze(), self.dropout)
    }
}

/// `layer`'s bias, or zeros for a layer without one.
pub(crate) fn bias_or_zeros<B: Backend>(layer: &Linear<B>) -> Tensor<B, 1> {
    match &layer.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([layer.weight.dims()[1]], &layer.weight.device()),
    }
}

/// A burn backend the model can run on.
pub trait Gpt2Backend: Backend {
    /// `norm` over each row of `x` `[rows, d]`; `epsilon` is `norm`'s own (burn's `LayerNorm`
    /// keeps it to itself).
    fn layer_norm_rows(norm: &LayerNorm<Self>, epsilon: f64, x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let _ = epsilon;
        norm.forward(x)
    }

    /// `(x − mean) / √(variance + ε) · γ + β` over each row of `x` `[rows, d]` (γ, β `[d]`), and
    /// what its backward pass needs: `(output, the normalised rows, each row's
    /// 1 / √(variance + ε) [rows, 1])`.
    fn layer_norm_keeping(
        x: Tensor<Self, 2>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        epsilon: f64,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
        let centered = x.clone() - x.mean_dim(1);
        let variance = (centered.clone() * centered.clone()).mean_dim(1);
        let inverse_deviation = (variance + epsilon).sqrt().recip();
        let normalized = centered * inverse_deviation.clone();
        (normalized.clone() * gamma.unsqueeze() + beta.unsqueeze(), normalized, inverse_deviation)
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
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
        let stream = branch.added_to(residual);
        let (output, normalized, inverse_deviation) = Self::layer_norm_keeping(stream.clone(), gamma, beta, epsilon);
        (stream, output, normalized, inverse_deviation)
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
    /// gradient of the LayerNorm's input `d_x` (all of it) and the branch's dropout, and the
    /// branch's gradients come third: the product's, `d_x` through dropout, and the bias's,
    /// its sum over the rows.
    ///
    /// [`layer_norm_keeping`]: Gpt2Backend::layer_norm_keeping
    /// [`residual_layer_norm_keeping`]: Gpt2Backend::residual_layer_norm_keeping
    #[allow(clippy::type_complexity)]
    fn layer_norm_parameter_gradients(
        d_y: Tensor<Self, 2>,
        normalized: Tensor<Self, 2>,
        branch: Option<(Tensor<Self, 2>, Option<Dropout>)>,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>, Option<(Tensor<Self, 2>, Tensor<Self, 1>)>) {
        let d = d_y.dims()[1];
        let branch = branch.map(|(d_x, dropout)| {
            let d_product = dropped(d_x, dropout);
            (d_product.clone(), d_product.sum_dim(0).reshape([d]))
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
        (stream.clone(), Self::layer_norm_rows(norm.layer, norm.epsilon, stream))
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
        let [rows, width] = qkv.dims();
        let (q, k, v) = split_heads(qkv, heads, mask.dims());
        Self::masked_attention(q, k, v, mask, dropout, precision).reshape([rows, width / 3])
    }

    /// Causal self-attention's core as training's custom backward pass takes it: from the q/k/v
    /// projection's rows `[batch × time, 3 × d]` (q, k and v side by side, each with its `heads`
    /// heads side by side) to the heads' outputs side by side `[batch × time, d]`, with each
    /// query's log-sum-exp of its scaled scores `[batch, heads, time]`, from which
    /// [`attention_backward`] computes the weights again. `mask` `[batch, time, time]` is `true`
    /// where a query must not see a key (keys after the query among them); `dropout` on the
    /// weights.
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

    /// `buffer` `[len]` with each of `pieces` `([n], start)` added to its stretch
    /// `start..start + n` (the stretches apart): how the train stage sums each micro-batch's
    /// gradients into the optimizer's flat buffers.
    fn add_to_stretches(buffer: Tensor<Self, 1>, pieces: Vec<(Tensor<Self, 1>, usize)>) -> Tensor<Self, 1> {
        pieces.into_iter().fold(buffer, |buffer, (piece, start)| {
            let stretch = start..start + piece.dims()[0];
            // Summed before the assignment, so that the buffer is held once and written in place.
            let sum = buffer.clone().slice(stretch.clone()) + piece;
            buffer.slice_assign(stretch, sum)
        })
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
    /// row's cross-entropy, for `logits` `[rows, vocab]`, `targets` and `weights` `[rows]`.
    fn cross_entropy(
        logits: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        weights: Tensor<Self, 1>,
    ) -> Tensor<Self, 1> {
        let (losses, _) = Self::cross_entropy_rows(logits, targets);
        (losses * weights.clone()).sum() / weights.sum()
    }

    /// Each row's cross-entropy against its target, `log Σ exp(logits) − logits[target]`, and
    /// its log-normaliser `log Σ exp(logits)` (what the backward pass takes), both `[rows]`, for
    /// `logits` `[rows, vocab]` and `targets` `[rows]`.
    fn cross_entropy_rows(
        logits: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>) {
        let rows = targets.dims()[0];
        let max = logits.clone().max_dim(1);
        let log_normalisers = max.clone() + (logits.clone() - max).exp().sum_dim(1).log();
        let target_logits = logits.gather(1, targets.reshape([rows, 1]));
        ((log_normalisers.clone() - target_logits).reshape([rows]), log_normalisers.reshape([rows]))
    }

    /// The gradient of `logits` from that of each row's [`cross_entropy_rows`], `d_losses`
    /// `[rows]`: `(softmax(logits) − one-hot(target)) · d_loss` on each row, with the
    /// log-normalisers it returned.
    ///
    /// [`cross_entropy_rows`]: Gpt2Backend::cross_entropy_rows
    fn cross_entropy_rows_backward(
        logits: Tensor<Self, 2>,
        log_normalisers: Tensor<Self, 1>,
        targets: Tensor<Self, 1, Int>,
        d_losses: Tensor<Self, 1>,
    ) -> Tensor<Self, 2> {
        let rows = targets.dims()[0];
        let scale = d_losses.reshape([rows, 1]);
        // The one-hot part is one number a row, scattered in: no `rows × vocab` comparison.
        ((logits - log_normalisers.reshape([rows, 1])).exp() * scale.clone()).scatter(
            1,
            targets.reshape([rows, 1]),
            -scale,
            IndexingUpdateOp::Add,
        )
    }

    /// GPT-2's GELU, with tanh: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
    fn gelu_tanh<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        gelu_approximate(x)
    }

    /// GPT-2's GELU of `product + bias`, for `product` `[rows, d]` and `bias` `[d]`: the end of
    /// the MLP's first layer, as training runs it.
    fn bias_gelu(product: Tensor<Self, 2>, bias: Tensor<Self, 1>) -> Tensor<Self, 2> {
        Self::gelu_tanh(product + bias.unsqueeze())
    }

    /// The gradients of [`bias_gelu`]'s product and bias from that of its output, `d_hidden`:
    /// the product's `d_hidden · gelu'(product + bias)`, with `t = tanh(√(2/π) · (x + 0.044715
    /// x³))` and `gelu'(x) = (1 + t)/2 + x/2 · (1 − t²) · √(2/π) · (1 + 3 · 0.044715 x²)`, and
    /// the bias's, the sum of those over the rows.
    ///
    /// [`bias_gelu`]: Gpt2Backend::bias_gelu
    fn bias_gelu_backward(
        product: Tensor<Self, 2>,
        bias: Tensor<Self, 1>,
        d_hidden: Tensor<Self, 2>,
    ) -> (Tensor<Self, 2>, Tensor<Self, 1>) {
        let d = bias.dims()[0];
        let x = product + bias.unsqueeze();
        let squared = x.clone() * x.clone();
        let (cubic, sqrt_2_over_pi) = (kernels::GELU_CUBIC, kernels::GELU_SQRT_2_OVER_PI);
        let t = ((x.clone() * squared.clone() * cubic + x.clone()) * sqrt_2_over_pi).tanh();
        let inner_derivative = (squared * (3.0 * cubic) + 1.0) * sqrt_2_over_pi;
        let derivative = (t.clone() + 1.0) * 0.5 + x * 0.5 * (-(t.clone() * t) + 1.0) * inner_derivative;
        let d_product = d_hidden * derivative;
        (d_product.clone(), d_product.sum_dim(0).reshape([d]))
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
    let y = precision.linear(layer, B::layer_norm_rows(norm.layer, norm.epsilon, x));
    match gelu {
        true => B::gelu_tanh(y),
        false => y,
    }
}

fn linear_residual_by_parts<B: Gpt2Backend>(
    layer: &Linear<B>,
    x: Tensor<B, 2>,
    residual: Tensor<B, 2>,
    precision: Precision,
) -> Tensor<B, 2> {
    residual + precision.linear(layer, x)
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
fn attention_weights<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    precision: Precision,
) -> Tensor<B, 4> {
    softmax(attention_scores(q, k, mask, precision), 3)
}

/// `q · kᵀ / √head_dim`, −∞ where `mask` hides a key: the scores before the softmax.
pub(crate) fn attention_scores<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    precision: Precision,
) -> Tensor<B, 4> {
    let [batch, heads, time, head_dim] = q.dims();
    let keys = k.dims()[2];
    let mask = mask.unsqueeze_dim::<4>(1).expand([batch, heads, time, keys]);
    // Scaled after the mask, not before: fusion then does both in one kernel, where it leaves a
    // scaling straight after the product on its own.
    precision.matmul(q, k.transpose()).mask_fill(mask, f32::NEG_INFINITY) / (head_dim as f64).sqrt()
}

/// CUDA and wgpu: burn's operations, but each in one kernel of `cube_kernels`: LayerNorm
/// (forward with the residual branch before it, its input's gradient, γ's, β's and the
/// branch's), training's attention (flash attention), the MLP's GELU and bias backward, the
/// loss's cross-entropy, dropout's masks, the gradients' sums into flat buffers, decoding
/// attention with its cache write, a few rows' linear layers with what surrounds them in a
/// block (decoding: one row a sample), and the most likely tokens top-k sampling draws among.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
macro_rules! cube_backend {
    ($backend:ty) => {
        impl Gpt2Backend for $backend {
            fn allocator_memory(device: &Self::Device) -> Option<AllocatorMemory> {
                let usage = <Self as cube_kernels::DeviceMemory>::memory_usage(device)?;
                Some(AllocatorMemory { in_use: usage.bytes_in_use, reserved: usage.bytes_reserved })
            }

            fn layer_norm_rows(norm: &LayerNorm<Self>, epsilon: f64, x: Tensor<Self, 2>) -> Tensor<Self, 2> {
                match &norm.beta {
                    Some(beta) => Self::layer_norm_keeping(x, norm.gamma.val(), beta.val(), epsilon).0,
                    None => norm.forward(x),
                }
            }

            fn layer_norm_keeping(
                x: Tensor<Self, 2>,
                gamma: Tensor<Self, 1>,
                beta: Tensor<Self, 1>,
                epsilon: f64,
            ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
                let normed = <Self as cube_kernels::LayerNormRows>::layer_norm_rows(
                    primitive(x),
                    primitive(gamma),
                    primitive(beta),
                    epsilon,
                    None,
                );
                (float(normed.output), float(normed.normalized), float(normed.inverse_deviation))
            }

            fn residual_layer_norm_keeping(
                residual: Tensor<Self, 2>,
                branch: ResidualBranch<Self>,
                gamma: Tensor<Self, 1>,
                beta: Tensor<Self, 1>,
                epsilon: f64,
            ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
                let branch = cube_kernels::Branch {
                    product: primitive(branch.product),
                    bias: primitive(branch.bias),
                    dropout: branch.dropout.map(dropout_draw),
                };
                let normed = <Self as cube_kernels::LayerNormRows>::layer_norm_rows(
                    primitive(residual),
                    primitive(gamma),
                    primitive(beta),
                    epsilon,
                    Some(branch),
                );
                let stream = normed.stream.expect("a branch's sum");
                (float(stream), float(normed.output), float(normed.normalized), float(normed.inverse_deviation))
            }

            fn layer_norm_backward(
                d_y: Tensor<Self, 2>,
                normalized: Tensor<Self, 2>,
                inverse_deviation: Tensor<Self, 2>,
                gamma: Tensor<Self, 1>,
                d_stream: Option<Tensor<Self, 2>>,
            ) -> Tensor<Self, 2> {
                float(<Self as cube_kernels::LayerNormRows>::layer_norm_rows_backward(
                    primitive(d_y),
                    primitive(normalized),
                    primitive(inverse_deviation),
                    primitive(gamma),
                    d_stream.map(primitive),
                ))
            }

            fn layer_norm_parameter_gradients(
                d_y: Tensor<Self, 2>,
                normalized: Tensor<Self, 2>,
                branch: Option<(Tensor<Self, 2>, Option<Dropout>)>,
            ) -> (Tensor<Self, 1>, Tensor<Self, 1>, Option<(Tensor<Self, 2>, Tensor<Self, 1>)>) {
                let gradients = <Self as cube_kernels::LayerNormRows>::layer_norm_rows_parameter_gradients(
                    primitive(d_y),
                    primitive(normalized),
                    branch.map(|(d_x, dropout)| (primitive(d_x), dropout.map(dropout_draw))),
                );
                let branch = gradients.branch.map(|(d_product, d_bias)| (float(d_product), float(d_bias)));
                (float(gradients.gamma), float(gradients.beta), branch)
            }

            fn cross_entropy_rows(
                logits: Tensor<Self, 2>,
                targets: Tensor<Self, 1, Int>,
            ) -> (Tensor<Self, 1>, Tensor<Self, 1>) {
                let (losses, log_normalisers) = <Self as cube_kernels::CrossEntropyRows>::cross_entropy_rows(
                    primitive(logits),
                    targets.into_primitive(),
                );
                (float(losses), float(log_normalisers))
            }

            fn cross_entropy_rows_backward(
                logits: Tensor<Self, 2>,
                log_normalisers: Tensor<Self, 1>,
                targets: Tensor<Self, 1, Int>,
                d_losses: Tensor<Self, 1>,
            ) -> Tensor<Self, 2> {
                float(<Self as cube_kernels::CrossEntropyRows>::cross_entropy_rows_backward(
                    primitive(logits),
                    primitive(log_normalisers),
                    targets.into_primitive(),
                    primitive(d_losses),
                ))
            }

            fn bias_gelu_backward(
                product: Tensor<Self, 2>,
                bias: Tensor<Self, 1>,
                d_hidden: Tensor<Self, 2>,
            ) -> (Tensor<Self, 2>, Tensor<Self, 1>) {
                let (d_product, d_bias) = <Self as cube_kernels::BiasGeluBackward>::bias_gelu_backward(
                    primitive(product),
                    primitive(bias),
                    primitive(d_hidden),
                );
                (float(d_product), float(d_bias))
            }

            fn attention_keeping(
                qkv: Tensor<Self, 2>,
                heads: usize,
                mask: Tensor<Self, 3, Bool>,
                dropout: Option<Dropout>,
                precision: Precision,
            ) -> (Tensor<Self, 2>, Tensor<Self, 3>) {
                if !flash_attention_applies(&qkv, &mask, heads) {
                    return training_attention::attention_keeping(qkv, heads, mask, dropout, precision);
                }
                let (y, logsumexp) = <Self as cube_kernels::FlashAttention>::flash_attention(
                    primitive(qkv),
                    heads,
                    mask.into_primitive(),
                    dropout.map(dropout_draw),
                );
                (float(y), float(logsumexp))
            }

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
                if !flash_attention_applies(&qkv, &mask, heads) {
                    return training_attention::attention_backward(
                        qkv, output, logsumexp, d_output, heads, mask, dropout, precision,
                    );
                }
                float(<Self as cube_kernels::FlashAttention>::flash_attention_backward(
                    primitive(qkv),
                    primitive(output),
                    primitive(logsumexp),
                    primitive(d_output),
                    heads,
                    mask.into_primitive(),
                    dropout.map(dropout_draw),
                ))
            }

            fn decode_attention(
                qkv: Tensor<Self, 2>,
                keys: Tensor<Self, 4>,
                values: Tensor<Self, 4>,
                position: usize,
                heads: usize,
                precision: Precision,
            ) -> (Tensor<Self, 2>, Tensor<Self, 4>, Tensor<Self, 4>) {
                if position >= cube_kernels::MAX_DECODE_KEYS {
                    return decode_attention_by_parts(qkv, keys, values, position, heads, precision);
                }
                // The kernel computes in f32.
                let (y, keys, values) = <Self as cube_kernels::DecodeAttention>::decode_attention(
                    primitive(qkv),
                    primitive(keys),
                    primitive(values),
                    position,
                );
                (float(y), float(keys), float(values))
            }

            fn most_likely(logits: Tensor<Self, 2>, k: usize) -> Option<Tensor<Self, 2>> {
                let vocab = logits.dims()[1];
                let applies = (1..=cube_kernels::MAX_MOST_LIKELY.min(vocab)).contains(&k)
                    && vocab < cube_kernels::MAX_MOST_LIKELY_VOCAB
                    && logits.dtype() == burn::tensor::DType::F32;
                applies.then(|| float(<Self as cube_kernels::MostLikely>::most_likely(primitive(logits), k)))
            }

            fn penalise_seen(
                logits: Tensor<Self, 2>,
                seen: impl FnOnce() -> Tensor<Self, 2, Int>,
                penalty: f32,
            ) -> Result<Tensor<Self, 2>, Tensor<Self, 2>> {
                let penalised = <Self as cube_kernels::RepetitionPenalty>::penalise_seen(
                    primitive(logits),
                    seen().into_primitive(),
                    penalty,
                );
                Ok(float(penalised))
            }

            fn dropout_keeps(
                stream: MaskStream,
                p: f64,
                kept: f32,
                len: usize,
                device: &Self::Device,
            ) -> Tensor<Self, 1> {
                float(<Self as cube_kernels::DropoutKeeps>::dropout_keeps(stream, p, kept, len, device))
            }

            fn adamw_update(
                param: Tensor<Self, 1>,
                grad: Tensor<Self, 1>,
                clip: Option<Tensor<Self, 1>>,
                first: Tensor<Self, 1>,
                second: Tensor<Self, 1>,
                step: AdamWStep,
            ) -> (Tensor<Self, 1>, Tensor<Self, 1>, Tensor<Self, 1>) {
                let (param, first, second) = <Self as cube_kernels::AdamWUpdate>::adamw_update(
                    primitive(param),
                    primitive(grad),
                    clip.map(primitive),
                    primitive(first),
                    primitive(second),
                    step,
                );
                (float(param), float(first), float(second))
            }

            fn add_to_stretches(buffer: Tensor<Self, 1>, pieces: Vec<(Tensor<Self, 1>, usize)>) -> Tensor<Self, 1> {
                let pieces = pieces.into_iter().map(|(piece, start)| (primitive(piece), start)).collect();
                float(<Self as cube_kernels::AddToStretches>::add_to_stretches(primitive(buffer), pieces))
            }

            fn normed_linear(
                norm: PreNorm<'_, Self>,
                layer: &Linear<Self>,
                x: Tensor<Self, 2>,
                gelu: bool,
                precision: Precision,
            ) -> Tensor<Self, 2> {
                let Some(beta) = &norm.layer.beta else {
                    return normed_linear_by_parts(norm, layer, x, gelu, precision);
                };
                let before = cube_kernels::Before::LayerNorm {
                    gamma: primitive(norm.layer.gamma.val()),
                    beta: primitive(beta.val()),
                    epsilon: norm.epsilon,
                };
                let after = if gelu { cube_kernels::After::Gelu } else { cube_kernels::After::Nothing };
                few_rows_linear(layer, x.clone(), before, after, precision)
                    .unwrap_or_else(|| normed_linear_by_parts(norm, layer, x, gelu, precision))
            }

            fn linear_residual(
                layer: &Linear<Self>,
                x: Tensor<Self, 2>,
                residual: Tensor<Self, 2>,
                precision: Precision,
            ) -> Tensor<Self, 2> {
                let after = cube_kernels::After::Add(primitive(residual.clone()));
                few_rows_linear(layer, x.clone(), cube_kernels::Before::Nothing, after, precision)
                    .unwrap_or_else(|| linear_residual_by_parts(layer, x, residual, precision))
            }
        }
    };
}

/// Whether `cube_kernels`' flash attention takes attention over these q/k/v rows and mask:
/// heads at most `MAX_FLASH_HEAD_DIM` wide (every GPT-2's are 64), and booleans stored as the
/// kernels read them (CUDA's and wgpu's are). It computes in f32 under either precision (see
/// [`Precision`]): what bf16 would round away is attention's few products, and burn's
/// operations would cost its `time × time` scores again.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn flash_attention_applies<B: Backend>(qkv: &Tensor<B, 2>, mask: &Tensor<B, 3, Bool>, heads: usize) -> bool {
    qkv.dims()[1] / (3 * heads) <= cube_kernels::MAX_FLASH_HEAD_DIM
        && cube_kernels::FLASH_MASK_DTYPES.contains(&mask.dtype())
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn dropout_draw(dropout: Dropout) -> cube_kernels::DropoutDraw {
    cube_kernels::DropoutDraw { stream: dropout.stream, p: dropout.p }
}

/// `after(before(x) · W + b)` in one launch of `cube_kernels`' few-row kernel, where it
/// applies: at most `MAX_FEW_ROWS` rows, `W` stored in `precision`'s operand type (f32, or
/// bf16 for sampling), a bias. `None` elsewhere.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn few_rows_linear<B: Gpt2Backend + cube_kernels::FewRowsLinear>(
    layer: &Linear<B>,
    x: Tensor<B, 2>,
    before: cube_kernels::Before<FloatTensor<B>>,
    after: cube_kernels::After<FloatTensor<B>>,
    precision: Precision,
) -> Option<Tensor<B, 2>> {
    let bias = layer.bias.as_ref()?;
    let weight = layer.weight.val();
    if x.dims()[0] > cube_kernels::MAX_FEW_ROWS || weight.dtype() != precision.operands().into() {
        return None;
    }
    let weight = primitive(weight);
    Some(float(B::few_rows_linear(primitive(x), weight, primitive(bias.val()), before, after)))
}

#[cfg(feature = "cuda")]
cube_backend!(Gpu);
#[cfg(feature = "cuda")]
cube_backend!(GpuEager);
#[cfg(feature = "wgpu")]
cube_backend!(Wgpu);
#[cfg(feature = "wgpu")]
cube_backend!(WgpuEager);
#[cfg(feature = "cuda-compile")]
cube_backend!(cuda_compile::CudaCompile);
#[cfg(feature = "cuda-compile")]
cube_backend!(cuda_compile::CudaCompileEager);

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

/// The backend's own tensor behind a float tensor.
pub(crate) fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// A float tensor around the backend's own.
pub(crate) fn float<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
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
