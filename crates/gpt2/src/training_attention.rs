//! Causal self-attention's core as training runs it through matrix products: the default of
//! [`Gpt2Backend::attention_keeping`] and [`Gpt2Backend::attention_backward`] (the CPU's; CUDA
//! and wgpu run flash attention's kernels from `cube-kernels` instead, or this under
//! `GPT2_ATTENTION=products`, with the softmax between the products in a kernel each way).
//!
//! The softmax goes through each query's log-sum-exp, which the forward pass returns: the
//! backward pass computes the weights again from q and k with it (no reductions), and draws
//! dropout's mask again from its stream, so nothing `time × time` outlives the forward pass.

use crate::{backend::scaled_and_masked, dropout::dropped, Dropout, Gpt2Backend, Precision};
use burn::{prelude::*, tensor::FloatDType};

/// See [`Gpt2Backend::attention_keeping`].
pub(crate) fn attention_keeping<B: Gpt2Backend>(
    qkv: Tensor<B, 2>,
    heads: usize,
    mask: Tensor<B, 3, Bool>,
    dropout: Option<Dropout>,
    precision: Precision,
) -> (Tensor<B, 2>, Tensor<B, 3>) {
    // Rounded once for the products that read them, not by each.
    let [q, k, v] = heads_apart(precision.rounded(qkv), heads, mask.dims());
    let head_dim = q.dims()[3];
    let scores = precision.matmul(q, k.transpose());
    let (weights, logsumexp) = B::attention_softmax(scores, mask, head_dim, dropout, precision);
    let output = side_by_side(precision.matmul(weights, v));
    (output.cast(precision.operands()), logsumexp)
}

/// See [`Gpt2Backend::attention_backward`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward<B: Gpt2Backend>(
    qkv: Tensor<B, 2>,
    output: Tensor<B, 2>,
    logsumexp: Tensor<B, 3>,
    d_output: Tensor<B, 2>,
    heads: usize,
    mask: Tensor<B, 3, Bool>,
    dropout: Option<Dropout>,
    precision: Precision,
) -> Tensor<B, 2> {
    let [q, k, v] = heads_apart(precision.rounded(qkv), heads, mask.dims());
    let [batch, _, time, head_dim] = q.dims();
    let output = output.cast(FloatDType::from(d_output.dtype()));
    let (output, d_output) = (by_heads(output, q.dims()), by_heads(d_output, q.dims()));
    let rounded_d_output = precision.rounded(d_output.clone());
    let scores = precision.matmul(q.clone(), k.clone().transpose());
    let d_weights = precision.matmul(rounded_d_output.clone(), v.transpose());
    let delta = (d_output * output).sum_dim(3).squeeze_dim(3);
    let (weights, d_scores) =
        B::attention_softmax_backward(scores, d_weights, logsumexp, delta, mask, head_dim, dropout, precision);
    let d_v = precision.matmul(weights.transpose(), rounded_d_output);
    let d_q = precision.matmul(d_scores.clone(), k);
    let d_k = precision.matmul(d_scores.transpose(), q);
    // [3, batch, heads, time, head_dim] → [batch, time, 3, heads, head_dim]: the
    // projection's layout, q, k and v side by side.
    let d_qkv = Tensor::stack::<5>(vec![d_q, d_k, d_v], 0).permute([1, 3, 0, 2, 4]);
    d_qkv.reshape([batch * time, 3 * heads * head_dim])
}

/// See [`Gpt2Backend::attention_softmax`]: burn's operations.
pub(crate) fn softmax_by_operations<B: Gpt2Backend>(
    scores: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    head_dim: usize,
    dropout: Option<Dropout>,
) -> (Tensor<B, 4>, Tensor<B, 3>) {
    let scores = scaled_and_masked(scores, mask, head_dim);
    let max = scores.clone().max_dim(3);
    let logsumexp = max.clone() + (scores.clone() - max).exp().sum_dim(3).log();
    let weights = (scores - logsumexp.clone()).exp();
    (dropped(weights, dropout), logsumexp.squeeze_dim(3))
}

/// See [`Gpt2Backend::attention_softmax_backward`]: burn's operations.
pub(crate) fn softmax_backward_by_operations<B: Gpt2Backend>(
    scores: Tensor<B, 4>,
    d_weights: Tensor<B, 4>,
    logsumexp: Tensor<B, 3>,
    delta: Tensor<B, 3>,
    mask: Tensor<B, 3, Bool>,
    head_dim: usize,
    dropout: Option<Dropout>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let weights = (scaled_and_masked(scores, mask, head_dim) - logsumexp.unsqueeze_dim(3)).exp();
    // The same mask the forward pass drew (the same Philox words), not a kept copy of it.
    let scaled_keeps = dropout.map(|dropout| dropout.scaled_keeps::<B, 4>(weights.dims(), &weights.device()));
    let through_dropout = |x: Tensor<B, 4>| match &scaled_keeps {
        Some(scaled_keeps) => x * scaled_keeps.clone(),
        None => x,
    };
    let d_kept = through_dropout(d_weights);
    let d_scores = weights.clone() * (d_kept - delta.unsqueeze_dim(3)) / (head_dim as f64).sqrt();
    (through_dropout(weights), d_scores)
}

/// q, k and v `[batch, heads, time, head_dim]` from the projection's rows `[batch × time, 3 ×
/// d]`, in one copy. Each comes out contiguous: CubeCL's products copy an operand whose batch
/// dimensions are not outermost (a head's rows are `3 × d` apart in the projection), and the
/// backward pass multiplies by each again.
fn heads_apart<B: Backend>(qkv: Tensor<B, 2>, heads: usize, [batch, time, _]: [usize; 3]) -> [Tensor<B, 4>; 3] {
    let head_dim = qkv.dims()[1] / (3 * heads);
    let apart = qkv
        .reshape([batch, time, 3, heads, head_dim])
        .permute([2, 0, 3, 1, 4])
        // Not a view of the projection: this is the copy.
        .reshape([3 * batch * heads, time, head_dim])
        .reshape([3, batch, heads, time, head_dim]);
    [0, 1, 2].map(|i| apart.clone().narrow(0, i, 1).reshape([batch, heads, time, head_dim]))
}

/// `[batch, heads, time, head_dim]` from `[batch × time, heads × head_dim]`, contiguous.
fn by_heads<B: Backend>(rows: Tensor<B, 2>, [batch, heads, time, head_dim]: [usize; 4]) -> Tensor<B, 4> {
    rows.reshape([batch, time, heads, head_dim])
        .swap_dims(1, 2)
        .reshape([batch * heads, time, head_dim])
        .reshape([batch, heads, time, head_dim])
}

/// `[batch, heads, time, head_dim]` → `[batch × time, heads × head_dim]`.
fn side_by_side<B: Backend>(heads: Tensor<B, 4>) -> Tensor<B, 2> {
    let [batch, n_head, time, head_dim] = heads.dims();
    heads.swap_dims(1, 2).reshape([batch * time, n_head * head_dim])
}
