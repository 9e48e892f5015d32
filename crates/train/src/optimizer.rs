//! AdamW as PyTorch's `torch.optim.AdamW` with two parameter groups (weight decay on the
//! weight matrices, none on biases, LayerNorms and the position embedding), and global-norm
//! gradient clipping as `torch.nn.utils.clip_grad_norm_`.
//!
//! burn's AdamW applies one decay to every parameter and clips each tensor on its own, so the
//! groups are two burn optimizers over disjoint gradient sets, and clipping is done here.

use anyhow::{Context, Result};
use burn::{
    module::{ModuleVisitor, Param, ParamId},
    optim::{adaptor::OptimizerAdaptor, AdamW, AdamWConfig, GradientsParams, Optimizer},
    prelude::*,
    record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder},
    tensor::backend::AutodiffBackend,
};
use gpt2::Gpt2;
use std::{collections::HashSet, path::Path};

#[derive(Debug, Clone, Copy)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

type Adaptor<B> = OptimizerAdaptor<AdamW, Gpt2<B>, B>;

pub struct GroupedAdamW<B: AutodiffBackend> {
    decayed: Adaptor<B>,
    not_decayed: Adaptor<B>,
}

impl<B: AutodiffBackend> GroupedAdamW<B> {
    pub fn new(settings: AdamWSettings) -> Self {
        let adamw = |decay: f64| {
            AdamWConfig::new()
                .with_beta_1(settings.beta1 as f32)
                .with_beta_2(settings.beta2 as f32)
                .with_epsilon(settings.eps as f32)
                .with_weight_decay(decay as f32)
                .init()
        };
        Self { decayed: adamw(settings.weight_decay), not_decayed: adamw(0.0) }
    }

    /// One update of `model` with learning rate `lr`.
    pub fn step(&mut self, lr: f64, model: Gpt2<B>, mut grads: GradientsParams) -> Gpt2<B> {
        // Parameter ids change when a checkpoint is loaded: find the matrices afresh.
        let matrices = weight_matrices(&model);
        let mut matrix_grads = GradientsParams::new();
        model.visit(&mut MoveGradients { ids: &matrices, from: &mut grads, to: &mut matrix_grads });
        let model = self.decayed.step(lr, model, matrix_grads);
        self.not_decayed.step(lr, model, grads)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        recorder.record(self.decayed.to_record(), dir.join(DECAYED_FILE)).context("saving the optimizer state")?;
        recorder.record(self.not_decayed.to_record(), dir.join(NOT_DECAYED_FILE)).context("saving the optimizer state")
    }

    pub fn load(mut self, dir: &Path, device: &B::Device) -> Result<Self> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let load = |file: &str| {
            recorder
                .load(dir.join(file), device)
                .with_context(|| format!("loading the optimizer state {}", dir.join(file).display()))
        };
        self.decayed = self.decayed.load_record(load(DECAYED_FILE)?);
        self.not_decayed = self.not_decayed.load_record(load(NOT_DECAYED_FILE)?);
        Ok(self)
    }
}

const DECAYED_FILE: &str = "adamw-decayed";
const NOT_DECAYED_FILE: &str = "adamw-not-decayed";

/// The parameters weight decay applies to: the token embedding (also the LM head) and every
/// linear layer's weight.
fn weight_matrices<B: Backend>(model: &Gpt2<B>) -> HashSet<ParamId> {
    let mut ids = HashSet::from([model.wte.weight.id]);
    for block in &model.h {
        for linear in [&block.attn.c_attn, &block.attn.c_proj, &block.mlp.c_fc, &block.mlp.c_proj] {
            ids.insert(linear.weight.id);
        }
    }
    ids
}

struct MoveGradients<'a> {
    ids: &'a HashSet<ParamId>,
    from: &'a mut GradientsParams,
    to: &'a mut GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for MoveGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.ids.contains(&param.id) {
            if let Some(grad) = self.from.remove::<B::InnerBackend, D>(param.id) {
                self.to.register(param.id, grad);
            }
        }
    }
}

/// The L2 norm of all gradients together, as a one-element tensor. With `max_norm` > 0 every
/// gradient is scaled by `min(1, max_norm / (norm + 1e-6))`, as `clip_grad_norm_` does.
///
/// Everything stays on the device, as in PyTorch's `clip_grad_norm_`, which also scales by the
/// clamped factor even when it is 1 (exact in floating point): reading the norm to decide
/// would wait for every queued kernel, once more per step.
pub fn clip_global_norm<B: AutodiffBackend>(
    model: &Gpt2<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Tensor<B::InnerBackend, 1> {
    let mut squares = SumOfSquares::<B> { grads, total: None };
    model.visit(&mut squares);
    let norm = squares.total.expect("a model has parameters with gradients").sqrt();
    if max_norm > 0.0 {
        let factor = (norm.clone() + 1e-6).recip().mul_scalar(max_norm).clamp_max(1.0);
        model.visit(&mut Scale { grads, factor });
    }
    norm
}

struct SumOfSquares<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SumOfSquares<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            // A sum along a dimension, not a full `sum`: burn's fusion fuses it with the
            // square, where a full sum is two kernels of its own (zeroing and summing).
            let square = grad.square().reshape([1, -1]).sum_dim(1).reshape([1]);
            self.total = Some(match self.total.take() {
                Some(total) => total + square,
                None => square,
            });
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    /// One element.
    factor: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let factor = self.factor.clone().reshape([1; D]);
            self.grads.register(param.id, grad * factor);
        }
    }
}
