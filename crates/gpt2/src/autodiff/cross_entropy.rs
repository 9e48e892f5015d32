//! The loss's cross-entropy with its backward pass written out.
//!
//! Differentiated operation by operation, `log_softmax` then `gather` keeps a log-probability
//! for every logit and sends the gradient back through a zero-filled tensor, a scatter and the
//! softmax's own backward pass: tensors the size of the logits (`rows × 50,257`, 0.8 GB for
//! gpt2's 4 × 1024) made and read several times. Written out, the forward pass keeps only each
//! row's log-normaliser, and the backward pass is the softmax scaled by each row's share of the
//! mean, with that share taken off at each row's target: on CUDA and wgpu one kernel each way
//! (`Gpt2Backend::cross_entropy_rows`, `cross_entropy_rows_backward`).

use super::{float, primitive};
use crate::Gpt2Backend;
use burn::{
    backend::autodiff::{
        checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
        grads::Gradients,
        ops::{Backward, Ops, OpsKind},
        Autodiff,
    },
    prelude::*,
    tensor::{
        ops::{FloatTensor, IntTensor},
        FloatDType,
    },
};

/// `Σ weights · −log softmax(logits)[target] / Σ weights`, `[1]`, for `logits` `[rows,
/// columns]` whose first `vocab` columns are the vocabulary (the LM head's padding after them
/// left out), `targets` and `weights` `[rows]`; the logits' gradient is written in the type
/// `gradient`, zero on the padding.
pub(super) fn cross_entropy<B: Gpt2Backend, C: CheckpointStrategy>(
    logits: Tensor<Autodiff<B, C>, 2>,
    targets: Tensor<Autodiff<B, C>, 1, Int>,
    weights: Tensor<Autodiff<B, C>, 1>,
    gradient: FloatDType,
    vocab: usize,
) -> Tensor<Autodiff<B, C>, 1> {
    let logits = logits.into_primitive().tensor();
    let targets = Tensor::<B, 1, Int>::from_primitive(targets.into_primitive());
    let weights: Tensor<B, 1> = float(weights.into_primitive().tensor().primitive);
    let rows_logits: Tensor<B, 2> = float(logits.primitive);

    let shares = weights.clone() / weights.sum();
    let (losses, log_normalisers) = B::cross_entropy_rows(rows_logits.clone(), targets.clone(), vocab);
    let loss = (losses * shares.clone()).sum();

    let backward = CrossEntropyBackward { gradient, vocab };
    let output = match backward.prepare::<C>([logits.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(
            (primitive(rows_logits), primitive(log_normalisers), targets.into_primitive(), primitive(shares)),
            primitive(loss),
        ),
        OpsKind::UnTracked(prep) => prep.finish(primitive(loss)),
    };
    float(output)
}

#[derive(Debug)]
struct CrossEntropyBackward {
    /// The type the logits' gradient is written in.
    gradient: FloatDType,
    /// The logits' columns that are the vocabulary (the rest, padding, get zeros).
    vocab: usize,
}

impl<B: Gpt2Backend> Backward<B, 1> for CrossEntropyBackward {
    /// The logits, each row's log-normaliser, the targets, each row's share of the mean
    /// (`weight / Σ weights`).
    type State = (FloatTensor<B>, FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    /// `d logits = (softmax(logits) − one-hot(target)) · share · d loss`.
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [Some(node)] = ops.parents else { return };
        let d_loss: Tensor<B, 1> = float(grads.consume::<B>(&ops.node));
        let (logits, log_normalisers, targets, shares) = ops.state;
        let d_losses = float::<B, 1>(shares) * d_loss;
        let d_logits = B::cross_entropy_rows_backward(
            float(logits),
            float(log_normalisers),
            Tensor::from_primitive(targets),
            d_losses,
            self.gradient,
            self.vocab,
        );
        grads.register::<B>(node.id, primitive(d_logits));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::Gpt2Backend;
    use burn::{
        prelude::*,
        tensor::{activation::log_softmax, DType, Distribution, FloatDType},
    };

    /// The same loss and logits' gradient as `log_softmax` and `gather` differentiated one by
    /// one, with some rows weighed 0 (padding) and the others unevenly.
    #[test]
    fn matches_burns_operations() {
        let (rows, vocab) = (12, 50);
        let device = Default::default();
        let logits = (leaf([rows, vocab]) * 6.0).detach().require_grad();
        let targets = Tensor::<Trained, 1, Int>::random([rows], Distribution::Uniform(0.0, vocab as f64), &device);
        let weights = Tensor::<Trained, 1>::from_floats([1., 1., 0., 2., 1., 0., 1., 1., 3., 1., 1., 0.], &device);

        let ours = Trained::cross_entropy(logits.clone(), targets.clone(), weights.clone(), FloatDType::F32, vocab);
        let log_probs = log_softmax(logits.clone(), 1).gather(1, targets.reshape([rows, 1])).reshape([rows]);
        let burns = -(log_probs * weights.clone()).sum() / weights.sum();
        assert_close("loss", ours.clone().inner(), burns.clone().inner());

        let (ours, burns) = ((ours * 0.7).backward(), (burns * 0.7).backward());
        assert_close("logits' gradient", logits.grad(&ours).unwrap(), logits.grad(&burns).unwrap());
    }

    /// Columns of padding after the vocabulary (the LM head's, on CubeCL backends) change
    /// nothing: the loss is the vocabulary's alone, and the padding's gradient is zero.
    #[test]
    fn leaves_the_padding_out() {
        let (rows, vocab, padding) = (5, 20, 12);
        let device = Default::default();
        let logits = (leaf([rows, vocab]) * 6.0).detach().require_grad();
        let padded =
            Tensor::cat(vec![logits.clone(), Tensor::full([rows, padding], 40.0, &device)], 1).detach().require_grad();
        let targets = Tensor::<Trained, 1, Int>::from_ints([3, 0, 19, 7, 7], &device);
        let weights = Tensor::<Trained, 1>::from_floats([1., 1., 0., 2., 1.], &device);

        let plain = Trained::cross_entropy(logits.clone(), targets.clone(), weights.clone(), FloatDType::F32, vocab);
        let ours = Trained::cross_entropy(padded.clone(), targets, weights, FloatDType::F32, vocab);
        assert_close("loss", ours.clone().inner(), plain.clone().inner());

        let (ours, plain) = (padded.grad(&ours.backward()).unwrap(), logits.grad(&plain.backward()).unwrap());
        assert_close("the vocabulary's gradient", ours.clone().narrow(1, 0, vocab), plain);
        assert_close("the padding's gradient", ours.narrow(1, vocab, padding), Tensor::zeros([rows, padding], &device));
    }

    /// The logits' gradient written in the type asked for (f64 standing in for bf16: the CPU
    /// has none), as the LM head's product reads it: the f32 gradient in that type.
    #[test]
    fn writes_the_logits_gradient_in_the_type_asked_for() {
        let (rows, vocab) = (6, 30);
        let device = Default::default();
        let logits = leaf([rows, vocab]);
        let targets = Tensor::<Trained, 1, Int>::from_ints([3, 0, 29, 7, 7, 12], &device);
        let weights = Tensor::<Trained, 1>::from_floats([1., 1., 0., 2., 1., 1.], &device);
        let gradient = |dtype| {
            let loss = Trained::cross_entropy(logits.clone(), targets.clone(), weights.clone(), dtype, vocab);
            logits.grad(&loss.backward()).unwrap()
        };
        let (full, rounded) = (gradient(FloatDType::F32), gradient(FloatDType::F64));
        assert_eq!(rounded.dtype(), DType::F64, "the gradient's type");
        let host = |tensor: Tensor<_, 2>| tensor.into_data().convert::<f64>().to_vec::<f64>().unwrap();
        assert_eq!(host(rounded), host(full.cast(FloatDType::F64)));
    }
}
