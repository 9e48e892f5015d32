//! A training pass of the tiny fixture on wgpu against the CPU: the loss and every
//! parameter's gradient, with dropout and documents packed in rows. The fixture's vocabulary
//! cut to 500 tokens, which wgpu's LM head pads to 512 columns (the CPU's does not).

use burn::{
    backend::Autodiff,
    module::{ModuleVisitor, Param},
    optim::GradientsParams,
    prelude::*,
};
use gpt2::{hf, Cpu, Documents, DropoutMasks, Gpt2, Gpt2Backend, NextTokens, RoundedWeights, Wgpu};
use std::path::Path;

const TIME: usize = 24;

/// Not a multiple of the LM head's padding on CubeCL backends (64 columns).
const VOCAB: usize = 500;

/// The tiny fixture with its vocabulary cut to [`VOCAB`] tokens, saved in `dir`.
fn fixture_cut_to_vocab(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let (mut config, mut model): (_, Gpt2<Cpu>) =
        hf::load_dir(&fixture, &Default::default()).expect("the tiny fixture");
    model.wte.weight = model.wte.weight.map(|wte| wte.narrow(0, 0, VOCAB));
    (config.vocab_size, config.eos_token_id) = (VOCAB, VOCAB - 1);
    hf::save(&model, &config, dir, None).expect("the cut fixture saved");
}

/// The loss, then each parameter's gradient, in the order the model visits them.
fn loss_and_gradients<B: Gpt2Backend>(model_dir: &Path, ids: &[i64], p: f64) -> Vec<Vec<f32>> {
    let device = Default::default();
    let (_, model): (_, Gpt2<Autodiff<B>>) = hf::load_dir(model_dir, &device).expect("the cut fixture");
    let model = model.with_dropout(p);
    let tokens = Tensor::<Autodiff<B>, 2, Int>::from_data(TensorData::new(ids.to_vec(), [2, TIME]), &device);
    // The second row ends in three tokens of padding.
    let real: Vec<f32> = (0..2 * TIME).map(|i| if i >= 2 * TIME - 3 { 0.0 } else { 1.0 }).collect();
    let documents = Documents::new(&[vec![0], vec![0, 9]], TIME, &device);
    let next = NextTokens::new(ids, &real, TIME, &device);
    let loss =
        model.training_loss(tokens, Some(&documents), DropoutMasks::new(5, 2, 1), &RoundedWeights::default(), next);
    let mut gradients = GradientsParams::from_grads(loss.backward(), &model);
    let mut collect = Collect { gradients: &mut gradients, values: vec![loss.inner().into_data().to_vec().unwrap()] };
    model.visit(&mut collect);
    collect.values
}

struct Collect<'a> {
    gradients: &'a mut GradientsParams,
    values: Vec<Vec<f32>>,
}

impl<B: Gpt2Backend> ModuleVisitor<Autodiff<B>> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Autodiff<B>, D>>) {
        let gradient = self.gradients.remove::<B, D>(param.id).expect("every parameter has a gradient");
        self.values.push(gradient.into_data().to_vec().unwrap());
    }
}

/// A training pass on wgpu gives the CPU's loss and gradients, within `tolerance` of each
/// one's largest, without dropout and with it.
pub fn assert_wgpu_pass_matches_cpu(tolerance: f32) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    fixture_cut_to_vocab(dir.path());
    let ids: Vec<i64> = (0..2 * TIME).map(|i| (i * 37 % (VOCAB - 1)) as i64).collect();
    for p in [0.0, 0.1] {
        let cpu = loss_and_gradients::<Cpu>(dir.path(), &ids, p);
        let wgpu = loss_and_gradients::<Wgpu>(dir.path(), &ids, p);
        assert_eq!(cpu.len(), wgpu.len());
        for (i, (expected, actual)) in cpu.iter().zip(&wgpu).enumerate() {
            let what = if i == 0 { "the loss".to_string() } else { format!("parameter {i}'s gradient") };
            let scale = expected.iter().fold(1e-3f32, |m, e| m.max(e.abs()));
            let difference = expected.iter().zip(actual).map(|(e, a)| (e - a).abs()).fold(0.0f32, f32::max);
            assert!(
                difference <= tolerance * scale,
                "{what}, dropout {p}: max |difference| {difference} at scale {scale}"
            );
        }
    }
}
