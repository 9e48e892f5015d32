//! AdamW as PyTorch's `torch.optim.AdamW` with two parameter groups (weight decay on the
//! weight matrices, none on biases, LayerNorms and the position embedding), after global-norm
//! gradient clipping as `torch.nn.utils.clip_grad_norm_`.
//!
//! burn's AdamW updates a tensor at a time (some fifteen operations each, fused per tensor but
//! never across tensors: hundreds of kernel launches a step) and clips each tensor on its own.
//! Here each group's parameters, gradients and moments are flat buffers ([`layout`]): the
//! micro-batches' gradients are summed into them ([`StepGradients`]), the norm is one reduction,
//! the clip and the update one kernel a group (the backend's `adamw_update`: on CubeCL, one
//! that rewrites the moments in place), all on the device.

mod layout;
mod state_file;
mod step_gradients;

pub use step_gradients::StepGradients;

use crate::workers::Peer;
use anyhow::Result;
use burn::{
    prelude::*,
    tensor::{backend::AutodiffBackend, FloatDType},
};
use gpt2::{Gpt2, Gpt2Backend, Precision, RoundedWeights};
use kernels::AdamWStep;
use layout::{Group, Layout, Values, GROUPS};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

pub struct GroupedAdamW<B: AutodiffBackend> {
    settings: AdamWSettings,
    /// Updates made so far: PyTorch's `step`, from which the bias corrections count.
    steps: u64,
    /// Made from the model at the first step, or read with the moments.
    layout: Option<Arc<Layout>>,
    moments: Option<[Moments<B::InnerBackend>; 2]>,
    /// The buffers the model's parameters are views of, once adopted.
    params: Option<[Tensor<B::InnerBackend, 1>; 2]>,
    /// The weight matrices of `params` rounded to this type, once asked for since they last
    /// changed.
    rounded: Option<(FloatDType, RoundedWeights<B>)>,
}

/// AdamW's running averages of one group, flat.
#[derive(Debug, Clone)]
struct Moments<B: Backend> {
    /// Of the gradients (PyTorch's `exp_avg`).
    first: Tensor<B, 1>,
    /// Of their squares (`exp_avg_sq`).
    second: Tensor<B, 1>,
}

impl<B: AutodiffBackend> GroupedAdamW<B> {
    pub fn new(settings: AdamWSettings) -> Self {
        Self { settings, steps: 0, layout: None, moments: None, params: None, rounded: None }
    }

    /// `model`, fresh or loaded, with its parameters as views of this optimizer's flat
    /// buffers, as each step leaves them; once, before the first step (which does it if not
    /// done). Done before the step loop, it lets go of the model's own weights before the first
    /// step's activations and gradients are allocated.
    pub fn adopt(&mut self, model: Gpt2<B>) -> Gpt2<B>
    where
        B::InnerBackend: Gpt2Backend,
    {
        let layout = self.layout.get_or_insert_with(|| Arc::new(Layout::of(&model))).clone();
        let device = model.wte.weight.device();
        // A step allocates a group's buffer size several times (gradients, moments,
        // weights). In CubeCL's shared pools those large buffers find no free slice that
        // fits and each takes a new page; its persistent pool keeps exact-size slices and,
        // once it holds a size, takes every later allocation of it. One buffer of each size
        // allocated there (fusion allocates when its stream runs: hence the sync inside)
        // puts them all there. Elsewhere this does nothing.
        B::InnerBackend::memory_persistent_allocations(&device, (), |()| {
            let buffers = layout.zeros::<B::InnerBackend>(&device);
            let _ = B::InnerBackend::sync(&device);
            drop(buffers);
        });
        let params = layout.gather(&model, &mut Values, &device);
        let model = layout.scatter(model, &params);
        self.params = Some(params);
        self.rounded = None;
        model
    }

    /// The weight matrices rounded for products in `precision` (the model's), from the
    /// weights as this optimizer last adopted or updated them: made when first asked for
    /// after each update, then read by each of the step's micro-batches
    /// ([`Gpt2::training_loss`](gpt2::Gpt2::training_loss)) where each would otherwise
    /// round every weight again. Empty in f32, and before [`adopt`](Self::adopt).
    pub fn rounded_weights(&mut self, precision: Precision) -> &RoundedWeights<B>
    where
        B::InnerBackend: Gpt2Backend,
    {
        self.rounded_to(precision.operands())
    }

    /// [`rounded_weights`](Self::rounded_weights) for operands of the type `operands`.
    fn rounded_to(&mut self, operands: FloatDType) -> &RoundedWeights<B>
    where
        B::InnerBackend: Gpt2Backend,
    {
        if self.rounded.as_ref().is_none_or(|(made_for, _)| *made_for != operands) {
            let rounded = match (&self.layout, &self.params) {
                (Some(layout), Some(params)) if operands != FloatDType::F32 => {
                    layout.rounded_weights(&params[Group::Decayed as usize], operands)
                }
                _ => RoundedWeights::default(),
            };
            self.rounded = Some((operands, rounded));
        }
        &self.rounded.as_ref().expect("made above").1
    }

    /// Zeros to sum a step's gradients of `model` into, laid out as this optimizer's buffers.
    pub fn gradients(&mut self, model: &Gpt2<B>) -> StepGradients<B>
    where
        B::InnerBackend: Gpt2Backend,
    {
        let layout = self.layout.get_or_insert_with(|| Arc::new(Layout::of(model)));
        StepGradients::zeros(layout.clone(), &model.wte.weight.device())
    }

    /// One update of `model` with learning rate `lr`, the step's gradients first scaled down to
    /// a global norm of at most `max_norm` (not at all when it is 0). Returns the updated model
    /// and the gradients' norm before clipping, as a one-element tensor left on the device.
    ///
    /// `model` is the model the previous step returned, or before the first step of this
    /// optimizer the one [`adopt`](Self::adopt) returned (or any other, then adopted here):
    /// from a step on, its parameters are views of this optimizer's buffers.
    ///
    /// With several workers, `grads` are this worker's share of the step's: the flat buffers
    /// are summed across the workers first, so every replica takes the same update.
    pub fn step(
        &mut self,
        lr: f64,
        model: Gpt2<B>,
        grads: StepGradients<B>,
        max_norm: f64,
        peer: &Peer,
    ) -> Result<(Gpt2<B>, Tensor<B::InnerBackend, 1>)>
    where
        B::InnerBackend: Gpt2Backend,
    {
        let model = if self.params.is_none() { self.adopt(model) } else { model };
        // Stale from here on: let go of it before the update's buffers are allocated.
        self.rounded = None;
        let device = model.wte.weight.device();
        let layout = self.layout.as_ref().expect("made when adopted");
        let params = self.params.take().expect("adopted");
        let [decayed, not_decayed] = grads.into_buffers(layout);
        let grads = [peer.sum(decayed)?, peer.sum(not_decayed)?];

        // Everything stays on the device, as in PyTorch's `clip_grad_norm_`, which also scales
        // by the clamped factor when it is 1 (exact in floating point): reading the norm to
        // decide would wait for every queued kernel, once more per step.
        let norm = global_norm(&grads);
        let clip = (max_norm > 0.0).then(|| (norm.clone() + 1e-6).recip().mul_scalar(max_norm).clamp_max(1.0));

        self.steps += 1;
        // Two buffers, not one held twice: the update rewrites each in place.
        let moments = self
            .moments
            .take()
            .unwrap_or_else(|| layout.zeros(&device).map(|zeros| Moments { second: zeros.zeros_like(), first: zeros }));
        let mut updated = Vec::with_capacity(GROUPS.len());
        let mut kept = Vec::with_capacity(GROUPS.len());
        for ((group, param), (grad, Moments { first, second })) in
            GROUPS.into_iter().zip(params).zip(grads.into_iter().zip(moments))
        {
            let step = self.settings.step(self.steps, lr, group);
            let (param, first, second) = B::InnerBackend::adamw_update(param, grad, clip.clone(), first, second, step);
            updated.push(param);
            kept.push(Moments { first, second });
        }
        let updated: [_; 2] = updated.try_into().expect("two groups");
        self.moments = Some(kept.try_into().expect("two groups"));
        let model = layout.scatter(model, &updated);
        self.params = Some(updated);
        Ok((model, norm))
    }
}

impl<B: AutodiffBackend> GroupedAdamW<B> {
    /// The sha256 of the weights, as this optimizer last updated them (none before it adopts them).
    pub fn weights_sha256(&self) -> Option<String> {
        let params = self.params.as_ref()?;
        let bytes: Vec<u8> = params.iter().flat_map(|buffer| buffer.to_data().as_bytes().to_vec()).collect();
        Some(artifact::sha256_bytes(&bytes))
    }
}

/// The L2 norm of all gradients together, each buffer's squares summed by the backend
/// (on CubeCL, with no buffer of the squares).
fn global_norm<B: Gpt2Backend>(grads: &[Tensor<B, 1>; 2]) -> Tensor<B, 1> {
    grads
        .iter()
        .map(|grad| B::sum_of_squares(grad.clone()))
        .reduce(|total, squares| total + squares)
        .expect("two groups")
        .sqrt()
}

impl AdamWSettings {
    /// The scalars of PyTorch's AdamW update (`_single_tensor_adamw`) of `group`, as its
    /// `step`-th, at learning rate `lr`.
    fn step(&self, step: u64, lr: f64, group: Group) -> AdamWStep {
        let Self { beta1, beta2, eps, weight_decay } = *self;
        let decay = match group {
            Group::Decayed => 1.0 - lr * weight_decay,
            Group::NotDecayed => 1.0,
        };
        let bias_correction1 = 1.0 - beta1.powi(step as i32);
        let bias_correction2 = 1.0 - beta2.powi(step as i32);
        AdamWStep {
            decay,
            beta1,
            beta2,
            eps,
            bias_correction2_sqrt: bias_correction2.sqrt(),
            step_size: lr / bias_correction1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::{
        backend::{Autodiff, NdArray},
        module::{ModuleVisitor, Param, ParamId},
        optim::{adaptor::OptimizerAdaptor, AdamW as BurnAdamW, AdamWConfig, GradientsParams, Optimizer},
        record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder},
    };
    use gpt2::{next_token_loss, Gpt2Config, NextTokens};
    use std::collections::HashSet;

    pub(super) type B = Autodiff<NdArray>;
    pub(super) const SETTINGS: AdamWSettings = AdamWSettings { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
    const LR: f64 = 1e-2;

    pub(super) fn model() -> Gpt2<B> {
        let config = Gpt2Config::new(40, 16, 8, 2, 2).with_embd_pdrop(0.0).with_attn_pdrop(0.0).with_resid_pdrop(0.0);
        let model = config.init(&Default::default());
        // burn draws a parameter's values when first read: before that, each clone would
        // draw its own.
        values(&model);
        model
    }

    /// The next-token loss's gradients on tokens that differ with `step`.
    fn grads(model: &Gpt2<B>, step: i64) -> GradientsParams {
        let device = Default::default();
        let tokens: Vec<i64> = (0..24).map(|i| i * (step + 3) % 40).collect();
        let next = NextTokens::new(&tokens, &[1.0; 24], 12, &device);
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [2, 12]), &device);
        let loss = next_token_loss(model.forward(tokens), next, model.precision());
        GradientsParams::from_grads(loss.backward(), model)
    }

    /// `optimizer`'s update of `model` with the gradients of `micro_batches` (the steps `grads`
    /// takes) summed, clipped to `max_norm`.
    pub(super) fn step(
        optimizer: &mut GroupedAdamW<B>,
        model: Gpt2<B>,
        micro_batches: &[i64],
        max_norm: f64,
    ) -> (Gpt2<B>, Tensor<NdArray, 1>) {
        let mut summed = optimizer.gradients(&model);
        for &micro_batch in micro_batches {
            summed = summed.add(&model, grads(&model, micro_batch));
        }
        optimizer.step(LR, model, summed, max_norm, &Peer::ALONE).unwrap()
    }

    /// burn's AdamW, one optimizer a group: what this optimizer replaced, and what earlier
    /// versions' checkpoints hold.
    struct BurnGrouped {
        decayed: OptimizerAdaptor<BurnAdamW, Gpt2<B>, B>,
        not_decayed: OptimizerAdaptor<BurnAdamW, Gpt2<B>, B>,
    }

    impl BurnGrouped {
        fn new() -> Self {
            let adamw = |decay: f64| {
                AdamWConfig::new()
                    .with_beta_1(SETTINGS.beta1 as f32)
                    .with_beta_2(SETTINGS.beta2 as f32)
                    .with_epsilon(SETTINGS.eps as f32)
                    .with_weight_decay(decay as f32)
                    .init()
            };
            Self { decayed: adamw(SETTINGS.weight_decay), not_decayed: adamw(0.0) }
        }

        fn step(&mut self, model: Gpt2<B>, mut grads: GradientsParams) -> Gpt2<B> {
            let ids = Layout::of(&model).ids(Group::Decayed).into_iter().collect();
            let mut decayed = GradientsParams::new();
            model.visit(&mut MoveGradients { ids: &ids, from: &mut grads, to: &mut decayed });
            let model = self.decayed.step(LR, model, decayed);
            self.not_decayed.step(LR, model, grads)
        }
    }

    struct MoveGradients<'a> {
        ids: &'a HashSet<ParamId>,
        from: &'a mut GradientsParams,
        to: &'a mut GradientsParams,
    }

    impl ModuleVisitor<B> for MoveGradients<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.ids.contains(&param.id) {
                let grad = self.from.remove::<NdArray, D>(param.id).unwrap();
                self.to.register(param.id, grad);
            }
        }
    }

    /// Each parameter's values, in the order the model visits them.
    fn params(model: &Gpt2<B>) -> Vec<(ParamId, Vec<f32>)> {
        struct Collect(Vec<(ParamId, Vec<f32>)>);
        impl ModuleVisitor<B> for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0.push((param.id, param.val().into_data().to_vec().unwrap()));
            }
        }
        let mut collect = Collect(Vec::new());
        model.visit(&mut collect);
        collect.0
    }

    pub(super) fn values(model: &Gpt2<B>) -> Vec<f32> {
        params(model).into_iter().flat_map(|(_, values)| values).collect()
    }

    /// All values but the key biases': their gradient is zero (softmax is the same when all of
    /// a query's scores shift by one number), and Adam turns its rounding noise into steps.
    fn without_key_biases(model: &Gpt2<B>) -> Vec<f32> {
        let key_biases: HashSet<ParamId> =
            model.h.iter().map(|block| block.attn.c_attn.bias.as_ref().unwrap().id).collect();
        let mut kept = Vec::new();
        for (id, mut values) in params(model) {
            if key_biases.contains(&id) {
                let width = values.len() / 3;
                values.drain(width..2 * width);
            }
            kept.extend(values);
        }
        kept
    }

    fn assert_close(ours: &Gpt2<B>, theirs: &Gpt2<B>) {
        let (ours, theirs) = (without_key_biases(ours), without_key_biases(theirs));
        let difference = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(difference <= 1e-6, "parameters differ by up to {difference}");
    }

    #[test]
    fn updates_as_burns_adamw_does_a_tensor_at_a_time() {
        let start = model();
        let (mut ours, mut theirs) = (start.clone(), start);
        let (mut flat, mut burn) = (GroupedAdamW::new(SETTINGS), BurnGrouped::new());
        for index in 0..3 {
            (ours, _) = step(&mut flat, ours.clone(), &[index], 0.0);
            theirs = burn.step(theirs.clone(), grads(&theirs, index));
            assert_close(&ours, &theirs);
        }
        assert_ne!(values(&ours), values(&model()), "it trained");
    }

    /// The rounded weights are the weight matrices as last updated, in the operands' type
    /// (f64 here: the CPU has no bf16), one for each matrix a product reads and none for the
    /// others; none at all in f32.
    #[test]
    fn rounded_weights_follow_each_update() {
        let mut optimizer = GroupedAdamW::new(SETTINGS);
        let mut model = optimizer.adopt(model());
        assert!(optimizer.rounded_weights(Precision::F32).is_empty());
        for index in 0..2 {
            let rounded = optimizer.rounded_to(FloatDType::F64).clone();
            let matrices = std::iter::once(&model.wte.weight).chain(model.h.iter().flat_map(|block| {
                [&block.attn.c_attn, &block.attn.c_proj, &block.mlp.c_fc, &block.mlp.c_proj].map(|layer| &layer.weight)
            }));
            for weight in matrices {
                let copy = rounded.get(weight).expect("each matrix rounded").into_data();
                assert_eq!(copy.dtype, burn::tensor::DType::F64);
                assert_eq!(copy.convert::<f32>(), weight.val().into_data(), "step {index}");
            }
            assert!(rounded.get(&model.wpe.weight).is_none(), "the position embedding is no product's");
            (model, _) = step(&mut optimizer, model, &[index], 0.0);
        }
    }

    #[test]
    fn the_norm_is_of_all_gradients_and_clipping_scales_them_to_it() {
        let model = model();
        let squares: f64 = {
            let (mut first, mut second) = (grads(&model, 0), grads(&model, 1));
            let mut visit = SumOfSquares { first: &mut first, second: &mut second, total: 0.0 };
            model.visit(&mut visit);
            visit.total
        };
        let mut optimizer = GroupedAdamW::new(SETTINGS);
        let (_, norm) = step(&mut optimizer, model.clone(), &[0, 1], 0.0);
        let norm = norm.into_scalar() as f64;
        assert!((norm - squares.sqrt()).abs() <= 1e-6 * norm, "{norm} vs {}", squares.sqrt());

        // After one step the first moment is (1 - beta1) times the gradients as clipped.
        let first_moment = |max_norm: f64| {
            let mut optimizer = GroupedAdamW::new(SETTINGS);
            step(&mut optimizer, model.clone(), &[0, 1], max_norm);
            let [decayed, not_decayed] = optimizer.moments.unwrap().map(|moments| moments.first.into_data());
            decayed.iter::<f32>().chain(not_decayed.iter::<f32>()).collect::<Vec<_>>()
        };
        let unclipped = first_moment(0.0);
        let halved = first_moment(norm / 2.0);
        assert!(unclipped.iter().zip(&halved).all(|(a, b)| (a / 2.0 - b).abs() <= 1e-5 * a.abs()));
        assert_eq!(first_moment(norm * 10.0), unclipped, "gradients under the limit are left as they are");
    }

    /// The sum of the squares of two micro-batches' gradients, summed parameter by parameter.
    struct SumOfSquares<'a> {
        first: &'a mut GradientsParams,
        second: &'a mut GradientsParams,
        total: f64,
    }

    impl ModuleVisitor<B> for SumOfSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let [first, second] =
                [&mut *self.first, &mut *self.second].map(|grads| grads.remove::<NdArray, D>(param.id));
            let summed = (first.unwrap() + second.unwrap()).into_data();
            self.total += summed.iter::<f32>().map(|x| (x as f64).powi(2)).sum::<f64>();
        }
    }

    #[test]
    fn checkpoints_of_burns_adamw_resume_where_they_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = model();
        let mut burn = BurnGrouped::new();
        for step in 0..2 {
            model = burn.step(model.clone(), grads(&model, step));
        }
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        recorder.record(burn.decayed.to_record(), dir.path().join("adamw-decayed")).unwrap();
        recorder.record(burn.not_decayed.to_record(), dir.path().join("adamw-not-decayed")).unwrap();

        let mut flat = GroupedAdamW::new(SETTINGS).load(dir.path(), &model, &Default::default()).unwrap();
        assert_eq!(flat.steps, 2);
        let (ours, _) = step(&mut flat, model.clone(), &[2], 0.0);
        let theirs = burn.step(model.clone(), grads(&model, 2));
        assert_close(&ours, &theirs);
    }

    #[test]
    fn a_saved_state_resumes_and_is_refused_beside_another_model() {
        let dir = tempfile::tempdir().unwrap();
        let start = model();
        let mut optimizer = GroupedAdamW::new(SETTINGS);
        let (trained, _) = step(&mut optimizer, start.clone(), &[0], 1.0);
        optimizer.save(dir.path()).unwrap();

        let mut resumed = GroupedAdamW::new(SETTINGS).load(dir.path(), &trained, &Default::default()).unwrap();
        let (ours, _) = step(&mut resumed, trained.clone(), &[1], 1.0);
        let (theirs, _) = step(&mut optimizer, trained.clone(), &[1], 1.0);
        assert_eq!(values(&ours), values(&theirs), "resumed bit for bit");

        let error = GroupedAdamW::new(SETTINGS).load(dir.path(), &model(), &Default::default()).err().unwrap();
        assert!(format!("{error:#}").contains("not that of the model saved beside it"), "{error:#}");
    }
}
