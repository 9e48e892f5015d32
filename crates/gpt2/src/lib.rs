//! GPT-2 in burn, generic over the backend, interchangeable with Hugging Face checkpoints.
//!
//! - [`Gpt2Config`]: sizes and dropouts; presets and any GPT-2 `config.json`.
//! - [`Gpt2`]: embeddings, pre-LayerNorm [`Block`]s, final LayerNorm, LM head tied to `wte`.
//! - [`Documents`]: rows that pack several documents, each attended to as if alone.
//! - [`DropoutMasks`]: training's dropout, drawn from counters: the same on any device.
//! - [`KvCache`]: incremental decoding with the same logits as a full forward pass.
//! - [`next_token_loss`]: masked next-token cross-entropy, token mean, against [`NextTokens`].
//! - [`Precision`]: f32, or bf16 matrix products with f32 weights (mixed precision);
//!   [`RoundedWeights`]: a step's weights rounded for them once.
//! - [`Gpt2Backend`]: the backends it runs on ([`Cpu`], CUDA, autodiff over either);
//!   [`check_kernel_choices`]: the kernels `GPT2_PRODUCTS` and `GPT2_ATTENTION` choose there.
//! - [`hf`]: load and save the Hugging Face layout (`config.json`, `model.safetensors`).

mod attention;
mod autodiff;
mod backend;
mod block;
mod config;
mod documents;
mod dropout;
pub mod hf;
mod kernel_choices;
mod kv_cache;
mod loss;
mod mlp;
mod model;
mod precision;
mod rounded_weights;
mod training_attention;

pub use attention::CausalSelfAttention;
pub use backend::{AllocatorMemory, Cpu, Gpt2Backend, ResidualBranch, NORM_ROWS};
#[cfg(feature = "cuda")]
pub use backend::{Gpu, GpuEager};
#[cfg(feature = "wgpu")]
pub use backend::{Wgpu, WgpuEager};
pub use block::{Block, PreNorm};
pub use config::Gpt2Config;
pub use documents::Documents;
pub use dropout::{Dropout, DropoutMasks, LayerMasks};
pub use kernel_choices::{check_kernel_choices, AttentionRoute, ATTENTION_ROUTE_VARIABLE};
pub use kv_cache::{KvCache, LayerCache};
pub use loss::{next_token_loss, NextTokens};
pub use mlp::Mlp;
pub use model::{causal_mask, Gpt2};
pub use precision::Precision;
pub use rounded_weights::RoundedWeights;
