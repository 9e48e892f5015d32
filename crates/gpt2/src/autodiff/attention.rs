//! Causal self-attention's core with its backward pass written out.
//!
//! Differentiated operation by operation, burn 0.21's attention (products, scaling, mask,
//! softmax built from a max, an exponential, a sum and a division, dropout) and the split of
//! the q/k/v projection into heads cost 47 GPU kernels a layer forward and backward: among
//! them a zero-filled gradient for each of q, k and v, each then written into its third of the
//! projection's gradient. Written out, the backward pass is the four products, one reduction
//! (softmax's `Σ p · dp`) and the heads put back side by side in one copy.
//!
//! Nothing `time × time` is kept for the backward pass but dropout's draw, as one byte an
//! element on CUDA: the weights are computed again from q and k (one more product and softmax,
//! as flash attention does), where keeping them and the weights after dropout took 8 bytes an
//! element, 4.8 GB for gpt2 at 4 × 1024.

use super::{float, primitive};
use crate::{backend::attention_weights, Gpt2Backend, Precision};
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
    dropout: Option<crate::Dropout>,
    precision: Precision,
) -> Tensor<Autodiff<B, C>, 2> {
    let qkv = qkv.into_primitive().tensor();
    let mask = Tensor::<B, 3, Bool>::from_primitive(mask.into_primitive());
    let [q, k, v] = heads_apart(float::<B, 2>(qkv.primitive), heads, mask.dims());
    let [batch, _, time, _] = q.dims();
    // Dropout's draw comes first: the softmax's last division and dropout are then one kernel.
    let keeps = dropout.map(|dropout| (dropout.keeps::<B, 4>([batch, heads, time, time], &q.device()), dropout.p));
    let weights = attention_weights(q.clone(), k.clone(), mask.clone(), precision);
    // The draw as drawn (0.0 or 1.0) here, kept as booleans for the backward pass: burn does
    // not fuse a cast from booleans, which here would be one more pass over `time × time`.
    let kept = match &keeps {
        Some((keeps, p)) => dropped(weights, keeps.clone(), *p),
        None => weights,
    };
    let dropout = keeps.map(|(keeps, p)| Draw { keeps: keeps.equal_elem(1.0), p });
    let y = side_by_side(precision.matmul(kept, v.clone()));
    let output = match AttentionBackward.prepare::<C>([qkv.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            prep.finish(State { q, k, v, mask, dropout, precision }.into_primitives(), primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(y)),
    };
    float(output)
}

/// Which attention weights dropout kept, and at which probability it drops.
struct Draw<B: Backend> {
    keeps: Tensor<B, 4, Bool>,
    p: f64,
}

impl<B: Backend> Draw<B> {
    fn apply(&self, weights: Tensor<B, 4>) -> Tensor<B, 4> {
        dropped(weights, self.keeps.clone().float(), self.p)
    }
}

/// The weights after dropout at probability `p`, with `keeps` 1.0 where it keeps one.
fn dropped<B: Backend>(weights: Tensor<B, 4>, keeps: Tensor<B, 4>, p: f64) -> Tensor<B, 4> {
    weights * keeps * (1.0 / (1.0 - p))
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

/// What the backward pass reads: q, k and v by heads, the mask, and dropout's draw.
struct State<B: Backend> {
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 3, Bool>,
    dropout: Option<Draw<B>>,
    precision: Precision,
}

type Primitives<B> = ([FloatTensor<B>; 3], BoolTensor<B>, Option<(BoolTensor<B>, f64)>, Precision);

impl<B: Backend> State<B> {
    fn into_primitives(self) -> Primitives<B> {
        (
            [primitive(self.q), primitive(self.k), primitive(self.v)],
            self.mask.into_primitive(),
            self.dropout.map(|dropout| (dropout.keeps.into_primitive(), dropout.p)),
            self.precision,
        )
    }

    fn from_primitives(([q, k, v], mask, dropout, precision): Primitives<B>) -> Self {
        Self {
            q: float(q),
            k: float(k),
            v: float(v),
            mask: Tensor::from_primitive(mask),
            dropout: dropout.map(|(keeps, p)| Draw { keeps: Tensor::from_primitive(keeps), p }),
            precision,
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend> Backward<B, 1> for AttentionBackward {
    type State = Primitives<B>;

    /// With `p` the weights, `p'` the weights after dropout (`p` without) and `y = p' · v`:
    /// `dv = p'ᵀ · dy`, `dp' = dy · vᵀ`; through dropout and softmax the scores' gradient is
    /// `ds = p' · dp' − p · Σ_keys p' · dp'` (dropout's mask and scale cancel between `p` and
    /// `dp`), scaled by `1/√head_dim`; `dq = ds · k`, `dk = dsᵀ · q`. Masked keys have `p = 0`,
    /// so their `ds` is 0 with no mask.
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [Some(node)] = ops.parents else { return };
        let d_y: Tensor<B, 2> = float(grads.consume::<B>(&ops.node));
        let State { q, k, v, mask, dropout, precision } = State::from_primitives(ops.state);
        let [batch, n_head, time, head_dim] = q.dims();
        let d_y = by_heads(d_y, [batch, n_head, time, head_dim]);
        let weights = attention_weights(q.clone(), k.clone(), mask, precision);
        let kept = match &dropout {
            Some(dropout) => dropout.apply(weights.clone()),
            None => weights.clone(),
        };
        let d_v = precision.matmul(kept.clone().transpose(), d_y.clone());
        let kept_d_kept = kept * precision.matmul(d_y, v.transpose());
        let d_scores = (kept_d_kept.clone() - weights * kept_d_kept.sum_dim(3)) / (head_dim as f64).sqrt();
        let d_q = precision.matmul(d_scores.clone(), k);
        let d_k = precision.matmul(d_scores.transpose(), q);
        // [3, batch, heads, time, head_dim] → [batch, time, 3, heads, head_dim]: the
        // projection's layout, q, k and v side by side.
        let d_qkv = Tensor::stack::<5>(vec![d_q, d_k, d_v], 0).permute([1, 3, 0, 2, 4]);
        grads.register::<B>(node.id, primitive(d_qkv.reshape([batch * time, 3 * n_head * head_dim])));
    }
}
