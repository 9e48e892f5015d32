//! CubeCL kernels for operations that burn 0.21 runs as many GPU kernels, each launched on its
//! own (on CUDA, ~100 µs of host time a launch through burn's fusion stream): written once
//! for CubeCL, they run on every CubeCL backend (CUDA; wgpu, which Mesa's software Vulkan
//! driver runs on the CPU, for tests). The model crate calls them through its backend trait.
//! What they write they allocate with its rows end to end (`empty_device_contiguous_dtype`;
//! clippy.toml forbids burn's `empty_device_dtype`, whose rows CubeCL pads on CUDA) and index
//! so; what they read, they read through its strides.
//!
//! - [`AdamWUpdate`]: AdamW's update of a flat buffer of parameters, the clip's factor taken
//!   in and the moments rewritten in place, in one launch (burn: a fused kernel that writes
//!   every output to a new buffer).
//! - [`AddToStretches`]: many tensors each added to its stretch of one flat buffer, in a launch
//!   for up to 32 of them (burn: a launch a tensor): gradients summed over micro-batches.
//! - [`AttentionSoftmax`]: attention's softmax over scores that products wrote in full, with
//!   dropout, forward in one launch and backward in one (burn: a dozen passes over the `time ×
//!   time` scores each way).
//! - [`BiasGelu`]: the MLP's `gelu(product + bias)` in one launch (burn: one fused kernel, but
//!   some ten operations registered with fusion), and its gradients, the product's and the
//!   bias's (a sum over the rows), in one launch (burn: an element-wise kernel and a
//!   reduction).
//! - [`ColumnSums`]: the sums down a matrix's columns (a bias's gradient), in one launch of
//!   many cubes (burn's: one thread a column down every row).
//! - [`CrossEntropyRows`]: the loss's cross-entropy over each row of logits, forward in one
//!   launch and backward in one (burn: about ten, most of them over the whole logits).
//! - [`DecodeAttention`]: one new position a row written into a KV cache and attended over it,
//!   in one launch (burn: about fifteen).
//! - [`DropoutKeeps`]: dropout's keep mask from Philox counters, the words
//!   `kernels::dropout_keeps` draws on the CPU, in one launch (no host-seeded generator).
//! - [`EmbeddingGradient`]: an embedding lookup's gradient, each looked-up row's sum in one
//!   launch after the zeros (burn: one thread a column down every looked-up row in turn).
//! - [`FewRowsLinear`]: a linear layer on a few rows (decoding) with the LayerNorm before it
//!   and the GELU or residual add after it, in one launch (burn: three to five); likewise the
//!   LM head's product with the final LayerNorm, over the token embedding as it is stored.
//! - [`FlashAttention`]: causal self-attention's core for training, forward in one launch and
//!   backward in two, with no `time × time` tensor (burn: ~30 launches a layer, and the
//!   scores and weights in memory); their products on tensor cores where asked
//!   ([`AttentionProducts`]) and the device has them.
//! - [`LayerNormRows`]: LayerNorm over each row, keeping what its backward pass needs, the
//!   input's gradient, and γ's and β's, in one launch each (burn: two reductions and a few
//!   element-wise kernels each), with the residual branch before it taken in: its add and
//!   dropout forward, the stream's gradient and the branch's backward.
//! - [`MixedMatmul`]: a product of bf16 operands in f32 (or a batch of them), burn's
//!   tensor-core routine writing f32 from its accumulators, in one launch (burn: the product in
//!   bf16, then a cast).
//! - [`MostLikely`]: the `k` most likely tokens of each row of logits, for top-k sampling on
//!   the host, in one launch (burn: a sort of every row, on the host).
//! - [`RepetitionPenalty`]: transformers' repetition penalty on the logits of each row's seen
//!   tokens, in place, in one launch (burn's `scatter` adds).
//! - [`SoftmaxDenominator`]: each row's softmax denominator at a temperature, for top-p sampling
//!   among the most likely tokens, in one launch (burn: three, and a row read back).
//! - [`SumOfSquares`]: the sum of a flat buffer's squares, for the global-norm clip, in a launch
//!   or two with no buffer of the squares (burn: the squares written out, then two sums).
//!
//! [`product_routines`] are cubek's product routines by name, one of which `GPT2_PRODUCTS` may
//! choose for the model's products ([`chosen_product_routine`]).
//!
//! [`DeviceMemory`] is no kernel: what CubeCL's allocator holds, for the train stage's report;
//! nor is [`Views`]: many views of one flat buffer in one operation of fusion's stream (burn:
//! a slice and a reshape each).
//!
//! Each operation is a trait implemented for burn's CubeCL backend (the kernel's launch) and
//! for its fusion backend over it (a custom operation in fusion's stream: the kernel runs when
//! the stream reaches it, after the operations it reads).

mod adamw;
mod add_to_stretches;
mod attention_softmax;
mod chains;
mod column_sums;
mod cross_entropy;
mod decode_attention;
mod draw;
mod dropout;
mod element;
mod embedding_gradient;
mod fast_exp;
mod few_rows_linear;
mod flash_attention;
mod fusion_op;
mod gelu;
mod grid;
mod in_place;
mod layer_norm;
mod memory;
mod mixed_matmul;
mod most_likely;
mod philox;
mod product_routine;
mod reduce;
mod repetition_penalty;
mod softmax_denominator;
mod sum_of_squares;
mod views;

pub use adamw::AdamWUpdate;
pub use add_to_stretches::AddToStretches;
pub use attention_softmax::{AttentionSoftmax, MAX_SOFTMAX_KEYS};
pub use column_sums::ColumnSums;
pub use cross_entropy::CrossEntropyRows;
pub use decode_attention::{DecodeAttention, MAX_DECODE_HEAD_DIM, MAX_DECODE_KEYS};
pub use draw::DropoutDraw;
pub use dropout::DropoutKeeps;
pub use embedding_gradient::EmbeddingGradient;
pub use few_rows_linear::{After, Before, FewRowsLinear, MAX_FEW_ROWS};
pub use flash_attention::{
    flash_attention_tensor_cores, tensor_cores_required, AttentionProducts, FlashAttention, ATTENTION_MASK_DTYPES,
    MAX_FLASH_HEAD_DIM,
};
pub use gelu::BiasGelu;
pub use layer_norm::{Branch, LayerNormRows, Normed, ParameterGradients};
pub use memory::DeviceMemory;
pub use mixed_matmul::{product_in_f32, MixedMatmul};
pub use most_likely::{MostLikely, MAX_MOST_LIKELY, MAX_MOST_LIKELY_VOCAB};
pub use product_routine::{
    chosen_product_routine, product_routine_from_env, product_routines, ProductRoutine, PRODUCT_ROUTINE_VARIABLE,
};
pub use repetition_penalty::RepetitionPenalty;
pub use softmax_denominator::SoftmaxDenominator;
pub use sum_of_squares::SumOfSquares;
pub use views::Views;
