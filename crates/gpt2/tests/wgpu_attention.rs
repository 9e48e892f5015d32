//! Attention on burn's CubeCL + fusion path (the path CUDA takes: flash attention's kernels from
//! `cube-kernels`, here on wgpu, Mesa's software Vulkan driver on a machine without a GPU)
//! against the CPU's burn operations, with documents packed in a row: training's (the output
//! and the q/k/v projection's gradient, with dropout) and evaluation's (no gradient).
//! `cargo test -p gpt2 --features wgpu --test wgpu_attention`

use burn::{backend::Autodiff, prelude::*, tensor::Distribution};
use gpt2::{causal_mask, Cpu, Documents, Dropout, DropoutMasks, Gpt2Backend, Precision, Wgpu};
use rand::{rngs::StdRng, SeedableRng};

const BATCH: usize = 2;
/// Past one of the kernels' 32-row tiles.
const TIME: usize = 40;
const HEADS: usize = 2;
/// GPT-2's heads are 64 wide.
const HEAD_DIM: usize = 64;

/// The heads' outputs side by side and the q/k/v rows' gradient for an upstream gradient.
fn attention<B: Gpt2Backend>(qkv: TensorData, upstream: TensorData, dropout: Option<Dropout>) -> [Vec<f32>; 2] {
    let device = Default::default();
    let mask = documents_mask::<Autodiff<B>>();
    let qkv = Tensor::<Autodiff<B>, 2>::from_data(qkv, &device).require_grad();
    let y = Autodiff::<B>::self_attention(qkv.clone(), HEADS, mask, dropout, Precision::F32);
    let gradients = (y.clone() * Tensor::from_data(upstream, &device)).sum().backward();
    let values = |t: Tensor<B, 2>| t.into_data().to_vec::<f32>().unwrap();
    [values(y.inner()), values(qkv.grad(&gradients).unwrap())]
}

/// Two rows: one document, and two packed (their keys hidden from each other's queries).
fn documents_mask<B: Gpt2Backend>() -> Tensor<B, 3, Bool> {
    let device = Default::default();
    let documents = Documents::<B>::new(&[vec![4], vec![7, 30]], TIME, &device);
    documents.mask(causal_mask::<B>(TIME, TIME, &device))
}

/// Draws from the uniform distribution over -1..1, the same for the same `seed` on every run
/// (burn's own generator is one a device, which a binary's tests share and reseed).
fn random(dims: [usize; 2], seed: u64) -> TensorData {
    TensorData::random::<f32, _, _>(dims, Distribution::Uniform(-1.0, 1.0), &mut StdRng::seed_from_u64(seed))
}

fn assert_close(what: &str, expected: &[f32], actual: &[f32]) {
    let scale = expected.iter().fold(0.0f32, |m, e| m.max(e.abs()));
    let difference = expected.iter().zip(actual).map(|(e, a)| (e - a).abs()).fold(0.0f32, f32::max);
    assert!(difference <= 1e-5 * scale, "{what}: max |difference| {difference} at scale {scale}");
}

#[test]
fn training_attention_matches_the_cpu() {
    let width = HEADS * HEAD_DIM;
    for p in [0.0, 0.1] {
        let stream = DropoutMasks::new(3, 1, 0).layer(2).attention_weights();
        let dropout = (p > 0.0).then_some(Dropout { p, stream });
        let (qkv, upstream) = (random([BATCH * TIME, 3 * width], 1), random([BATCH * TIME, width], 2));
        let cpu = attention::<Cpu>(qkv.clone(), upstream.clone(), dropout);
        let wgpu = attention::<Wgpu>(qkv, upstream, dropout);
        for (what, (expected, actual)) in ["output", "q/k/v gradient"].iter().zip(cpu.iter().zip(&wgpu)) {
            assert_close(&format!("{what}, dropout {p}"), expected, actual);
        }
    }
}

/// The heads' outputs side by side, as an evaluation's forward pass takes them.
fn evaluation<B: Gpt2Backend>(qkv: TensorData) -> Vec<f32> {
    let qkv = Tensor::<B, 2>::from_data(qkv, &Default::default());
    B::self_attention(qkv, HEADS, documents_mask::<B>(), None, Precision::F32).into_data().to_vec().unwrap()
}

#[test]
fn evaluation_attention_matches_the_cpu() {
    let qkv = random([BATCH * TIME, 3 * HEADS * HEAD_DIM], 3);
    assert_close("evaluation's output", &evaluation::<Cpu>(qkv.clone()), &evaluation::<Wgpu>(qkv));
}
