//! The flash attention kernels against burn's operations differentiated one by one on the CPU,
//! on burn's wgpu backend (with and without fusion; Mesa's software Vulkan driver on a machine
//! without a GPU): causal, with documents packed in a row, with and without dropout.
//! `cargo test -p cube-kernels --features wgpu --test flash_attention`

use burn::{
    backend::{
        wgpu::{CubeBackend, WgpuRuntime},
        Autodiff, NdArray, Wgpu,
    },
    prelude::*,
    tensor::{activation::softmax, ops::FloatTensor, Distribution, TensorData, TensorPrimitive},
};
use cube_kernels::{FlashAttention, WeightsDropout};
use kernels::MaskStream;

type Cpu = NdArray<f32>;

/// One case: `[batch, heads, time, head_dim]`, where each row's documents start (after the one
/// at 0), and dropout's probability.
struct Case {
    dims: [usize; 4],
    starts: Vec<Vec<usize>>,
    p: f64,
}

/// `[batch, time, time]`: 1.0 where query `i` must not see key `j` (a later key, or one of
/// another document).
fn hidden(case: &Case) -> Vec<f32> {
    let [batch, _, time, _] = case.dims;
    let mut hidden = Vec::with_capacity(batch * time * time);
    for starts in case.starts.iter().cycle().take(batch) {
        let document = |i: usize| starts.iter().filter(|&&start| start <= i).count();
        for i in 0..time {
            hidden.extend((0..time).map(|j| if j > i || document(j) != document(i) { 1.0 } else { 0.0 }));
        }
    }
    hidden
}

fn random(dims: [usize; 4], seed: u64) -> TensorData {
    Cpu::seed(&Default::default(), seed);
    Tensor::<Cpu, 4>::random(dims, Distribution::Uniform(-2.0, 2.0), &Default::default()).into_data()
}

/// burn's operations on the CPU, differentiated by burn: the output and q's, k's and v's
/// gradients for an upstream gradient `d_output`.
fn reference(case: &Case, [q, k, v, d_output]: [TensorData; 4], dropout: Option<WeightsDropout>) -> [Vec<f32>; 4] {
    type Trained = Autodiff<Cpu>;
    let device = Default::default();
    let [batch, heads, time, head_dim] = case.dims;
    let leaf = |data: TensorData| Tensor::<Trained, 4>::from_data(data, &device).require_grad();
    let (q, k, v) = (leaf(q), leaf(k), leaf(v));
    let hidden = Tensor::<Trained, 3>::from_data(TensorData::new(hidden(case), [batch, time, time]), &device)
        .equal_elem(1.0)
        .unsqueeze_dim::<4>(1)
        .expand([batch, heads, time, time]);
    let scores =
        q.clone().matmul(k.clone().transpose()).mask_fill(hidden, f32::NEG_INFINITY) / (head_dim as f64).sqrt();
    let mut weights = softmax(scores, 3);
    if let Some(WeightsDropout { stream, p }) = dropout {
        let mut keeps = vec![0.0; batch * heads * time * time];
        kernels::dropout_keeps(stream, p, &mut keeps);
        let keeps = Tensor::<Trained, 4>::from_data(TensorData::new(keeps, [batch, heads, time, time]), &device);
        weights = weights * keeps / (1.0 - p);
    }
    let output = weights.matmul(v.clone());
    let gradients = (output.clone() * Tensor::from_data(d_output, &device)).sum().backward();
    let values = |t: Tensor<Cpu, 4>| t.into_data().to_vec::<f32>().unwrap();
    [
        values(output.inner()),
        values(q.grad(&gradients).unwrap()),
        values(k.grad(&gradients).unwrap()),
        values(v.grad(&gradients).unwrap()),
    ]
}

fn on<B: Backend>(data: TensorData) -> FloatTensor<B> {
    Tensor::<B, 4>::from_data(data, &Default::default()).into_primitive().tensor()
}

fn values<B: Backend>(tensor: FloatTensor<B>) -> Vec<f32> {
    Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(tensor)).into_data().to_vec::<f32>().unwrap()
}

fn assert_close(what: &str, expected: &[f32], actual: &[f32]) {
    assert_eq!(expected.len(), actual.len(), "{what}");
    let scale = expected.iter().fold(1.0f32, |m, e| m.max(e.abs()));
    let (at, difference) = expected
        .iter()
        .zip(actual)
        .map(|(e, a)| (e - a).abs())
        .enumerate()
        .fold((0, 0.0f32), |(i, m), (j, d)| if d > m || d.is_nan() { (j, d) } else { (i, m) });
    assert!(
        difference <= 2e-5 * scale,
        "{what}: max |difference| {difference} at element {at} ({} against {}), scale {scale}",
        actual[at],
        expected[at]
    );
}

fn check<B: FlashAttention>(case: &Case) {
    let [batch, _, time, _] = case.dims;
    let dropout = (case.p > 0.0).then_some(WeightsDropout {
        stream: MaskStream { key: [0x1234_5678, 0x9abc_def0], stream: [3, 7, 11] },
        p: case.p,
    });
    let inputs = [1, 2, 3, 4].map(|seed| random(case.dims, seed + time as u64));
    let [output, d_q, d_k, d_v] = reference(case, inputs.clone(), dropout);
    let [q, k, v, d_output] = inputs.map(on::<B>);
    let hidden = || {
        let data = TensorData::new(hidden(case), [batch, time, time]);
        Tensor::<B, 3>::from_data(data, &Default::default()).into_primitive().tensor()
    };
    let what = |part: &str| format!("{part}, {:?}, documents {:?}, dropout {}", case.dims, case.starts, case.p);

    let (ours, logsumexp) = B::flash_attention(q.clone(), k.clone(), v.clone(), hidden(), dropout);
    assert_close(&what("output"), &output, &values::<B>(ours.clone()));
    let gradients = B::flash_attention_backward(q, k, v, ours, logsumexp, d_output, hidden(), dropout);
    assert_close(&what("q's gradient"), &d_q, &values::<B>(gradients.0));
    assert_close(&what("k's gradient"), &d_k, &values::<B>(gradients.1));
    assert_close(&what("v's gradient"), &d_v, &values::<B>(gradients.2));
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for p in [0.0, 0.3] {
        cases.push(Case { dims: [1, 1, 1, 4], starts: vec![vec![]], p });
        // Past one tile of 32, not a multiple of it; documents in the second row.
        cases.push(Case { dims: [2, 3, 37, 8], starts: vec![vec![], vec![5, 33]], p });
        // GPT-2's heads, 64 wide.
        cases.push(Case { dims: [1, 2, 70, 64], starts: vec![vec![40]], p });
        cases.push(Case { dims: [2, 2, 64, 16], starts: vec![vec![31, 32], vec![1]], p });
    }
    cases
}

#[test]
fn flash_attention_matches_burns_operations() {
    for case in cases() {
        check::<CubeBackend<WgpuRuntime, f32, i32, u32>>(&case);
        check::<Wgpu<f32, i32>>(&case);
    }
}
