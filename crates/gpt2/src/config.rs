use crate::{block::BlockConfig, model::Gpt2, Precision};
use anyhow::{bail, Context, Result};
use burn::{
    config::Config,
    nn::{EmbeddingConfig, Initializer, LayerNormConfig},
    prelude::Backend,
};
use serde_json::{json, Value};

/// Sizes and dropouts of a GPT-2 model, with the meaning of the Hugging Face `config.json` keys
/// of the same names.
#[derive(Config, Debug, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    /// Longest sequence the position embedding covers.
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[config(default = 1e-5)]
    pub layer_norm_epsilon: f64,
    /// Dropout after the token + position embedding.
    #[config(default = 0.1)]
    pub embd_pdrop: f64,
    /// Dropout on the attention probabilities.
    #[config(default = 0.1)]
    pub attn_pdrop: f64,
    /// Dropout on each residual branch's output.
    #[config(default = 0.1)]
    pub resid_pdrop: f64,
    #[config(default = 50256)]
    pub eos_token_id: usize,
}

/// The released sizes: (name, n_embd, n_layer, n_head).
const PRESETS: [(&str, usize, usize, usize); 4] =
    [("gpt2", 768, 12, 12), ("gpt2-medium", 1024, 24, 16), ("gpt2-large", 1280, 36, 20), ("gpt2-xl", 1600, 48, 25)];

impl Gpt2Config {
    /// `gpt2` (124M), `gpt2-medium` (355M), `gpt2-large` (774M) or `gpt2-xl` (1.5B); the
    /// `openai-community/` prefix is accepted.
    pub fn preset(name: &str) -> Option<Self> {
        let name = name.strip_prefix("openai-community/").unwrap_or(name);
        PRESETS
            .iter()
            .find(|(preset, ..)| *preset == name)
            .map(|&(_, n_embd, n_layer, n_head)| Self::new(50257, 1024, n_embd, n_layer, n_head))
    }

    /// Read a Hugging Face GPT-2 `config.json`, refusing variants this model does not compute.
    pub fn from_hf_json(value: &Value) -> Result<Self> {
        let get = |key: &str| {
            value.get(key).and_then(Value::as_u64).map(|v| v as usize).with_context(|| format!("missing `{key}`"))
        };
        let get_f = |key: &str, default: f64| value.get(key).and_then(Value::as_f64).unwrap_or(default);
        if let Some(kind) = value.get("model_type").and_then(Value::as_str) {
            if kind != "gpt2" {
                bail!("model_type is `{kind}`, not `gpt2`");
            }
        }
        let activation = value.get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new");
        if activation != "gelu_new" {
            bail!("activation_function `{activation}` is not supported (GPT-2 uses gelu_new)");
        }
        for (key, expected) in [
            ("scale_attn_weights", true),
            ("scale_attn_by_inverse_layer_idx", false),
            ("reorder_and_upcast_attn", false),
        ] {
            if value.get(key).and_then(Value::as_bool).is_some_and(|v| v != expected) {
                bail!("`{key}: {}` is not supported", !expected);
            }
        }
        let config = Self {
            vocab_size: get("vocab_size")?,
            n_positions: get("n_positions")?,
            n_embd: get("n_embd")?,
            n_layer: get("n_layer")?,
            n_head: get("n_head")?,
            layer_norm_epsilon: get_f("layer_norm_epsilon", 1e-5),
            embd_pdrop: get_f("embd_pdrop", 0.1),
            attn_pdrop: get_f("attn_pdrop", 0.1),
            resid_pdrop: get_f("resid_pdrop", 0.1),
            eos_token_id: value.get("eos_token_id").and_then(Value::as_u64).map_or(50256, |v| v as usize),
        };
        if let Some(inner) = value.get("n_inner").and_then(Value::as_u64) {
            if inner as usize != 4 * config.n_embd {
                bail!("n_inner {inner} is not supported (only 4 × n_embd)");
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Refuse sizes no model has (a zero size, heads that do not divide the width, an
    /// end-of-text id outside the vocabulary), which would otherwise fail deep inside a kernel.
    pub fn validate(&self) -> Result<()> {
        for (key, size) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ] {
            if size == 0 {
                bail!("`{key}` is 0: a model needs at least 1");
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            bail!("n_embd {} is not a multiple of n_head {}", self.n_embd, self.n_head);
        }
        if self.eos_token_id >= self.vocab_size {
            bail!("eos_token_id {} is outside the vocabulary of {} tokens", self.eos_token_id, self.vocab_size);
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0) {
            bail!("layer_norm_epsilon {} is not a small positive number", self.layer_norm_epsilon);
        }
        for (key, p) in
            [("embd_pdrop", self.embd_pdrop), ("attn_pdrop", self.attn_pdrop), ("resid_pdrop", self.resid_pdrop)]
        {
            if !(0.0..1.0).contains(&p) {
                bail!("`{key}` {p} is not a dropout probability in [0, 1)");
            }
        }
        Ok(())
    }

    /// A `config.json` that `transformers.GPT2LMHeadModel` reads as this model.
    pub fn to_hf_json(&self) -> Value {
        json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": null,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "embd_pdrop": self.embd_pdrop,
            "attn_pdrop": self.attn_pdrop,
            "resid_pdrop": self.resid_pdrop,
            "initializer_range": 0.02,
            "scale_attn_weights": true,
            "scale_attn_by_inverse_layer_idx": false,
            "reorder_and_upcast_attn": false,
            "tie_word_embeddings": true,
            "bos_token_id": self.eos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
            "use_cache": true,
        })
    }

    /// How many numbers the model holds (the LM head shares the token embedding's): what its
    /// memory is sized by before any weights are read.
    pub fn num_params(&self) -> usize {
        let d = self.n_embd;
        // Per block: two LayerNorms (2d each), c_attn (d·3d + 3d), attention c_proj (d·d + d),
        // c_fc (d·4d + 4d), MLP c_proj (4d·d + d).
        let block = 12 * d * d + 13 * d;
        (self.vocab_size + self.n_positions) * d + self.n_layer * block + 2 * d
    }

    /// Bytes of f32 keys and values a KV cache holds for `batch` sequences of `positions`
    /// tokens, every layer.
    pub fn kv_cache_bytes(&self, batch: usize, positions: usize) -> u64 {
        (2 * self.n_layer * batch * positions * self.n_embd * std::mem::size_of::<f32>()) as u64
    }

    /// A model with GPT-2's initialisation: weights N(0, 0.02), residual output projections
    /// N(0, 0.02/√(2·n_layer)), biases zero, LayerNorms identity.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Gpt2<B> {
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        self.init_with(device, normal(0.02), normal(0.02 / (2.0 * self.n_layer as f64).sqrt()))
    }

    /// A model whose weights are all zero, to be overwritten by a checkpoint.
    pub(crate) fn init_zeros<B: Backend>(&self, device: &B::Device) -> Gpt2<B> {
        self.init_with(device, Initializer::Zeros, Initializer::Zeros)
    }

    fn init_with<B: Backend>(&self, device: &B::Device, weights: Initializer, residual: Initializer) -> Gpt2<B> {
        let block = BlockConfig { config: self.clone(), weights: weights.clone(), residual };
        Gpt2 {
            wte: EmbeddingConfig::new(self.vocab_size, self.n_embd).with_initializer(weights.clone()).init(device),
            wpe: EmbeddingConfig::new(self.n_positions, self.n_embd).with_initializer(weights).init(device),
            embd_pdrop: self.embd_pdrop,
            h: (0..self.n_layer).map(|_| block.init(device)).collect(),
            ln_f: LayerNormConfig::new(self.n_embd).with_epsilon(self.layer_norm_epsilon).init(device),
            precision: Precision::F32,
            layer_norm_epsilon: self.layer_norm_epsilon,
        }
    }
}
