//! Causal self-attention's core with its backward pass written out.
//!
//! Differentiated operation by operation, burn 0.21's attention (products, scaling, mask,
//! softmax built from a max, an exponential, a sum and a division, dropout) and the split of
//! the q/k/v projection into heads cost 47 GPU kernels a layer forward and backward: among
//! them a zero-filled gradient for each of q, k and v, each then written into its third of the
//! projection's gradient. Here the backend's [`Gpt2Backend::attention_keeping`] and
//! [`Gpt2Backend::attention_backward`] do the work on the projection's rows (on CUDA and wgpu,
//! flash attention's kernels, which read and write that layout: no copies into heads and back).
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
    let rows = float::<B, 2>(qkv.primitive);
    let (y, logsumexp) = B::attention_keeping(rows.clone(), heads, mask.clone(), dropout, precision);
    let output = match AttentionBackward.prepare::<C>([qkv.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let state = State { qkv: rows, y: y.clone(), logsumexp, heads, mask, dropout, precision };
            prep.finish(state.into_primitives(), primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(y)),
    };
    float(output)
}

/// What the backward pass reads: the q/k/v rows, the heads' outputs and each query's
/// log-sum-exp, the mask, and dropout's stream.
struct State<B: Backend> {
    qkv: Tensor<B, 2>,
    y: Tensor<B, 2>,
    logsumexp: Tensor<B, 3>,
    heads: usize,
    mask: Tensor<B, 3, Bool>,
    dropout: Option<Dropout>,
    precision: Precision,
}

type Primitives<B> = ([FloatTensor<B>; 3], usize, BoolTensor<B>, Option<Dropout>, Precision);

impl<B: Backend> State<B> {
    fn into_primitives(self) -> Primitives<B> {
        let tensors = [primitive(self.qkv), primitive(self.y), primitive(self.logsumexp)];
        (tensors, self.heads, self.mask.into_primitive(), self.dropout, self.precision)
    }

    fn from_primitives(([qkv, y, logsumexp], heads, mask, dropout, precision): Primitives<B>) -> Self {
        Self {
            qkv: float(qkv),
            y: float(y),
            logsumexp: float(logsumexp),
            heads,
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
        let State { qkv, y, logsumexp, heads, mask, dropout, precision } = State::from_primitives(ops.state);
        let d_qkv = B::attention_backward(qkv, y, logsumexp, d_y, heads, mask, dropout, precision);
        grads.register::<B>(node.id, primitive(d_qkv));
    }
}
