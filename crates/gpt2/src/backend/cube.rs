//! CUDA's and wgpu's [`Gpt2Backend`]: the operations `cube_kernels` does in one kernel each.

use super::{
    float, linear_residual_by_parts, lm_head_by_parts, normed_linear_by_parts, primitive, AllocatorMemory, Gpt2Backend,
    ResidualBranch,
};
use crate::{
    dropout::Dropout, kv_cache::decode_attention_by_parts, training_attention, AttentionRoute, PreNorm, Precision,
};
use burn::{
    nn::Linear,
    prelude::*,
    tensor::{ops::FloatTensor, FloatDType},
};
use kernels::{AdamWStep, MaskStream};

/// CUDA and wgpu: burn's operations, but each in one kernel of `cube_kernels`: LayerNorm
/// (forward with the residual branch before it, its input's gradient, γ's, β's and the
/// branch's), training's attention (flash attention, or under `GPT2_ATTENTION=products` the
/// softmax between burn's products), the MLP's bias and GELU each way, the sums down a
/// matrix's columns (the q/k/v projection's bias gradient), the embeddings' gradients, bf16
/// products with accumulators that fit in registers, the loss's cross-entropy, dropout's
/// masks, the gradients' sums into flat buffers (and the parameters' views of them, one
/// operation), decoding attention with its cache write, a few rows' linear layers with what
/// surrounds them in a block (decoding: one row a sample), and for sampling the repetition
/// penalty, the most likely tokens top-k and top-p draw among, and the softmax denominators
/// top-p weighs them with.
macro_rules! cube_backend {
    ($backend:ty) => {
        impl Gpt2Backend for $backend {
            fn allocator_memory(device: &Self::Device) -> Option<AllocatorMemory> {
                let usage = <Self as cube_kernels::DeviceMemory>::memory_usage(device)?;
                Some(AllocatorMemory { in_use: usage.bytes_in_use, reserved: usage.bytes_reserved })
            }

            fn layer_norm_rows(norm: PreNorm<'_, Self>, x: Tensor<Self, 2>) -> Tensor<Self, 2> {
                match &norm.layer.beta {
                    Some(beta) => {
                        Self::layer_norm_keeping(x, norm.layer.gamma.val(), beta.val(), norm.epsilon, norm.output).0
                    }
                    None => norm.layer.forward(x).cast(norm.output),
                }
            }

            fn layer_norm_keeping(
                x: Tensor<Self, 2>,
                gamma: Tensor<Self, 1>,
                beta: Tensor<Self, 1>,
                epsilon: f64,
                output: FloatDType,
            ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
                let normed = <Self as cube_kernels::LayerNormRows>::layer_norm_rows(
                    primitive(x),
                    primitive(gamma),
                    primitive(beta),
                    epsilon,
                    None,
                    output.into(),
                );
                (float(normed.output), float(normed.normalized), float(normed.inverse_deviation))
            }

            fn residual_layer_norm_keeping(
                residual: Tensor<Self, 2>,
                branch: ResidualBranch<Self>,
                gamma: Tensor<Self, 1>,
                beta: Tensor<Self, 1>,
                epsilon: f64,
                output: FloatDType,
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
                    output.into(),
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
                branch: Option<(Tensor<Self, 2>, Option<Dropout>, FloatDType)>,
            ) -> (Tensor<Self, 1>, Tensor<Self, 1>, Option<(Tensor<Self, 2>, Tensor<Self, 1>)>) {
                let gradients = <Self as cube_kernels::LayerNormRows>::layer_norm_rows_parameter_gradients(
                    primitive(d_y),
                    primitive(normalized),
                    branch.map(|(d_x, dropout, operands)| (primitive(d_x), dropout.map(dropout_draw), operands.into())),
                );
                let branch = gradients.branch.map(|(d_product, d_bias)| (float(d_product), float(d_bias)));
                (float(gradients.gamma), float(gradients.beta), branch)
            }

            fn lm_head_columns(vocab: usize) -> usize {
                vocab.next_multiple_of(LM_HEAD_COLUMNS_MULTIPLE)
            }

            fn cross_entropy_rows(
                logits: Tensor<Self, 2>,
                targets: Tensor<Self, 1, Int>,
                vocab: usize,
            ) -> (Tensor<Self, 1>, Tensor<Self, 1>) {
                let (losses, log_normalisers) = <Self as cube_kernels::CrossEntropyRows>::cross_entropy_rows(
                    primitive(logits),
                    targets.into_primitive(),
                    vocab,
                );
                (float(losses), float(log_normalisers))
            }

            fn cross_entropy_rows_backward(
                logits: Tensor<Self, 2>,
                log_normalisers: Tensor<Self, 1>,
                targets: Tensor<Self, 1, Int>,
                d_losses: Tensor<Self, 1>,
                d_logits: FloatDType,
                vocab: usize,
            ) -> Tensor<Self, 2> {
                float(<Self as cube_kernels::CrossEntropyRows>::cross_entropy_rows_backward(
                    primitive(logits),
                    primitive(log_normalisers),
                    targets.into_primitive(),
                    primitive(d_losses),
                    d_logits.into(),
                    vocab,
                ))
            }

            fn mixed_matmul(
                lhs: Tensor<Self, 2>,
                rhs: Tensor<Self, 2>,
                rounded_rhs: Option<Tensor<Self, 2>>,
                operands: FloatDType,
            ) -> Tensor<Self, 2> {
                float(<Self as cube_kernels::MixedMatmul>::mixed_matmul(
                    primitive(lhs.cast(operands)),
                    primitive(rounded_rhs.unwrap_or(rhs).cast(operands)),
                ))
            }

            /// `cube_kernels`' mixed product, batched: the product written in f32 from its
            /// accumulators, where burn's writes it in the operands' type and casts it back.
            fn batched_mixed_matmul<const D: usize>(
                lhs: Tensor<Self, D>,
                rhs: Tensor<Self, D>,
                operands: FloatDType,
            ) -> Tensor<Self, D> {
                let (lhs, rhs) = (primitive(lhs.cast(operands)), primitive(rhs.cast(operands)));
                float(<Self as cube_kernels::MixedMatmul>::mixed_matmul(lhs, rhs))
            }

            fn products_by_routine() -> bool {
                cube_kernels::chosen_product_routine().is_some()
            }

            fn embedding_gradient(
                d_output: Tensor<Self, 2>,
                indices: Tensor<Self, 1, Int>,
                rows: usize,
            ) -> Tensor<Self, 2> {
                float(<Self as cube_kernels::EmbeddingGradient>::embedding_gradient(
                    primitive(d_output),
                    indices.into_primitive(),
                    rows,
                ))
            }

            fn column_sums(x: Tensor<Self, 2>, rounded: FloatDType) -> (Tensor<Self, 1>, Tensor<Self, 2>) {
                let (sums, rounded) = <Self as cube_kernels::ColumnSums>::column_sums(primitive(x), rounded.into());
                (float(sums), float(rounded))
            }

            fn bias_gelu(product: Tensor<Self, 2>, bias: Tensor<Self, 1>, operands: FloatDType) -> Tensor<Self, 2> {
                float(<Self as cube_kernels::BiasGelu>::bias_gelu(primitive(product), primitive(bias), operands.into()))
            }

            fn bias_gelu_backward(
                product: Tensor<Self, 2>,
                bias: Tensor<Self, 1>,
                d_hidden: Tensor<Self, 2>,
                d_product: FloatDType,
            ) -> (Tensor<Self, 2>, Tensor<Self, 1>) {
                let (d_product, d_bias) = <Self as cube_kernels::BiasGelu>::bias_gelu_backward(
                    primitive(product),
                    primitive(bias),
                    primitive(d_hidden),
                    d_product.into(),
                );
                (float(d_product), float(d_bias))
            }

            /// Without a gradient to take (evaluation), training's forward pass: no `time ×
            /// time` scores kept (the flash kernel's makes none), where burn's operations make
            /// and hold them.
            fn self_attention(
                qkv: Tensor<Self, 2>,
                heads: usize,
                mask: Tensor<Self, 3, Bool>,
                dropout: Option<Dropout>,
                precision: Precision,
            ) -> Tensor<Self, 2> {
                Self::attention_keeping(qkv, heads, mask, dropout, precision).0
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
                    precision.operands().into(),
                    attention_products(),
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
                    attention_products(),
                ))
            }

            /// `cube_kernels`' softmax between the products of attention's products route:
            /// one pass over the scores each way.
            fn attention_softmax(
                scores: Tensor<Self, 4>,
                mask: Tensor<Self, 3, Bool>,
                head_dim: usize,
                dropout: Option<Dropout>,
                precision: Precision,
            ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
                if !softmax_kernels_apply(&scores, &mask) {
                    return training_attention::softmax_by_operations(scores, mask, head_dim, dropout);
                }
                let (weights, logsumexp) = <Self as cube_kernels::AttentionSoftmax>::attention_softmax(
                    primitive(scores),
                    mask.into_primitive(),
                    softmax_scale(head_dim),
                    dropout.map(dropout_draw),
                    precision.operands().into(),
                );
                (float(weights), float(logsumexp))
            }

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
                if !softmax_kernels_apply(&scores, &mask) {
                    return training_attention::softmax_backward_by_operations(
                        scores, d_weights, logsumexp, delta, mask, head_dim, dropout,
                    );
                }
                let (weights, d_scores) = <Self as cube_kernels::AttentionSoftmax>::attention_softmax_backward(
                    primitive(scores),
                    primitive(d_weights),
                    primitive(logsumexp),
                    primitive(delta),
                    mask.into_primitive(),
                    softmax_scale(head_dim),
                    dropout.map(dropout_draw),
                    precision.operands().into(),
                );
                (float(weights), float(d_scores))
            }

            fn decode_attention(
                qkv: Tensor<Self, 2>,
                keys: Tensor<Self, 4>,
                values: Tensor<Self, 4>,
                position: usize,
                heads: usize,
                precision: Precision,
            ) -> (Tensor<Self, 2>, Tensor<Self, 4>, Tensor<Self, 4>) {
                let head_dim = keys.dims()[3];
                if position >= cube_kernels::MAX_DECODE_KEYS || head_dim > cube_kernels::MAX_DECODE_HEAD_DIM {
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

            fn softmax_denominators(logits: Tensor<Self, 2>, temperature: f32) -> Option<Tensor<Self, 1>> {
                let applies = temperature > 0.0 && logits.dtype() == burn::tensor::DType::F32;
                applies.then(|| {
                    float(<Self as cube_kernels::SoftmaxDenominator>::softmax_denominators(
                        primitive(logits),
                        temperature,
                    ))
                })
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

            fn sum_of_squares(x: Tensor<Self, 1>) -> Tensor<Self, 1> {
                float(<Self as cube_kernels::SumOfSquares>::sum_of_squares(primitive(x)))
            }

            fn add_to_stretches(buffer: Tensor<Self, 1>, pieces: Vec<(FloatTensor<Self>, usize)>) -> Tensor<Self, 1> {
                float(<Self as cube_kernels::AddToStretches>::add_to_stretches(primitive(buffer), pieces))
            }

            fn views(buffer: Tensor<Self, 1>, stretches: Vec<(usize, Shape)>) -> Vec<FloatTensor<Self>> {
                <Self as cube_kernels::Views>::views(primitive(buffer), stretches)
            }

            fn normed_linear(
                norm: PreNorm<'_, Self>,
                layer: &Linear<Self>,
                x: Tensor<Self, 2>,
                gelu: bool,
                precision: Precision,
            ) -> Tensor<Self, 2> {
                let after = if gelu { cube_kernels::After::Gelu } else { cube_kernels::After::Nothing };
                few_rows_layer_norm(&norm)
                    .and_then(|before| {
                        few_rows_product(x.clone(), layer.weight.val(), layer_bias(layer), before, after, precision)
                    })
                    .unwrap_or_else(|| normed_linear_by_parts(norm, layer, x, gelu, precision))
            }

            fn linear_residual(
                layer: &Linear<Self>,
                x: Tensor<Self, 2>,
                residual: Tensor<Self, 2>,
                precision: Precision,
            ) -> Tensor<Self, 2> {
                let after = cube_kernels::After::Add(primitive(residual.clone()));
                let before = cube_kernels::Before::Nothing;
                few_rows_product(x.clone(), layer.weight.val(), layer_bias(layer), before, after, precision)
                    .unwrap_or_else(|| linear_residual_by_parts(layer, x, residual, precision))
            }

            fn lm_head(
                norm: PreNorm<'_, Self>,
                embedding: Tensor<Self, 2>,
                x: Tensor<Self, 2>,
                precision: Precision,
            ) -> Tensor<Self, 2> {
                let after = cube_kernels::After::Nothing;
                few_rows_layer_norm(&norm)
                    .and_then(|before| {
                        few_rows_product(x.clone(), embedding.clone().transpose(), None, before, after, precision)
                    })
                    .unwrap_or_else(|| lm_head_by_parts(norm, embedding, x, precision))
            }
        }
    };
}

/// What training's LM head rounds its columns up to (GPT-2's 50,257 to 50,304): a multiple of
/// every vector width CubeCL's products read and write in (4 f32s, 8 bf16s), as nanoGPT pads
/// its vocabulary for cuBLAS.
const LM_HEAD_COLUMNS_MULTIPLE: usize = 64;

/// Whether `cube_kernels`' flash attention takes attention over these q/k/v rows and mask:
/// unless `GPT2_ATTENTION` chooses burn's products ([`AttentionRoute`]), for heads at most
/// `MAX_FLASH_HEAD_DIM` wide (every GPT-2's are 64), and booleans stored as the kernels read
/// them (CUDA's and wgpu's are). On the FP32 units it computes in f32 under either precision
/// (see [`Precision`]): what bf16 would round away is attention's few products, and burn's
/// operations would cost its `time × time` scores again; on tensor cores
/// ([`attention_products`]) its products take bf16 operands under bf16, TF32 under f32.
fn flash_attention_applies<B: Backend>(qkv: &Tensor<B, 2>, mask: &Tensor<B, 3, Bool>, heads: usize) -> bool {
    matches!(AttentionRoute::chosen(), AttentionRoute::Flash | AttentionRoute::FlashTensorCores)
        && qkv.dims()[1] / (3 * heads) <= cube_kernels::MAX_FLASH_HEAD_DIM
        && kernels_read(mask)
}

/// Which units take the flash kernels' products, as `GPT2_ATTENTION` chooses.
fn attention_products() -> cube_kernels::AttentionProducts {
    match AttentionRoute::chosen() {
        AttentionRoute::FlashTensorCores => cube_kernels::AttentionProducts::TensorCores,
        _ => cube_kernels::AttentionProducts::Fp32Units,
    }
}

/// Whether `cube_kernels`' attention softmax takes these scores and mask: rows of at most
/// `MAX_SOFTMAX_KEYS` keys (GPT-2's are 1,024 at most), booleans stored as the kernels read them.
fn softmax_kernels_apply<B: Backend>(scores: &Tensor<B, 4>, mask: &Tensor<B, 3, Bool>) -> bool {
    scores.dims()[3] <= cube_kernels::MAX_SOFTMAX_KEYS && kernels_read(mask)
}

/// Whether `mask`'s booleans are stored as `cube_kernels`' attention kernels read them.
fn kernels_read<B: Backend>(mask: &Tensor<B, 3, Bool>) -> bool {
    cube_kernels::ATTENTION_MASK_DTYPES.contains(&mask.dtype())
}

/// The softmax's `1 / √head_dim`.
fn softmax_scale(head_dim: usize) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}

fn dropout_draw(dropout: Dropout) -> cube_kernels::DropoutDraw {
    cube_kernels::DropoutDraw { stream: dropout.stream, p: dropout.p }
}

/// `after(before(x) · W + b)` (`b` where there is one) in one launch of `cube_kernels`'
/// few-row kernel, where it applies: at most `MAX_FEW_ROWS` rows, `W` `[d_in, d_out]` (or a
/// transposed view) stored in `precision`'s operand type (f32, or bf16 for sampling). `None`
/// elsewhere.
fn few_rows_product<B: Gpt2Backend + cube_kernels::FewRowsLinear>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    before: cube_kernels::Before<FloatTensor<B>>,
    after: cube_kernels::After<FloatTensor<B>>,
    precision: Precision,
) -> Option<Tensor<B, 2>> {
    if x.dims()[0] > cube_kernels::MAX_FEW_ROWS || weight.dtype() != precision.operands().into() {
        return None;
    }
    Some(float(B::few_rows_linear(primitive(x), primitive(weight), bias.map(primitive), before, after)))
}

/// `norm` as the few-row kernel's LayerNorm before its product; `None` without β, which the
/// kernel's LayerNorm takes.
fn few_rows_layer_norm<B: Backend>(norm: &PreNorm<'_, B>) -> Option<cube_kernels::Before<FloatTensor<B>>> {
    let beta = norm.layer.beta.as_ref()?;
    let gamma = norm.layer.gamma.val();
    Some(cube_kernels::Before::LayerNorm {
        gamma: primitive(gamma),
        beta: primitive(beta.val()),
        epsilon: norm.epsilon,
    })
}

/// A linear layer's bias, where it has one.
fn layer_bias<B: Backend>(layer: &Linear<B>) -> Option<Tensor<B, 1>> {
    layer.bias.as_ref().map(|bias| bias.val())
}

#[cfg(feature = "cuda")]
cube_backend!(super::Gpu);
#[cfg(feature = "cuda")]
cube_backend!(super::GpuEager);
#[cfg(feature = "wgpu")]
cube_backend!(super::Wgpu);
#[cfg(feature = "wgpu")]
cube_backend!(super::WgpuEager);
#[cfg(feature = "cuda-compile")]
cube_backend!(cuda_compile::CudaCompile);
#[cfg(feature = "cuda-compile")]
cube_backend!(cuda_compile::CudaCompileEager);
