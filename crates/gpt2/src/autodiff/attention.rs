//! Causal self-attention's core with its backward pass written out.
//!
//! Differentiated operation by operation, burn 0.21's attention (products, scaling, mask,
//! softmax built from a max, an exponential, a sum and a division, dropout) and the split of
//! the q/k/v projection into heads cost 47 GPU kernels a layer forward and backward: among
//! them a zero-filled gradient for each of q, k and v, each then written into its third of the
//! projection's gradient. Here the backend's [`Gpt2Backend::attention_keeping`] and
//! [`Gpt2Backend::attention_backward`] do the work (on CUDA and wgpu, flash attention's
//! kernels) and the heads are put back side by side in one copy.
//!
//! Nothing `time × time` is kept for the backward pass: the forward pass keeps each query's
//! log-sum-exp of its scores, from which the weights are computed again from q and k (as
//! flash attention does), and dropout's mask is drawn again from its stream. Keeping the
//! weights and the weights after dropout took 8 bytes an element, 4.8 GB for gpt2 at 4 × 1024.

use super::{float, primitive};
use crate::{Dropout, Gpt2Backend, Precision};
use burn::{
    backend::autodiff::{
        checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
        grads::Gradients,
        ops::{Backward, Ops, OpsKind},
        Autodiff,
    },
    prelude::*,
    tensor::ops::{BoolTensor, FloatTensor},
};

/// From the q/k/v projection's rows `[batch × time, 3 × d]` to the heads' outputs side by
/// side, `[batch × time, d]`; `mask` is `[batch, time, time]`, `true` where a query must not see
/// a key.
pub(super) fn self_attention<B: Gpt2Backend, C: CheckpointStrategy>(
    qkv: Tensor<Autodiff<B, C>, 2>,
    heads: usize,
    mask: Tensor<Autodiff<B, C>, 3, Bool>,
    dropout: Option<Dropout>,
    precision: Precision,
) -> Tensor<Autodiff<B, C>, 2> {
    let qkv = qkv.into_primitive().tensor();
    let mask = Tensor::<B, 3, Bool>::from_primitive(mask.into_primitive());
    let [q, k, v] = heads_apart(float::<B, 2>(qkv.primitive), heads, mask.dims());
    let (y, logsumexp) = B::attention_keeping(q.clone(), k.clone(), v.clone(), mask.clone(), dropout, precision);
    let output = side_by_side(y.clone());
    let output = match AttentionBackward.prepare::<C>([qkv.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            prep.finish(State { q, k, v, y, logsumexp, mask, dropout, precision }.into_primitives(), primitive(output))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(output)),
    };
    float(output)
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

/// What the backward pass reads: q, k and v by heads, the heads' outputs and each query's
/// log-sum-exp, the mask, and dropout's stream.
struct State<B: Backend> {
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    y: Tensor<B, 4>,
    logsumexp: Tensor<B, 3>,
    mask: Tensor<B, 3, Bool>,
    dropout: Option<Dropout>,
    precision: Precision,
}

type Primitives<B> = ([FloatTensor<B>; 5], BoolTensor<B>, Option<Dropout>, Precision);

impl<B: Backend> State<B> {
    fn into_primitives(self) -> Primitives<B> {
        let tensors =
            [primitive(self.q), primitive(self.k), primitive(self.v), primitive(self.y), primitive(self.logsumexp)];
        (tensors, self.mask.into_primitive(), self.dropout, self.precision)
    }

    fn from_primitives(([q, k, v, y, logsumexp], mask, dropout, precision): Primitives<B>) -> Self {
        Self {
            q: float(q),
            k: float(k),
            v: float(v),
            y: float(y),
            logsumexp: float(logsumexp),
            mask: Tensor::from_primitive(mask),
            dropout,
            precision,
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Gpt2Backend> Backward<B, 1> for AttentionBackward {
    type State = Primitives<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [Some(node)] = ops.parents else { return };
        let d_y: Tensor<B, 2> = float(grads.consume::<B>(&ops.node));
        let State { q, k, v, y, logsumexp, mask, dropout, precision } = State::from_primitives(ops.state);
        let [batch, n_head, time, head_dim] = q.dims();
        let d_y = by_heads(d_y, [batch, n_head, time, head_dim]);
        let [d_q, d_k, d_v] = B::attention_backward(q, k, v, y, logsumexp, d_y, mask, dropout, precision);
        // [3, batch, heads, time, head_dim] → [batch, time, 3, heads, head_dim]: the
        // projection's layout, q, k and v side by side.
        let d_qkv = Tensor::stack::<5>(vec![d_q, d_k, d_v], 0).permute([1, 3, 0, 2, 4]);
        grads.register::<B>(node.id, primitive(d_qkv.reshape([batch * time, 3 * n_head * head_dim])));
    }
}
