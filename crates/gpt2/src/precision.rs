use crate::{backend::with_bias, Gpt2Backend};
use burn::{nn::Linear, prelude::*, tensor::FloatDType};
use std::{fmt, str::FromStr};

/// Where the model's matrix products run.
///
/// - `F32`: everything in f32.
/// - `Bf16`: mixed precision, as PyTorch's bf16 autocast does it. The operands of the
///   projections' products (q/k/v, output, MLP) and the LM head's are rounded to bf16 and the
///   product comes back as f32 (tensor cores accumulate in f32). Weights, gradients and
///   optimizer state stay f32; embeddings, LayerNorm, GELU, attention's core and the loss run
///   in f32 (what they hand a product, LayerNorm's, GELU's and attention's outputs, GELU's and
///   the loss's gradients and q/k/v's, they write rounded, as the product reads it; attention's
///   backward pass reads its output so). burn has no autocast, so each product is the
///   backend's [`Gpt2Backend::mixed_matmul`], which casts its operands (on CUDA a
///   tensor-core product of `cube_kernels` that writes f32); its backward
///   pass is two more of them, whose gradients reach the f32 weights in f32. In training the
///   weights are rounded once a step, not by every micro-batch's products ([`RoundedWeights`]).
///   Attention's core (scores, softmax, product with the values) runs in f32 in
///   `cube_kernels`' flash kernels: rounding its few products would save little, and burn's
///   operations would bring back the `time × time` scores and their launches (where those
///   kernels do not apply, or under `GPT2_ATTENTION=products`, its products round their
///   operands too, and [`Gpt2Backend::batched_mixed_matmul`] writes them in f32). For sampling,
///   [`Gpt2::for_sampling`] stores the matrices in bf16 as well. bf16 needs a backend with bf16
///   tensors (CUDA); the CPU backend has none.
///
/// [`Gpt2::for_sampling`]: crate::Gpt2::for_sampling
/// [`RoundedWeights`]: crate::RoundedWeights
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// The element type the matrix products' operands are rounded to.
    pub fn operands(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// `x · W` for `x` `[rows, k]` and a weight matrix `W` `[k, n]`, in this precision and with
    /// the result in f32: burn's product, or the backend's [`Gpt2Backend::mixed_matmul`] (bf16,
    /// or any precision under [`Gpt2Backend::products_by_routine`]).
    /// `rounded`: `W` already rounded to the operands' type (a step's [`RoundedWeights`]).
    ///
    /// [`RoundedWeights`]: crate::RoundedWeights
    pub fn product<B: Gpt2Backend>(
        self,
        x: Tensor<B, 2>,
        weight: Tensor<B, 2>,
        rounded: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 2> {
        match self {
            Precision::F32 if !B::products_by_routine() => x.matmul(weight),
            _ => B::mixed_matmul(x, weight, rounded, self.operands()),
        }
    }

    /// `lhs · rhs` with the operands in this precision and the result in f32, for batches of
    /// matrices (attention's, where its kernels do not apply): burn's product, or the backend's
    /// [`Gpt2Backend::batched_mixed_matmul`].
    pub fn matmul<B: Gpt2Backend, const D: usize>(self, lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::F32 => lhs.matmul(rhs),
            Precision::Bf16 => B::batched_mixed_matmul(lhs, rhs, self.operands()),
        }
    }

    /// `x` rounded to the operands' type, for the products that read it (as it is in f32).
    pub fn rounded<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::F32 => x,
            Precision::Bf16 => x.cast(self.operands()),
        }
    }

    /// `x · W + b` for `x` `[rows, d_in]` (burn's and GPT-2's `[d_in, d_out]` weight layout)
    /// with the product in this precision and the bias added in f32; `rounded` as for
    /// [`product`](Precision::product).
    pub fn linear<B: Gpt2Backend>(
        self,
        layer: &Linear<B>,
        x: Tensor<B, 2>,
        rounded: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 2> {
        if self == Precision::F32 && !B::products_by_routine() {
            return B::linear_forward(layer, x);
        }
        with_bias(layer, self.product(x, layer.weight.val(), rounded), self.operands())
    }

    /// `x · Wᵀ` for `x` `[rows, k]` and `W` `[n, k]`, in this precision; `rounded` as for
    /// [`product`](Precision::product), untransposed.
    pub fn matmul_transposed<B: Gpt2Backend>(
        self,
        x: Tensor<B, 2>,
        weight: Tensor<B, 2>,
        rounded: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 2> {
        match self {
            Precision::F32 if !B::products_by_routine() => B::matmul_transposed(x, weight),
            _ => self.product(x, weight.transpose(), rounded.map(Tensor::transpose)),
        }
    }
}

/// `lhs · rhs` with both operands cast to `operands` and the product cast back to f32: burn's
/// operations for a mixed-precision product. A cast to the type a tensor already has is none:
/// matrices stored in bf16 (for sampling) are read as they are.
pub(crate) fn rounded_matmul<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
    operands: FloatDType,
) -> Tensor<B, D> {
    lhs.cast(operands).matmul(rhs.cast(operands)).cast(FloatDType::F32)
}

impl FromStr for Precision {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => anyhow::bail!("unknown precision `{text}` (expected f32 or bf16)"),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cpu, Gpt2Config};
    use burn::{backend::Autodiff, module::AutodiffModule};

    #[test]
    fn parses_and_prints() {
        for text in ["f32", "bf16"] {
            assert_eq!(text.parse::<Precision>().unwrap().to_string(), text);
        }
        assert!("fp8".parse::<Precision>().unwrap_err().to_string().contains("f32 or bf16"));
    }

    #[test]
    fn survives_the_round_trips_a_training_run_makes() {
        let config = Gpt2Config {
            n_layer: 1,
            n_embd: 8,
            n_head: 2,
            vocab_size: 16,
            n_positions: 8,
            ..Gpt2Config::preset("gpt2").unwrap()
        };
        let device = Default::default();
        let model = config.init::<Autodiff<Cpu>>(&device).with_precision(Precision::Bf16);
        let record = model.clone().into_record();
        let reloaded = config.init::<Autodiff<Cpu>>(&device).with_precision(Precision::Bf16).load_record(record);
        assert_eq!(reloaded.precision(), Precision::Bf16);
        let inner = model.valid();
        assert_eq!(inner.precision(), Precision::Bf16);
        assert!(inner
            .h
            .iter()
            .all(|block| block.attn.precision == Precision::Bf16 && block.mlp.precision == Precision::Bf16));
    }
}
