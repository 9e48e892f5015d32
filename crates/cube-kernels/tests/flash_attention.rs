//! The flash attention kernels against burn's operations differentiated one by one on the CPU,
//! on burn's wgpu backend (with and without fusion; Mesa's software Vulkan driver on a machine
//! without a GPU): causal, with documents packed in a row, with and without dropout; and the
//! output written in f16 (bf16's path; wgpu has no bf16) against the f32 one rounded.
//! `cargo test -p cube-kernels --features wgpu --test flash_attention`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{
    backend::{Autodiff, NdArray},
    prelude::*,
    tensor::{
        activation::softmax,
        ops::{BoolTensor, FloatTensor},
        BasicOps, DType, TensorData, TensorPrimitive,
    },
};
use cube_kernels::{
    flash_attention_tensor_cores, tensor_cores_required,
    AttentionProducts::{Fp32Units, TensorCores},
    DropoutDraw, FlashAttention, MAX_FLASH_HEAD_DIM,
};
mod support;

use kernels::MaskStream;
use support::{uniform, Eager, Fused, Runtime, HALF, HALF_FLOAT};

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

fn random(dims: [usize; 2], seed: u64) -> TensorData {
    TensorData::new(uniform(dims[0] * dims[1], -2.0, 2.0, seed), dims)
}

/// burn's operations on the CPU, differentiated by burn: the heads' outputs side by side and
/// the q/k/v rows' gradient for an upstream gradient `d_output`.
fn reference(case: &Case, qkv: TensorData, d_output: TensorData, dropout: Option<DropoutDraw>) -> [Vec<f32>; 2] {
    type Trained = Autodiff<Cpu>;
    let device = Default::default();
    let [batch, heads, time, head_dim] = case.dims;
    let width = heads * head_dim;
    let qkv = Tensor::<Trained, 2>::from_data(qkv, &device).require_grad();
    let by_heads =
        |i: usize| qkv.clone().narrow(1, i * width, width).reshape([batch, time, heads, head_dim]).swap_dims(1, 2);
    let (q, k, v) = (by_heads(0), by_heads(1), by_heads(2));
    let hidden = Tensor::<Trained, 3>::from_data(TensorData::new(hidden(case), [batch, time, time]), &device)
        .equal_elem(1.0)
        .unsqueeze_dim::<4>(1)
        .expand([batch, heads, time, time]);
    let scores = q.matmul(k.transpose()).mask_fill(hidden, f32::NEG_INFINITY) / (head_dim as f64).sqrt();
    let mut weights = softmax(scores, 3);
    if let Some(DropoutDraw { stream, p }) = dropout {
        let mut keeps = vec![0.0; batch * heads * time * time];
        kernels::dropout_keeps(stream, p, &mut keeps);
        let keeps = Tensor::<Trained, 4>::from_data(TensorData::new(keeps, [batch, heads, time, time]), &device);
        weights = weights * keeps / (1.0 - p);
    }
    let output = weights.matmul(v).swap_dims(1, 2).reshape([batch * time, width]);
    let gradients = (output.clone() * Tensor::from_data(d_output, &device)).sum().backward();
    let values = |t: Tensor<Cpu, 2>| t.into_data().to_vec::<f32>().unwrap();
    [values(output.inner()), values(qkv.grad(&gradients).unwrap())]
}

fn float_on<B: Backend, const D: usize>(data: TensorData) -> Tensor<B, D> {
    Tensor::from_data(data, &Default::default())
}

/// `data` on `B`, made there by `make`; `transposed`, as a view with its last two dimensions'
/// strides swapped (the last's elements not end to end), which the kernels read through.
fn laid_out<B: Backend, const D: usize, K: BasicOps<B>>(
    data: TensorData,
    transposed: bool,
    make: impl FnOnce(TensorData) -> Tensor<B, D, K>,
) -> Tensor<B, D, K> {
    if !transposed {
        return make(data);
    }
    let swapped = Tensor::<Cpu, D>::from_data(data, &Default::default()).swap_dims(D - 2, D - 1).into_data();
    make(swapped).swap_dims(D - 2, D - 1)
}

fn values<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Vec<f32> {
    Tensor::<B, D>::from_primitive(TensorPrimitive::Float(tensor)).into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn assert_close(what: &str, expected: &[f32], actual: &[f32]) {
    assert_within(what, expected, actual, 2e-5);
}

/// Within `tolerance` of `expected`, relative to its largest element (1 at least).
fn assert_within(what: &str, expected: &[f32], actual: &[f32], tolerance: f32) {
    assert_eq!(expected.len(), actual.len(), "{what}");
    let scale = expected.iter().fold(1.0f32, |m, e| m.max(e.abs()));
    let (at, difference) = expected
        .iter()
        .zip(actual)
        .map(|(e, a)| (e - a).abs())
        .enumerate()
        .fold((0, 0.0f32), |(i, m), (j, d)| if d > m || d.is_nan() { (j, d) } else { (i, m) });
    assert!(
        difference <= tolerance * scale,
        "{what}: max |difference| {difference} at element {at} ({} against {}), scale {scale}",
        actual[at],
        expected[at]
    );
}

/// A case's inputs on the backend `B`, and burn's output and q/k/v gradient for them on the CPU.
struct Inputs<B: Backend> {
    heads: usize,
    dropout: Option<DropoutDraw>,
    qkv: FloatTensor<B>,
    d_output: FloatTensor<B>,
    hidden: TensorData,
    transposed: bool,
    output: Vec<f32>,
    d_qkv: Vec<f32>,
}

impl<B: Backend> Inputs<B> {
    fn new(case: &Case) -> Self {
        let [batch, heads, time, head_dim] = case.dims;
        let dropout = (case.p > 0.0).then_some(DropoutDraw {
            stream: MaskStream { key: [0x1234_5678, 0x9abc_def0], stream: [3, 7, 11] },
            p: case.p,
        });
        let width = heads * head_dim;
        let qkv = random([batch * time, 3 * width], time as u64);
        let d_output = random([batch * time, width], time as u64 + 1);
        let [output, d_qkv] = reference(case, qkv.clone(), d_output.clone(), dropout);
        let hidden = TensorData::new(hidden(case), [batch, time, time]);
        // Cases of odd length take q/k/v and the mask as transposed views (the columns, the keys
        // not end to end), which the kernels read through their strides.
        let transposed = time % 2 == 1;
        let qkv = laid_out(qkv, transposed, float_on::<B, 2>).into_primitive().tensor();
        let d_output = float_on::<B, 2>(d_output).into_primitive().tensor();
        Inputs { heads, dropout, qkv, d_output, hidden, transposed, output, d_qkv }
    }

    /// The mask as the kernels take it.
    fn hidden(&self) -> BoolTensor<B> {
        laid_out(self.hidden.clone(), self.transposed, |data| float_on::<B, 3>(data).equal_elem(1.0)).into_primitive()
    }
}

fn check<B: FlashAttention>(case: &Case) {
    let inputs = Inputs::<B>::new(case);
    let Inputs { heads, dropout, ref qkv, ref d_output, ref output, ref d_qkv, .. } = inputs;
    let hidden = || inputs.hidden();
    let what = |part: &str| format!("{part}, {:?}, documents {:?}, dropout {}", case.dims, case.starts, case.p);

    let (ours, logsumexp) = B::flash_attention(qkv.clone(), heads, hidden(), dropout, DType::F32, Fp32Units);
    assert_close(&what("output"), output, &values::<B, 2>(ours.clone()));
    let backward = |output| {
        let (qkv, logsumexp, d_output) = (qkv.clone(), logsumexp.clone(), d_output.clone());
        values::<B, 2>(B::flash_attention_backward(
            qkv,
            output,
            logsumexp,
            d_output,
            heads,
            hidden(),
            dropout,
            Fp32Units,
        ))
    };
    assert_close(&what("q/k/v gradient"), d_qkv, &backward(ours.clone()));

    // Written in f16, as a product of 16-bit operands reads it: the f32 output rounded, element
    // for element, and the same log-sum-exps. The backward pass reads it so: its `Σ d_output ·
    // output` carries the rounding (2⁻¹¹ of each element), up to 4 parts in 10⁴ of the
    // gradient's scale in these cases (bf16's 2⁻⁸ makes that ~3 in 10³, the order of the
    // rounding the gradient then takes for the projection's bf16 backward products).
    let (rounded, rounded_logsumexp) = B::flash_attention(qkv.clone(), heads, hidden(), dropout, HALF, Fp32Units);
    let full = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(ours));
    let full_rounded = full.cast(HALF_FLOAT).into_primitive().tensor();
    assert_eq!(values::<B, 2>(rounded.clone()), values::<B, 2>(full_rounded), "{}", what("output in f16"));
    assert_eq!(values::<B, 3>(rounded_logsumexp), values::<B, 3>(logsumexp.clone()), "{}", what("log-sum-exps"));
    assert_within(&what("q/k/v gradient from the f16 output"), d_qkv, &backward(rounded), 1e-3);
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
        // Heads not a multiple of 8 wide: the backward kernels' half rows end in padding.
        cases.push(Case { dims: [1, 2, 50, 12], starts: vec![vec![17]], p });
        // Heads that 4 does not divide: the kernels read two elements a load (6 wide), or one
        // (5 wide; and every case of odd length, whose views' columns are not end to end).
        cases.push(Case { dims: [1, 2, 40, 6], starts: vec![vec![9]], p });
        cases.push(Case { dims: [2, 1, 33, 5], starts: vec![vec![], vec![20]], p });
        // Past two blocks of 64 queries or keys, which the tensor-core kernels take where the
        // heads are narrow enough (Mesa's driver: 16 wide).
        cases.push(Case { dims: [1, 2, 150, 16], starts: vec![vec![70]], p });
    }
    cases
}

#[test]
fn flash_attention_matches_burns_operations() {
    for case in cases() {
        check::<Eager>(&case);
        check::<Fused>(&case);
    }
}

/// Both passes on tensor cores against burn's operations on the CPU, and the log-sum-exps
/// against the FP32 kernel's, with the f32 output (TF32 operands on CUDA, f16 on wgpu) and the
/// 16-bit one (bf16 on CUDA, f16 on wgpu). Their operands' rounding (2⁻¹¹ of each of q, k, v,
/// the weights and the gradients in f16 and TF32, 2⁻⁸ in bf16) bounds the tolerances: four
/// roundings, as the keys' gradient takes q rounded times the scores' gradients, themselves from
/// `d_output · vᵀ` of two rounded operands, rounded again (a row's sums, where their terms
/// cancel, may lose more of the largest gradient than one or two roundings: 1.2e-3 in f16). On a
/// device without tensor cores for these types (Mesa's software Vulkan driver before 26, wgpu
/// through WGSL) the kernels are not there to test: the test says so and passes, unless
/// `CUBE_KERNELS_TENSOR_CORES=required` (`scripts/checks/tensor_cores.sh` sets it).
#[test]
fn flash_attention_on_tensor_cores_matches_burns_operations() {
    let device = Default::default();
    let required = tensor_cores_required();
    let half_rounding = if cfg!(feature = "cuda") { 2f32.powi(-8) } else { 2f32.powi(-11) };
    for (output, tolerance) in [(DType::F32, 4.0 * 2f32.powi(-11)), (HALF, 4.0 * half_rounding)] {
        let Some(fragment) = flash_attention_tensor_cores::<Runtime>(&device, output, MAX_FLASH_HEAD_DIM) else {
            assert!(!required, "no tensor cores for a {output:?} output on this device");
            eprintln!("no tensor cores for a {output:?} output on this device: not tested");
            continue;
        };
        eprintln!("{output:?} output, heads {MAX_FLASH_HEAD_DIM} wide: {fragment}");
        for head_dim in [16, 32] {
            let narrower = flash_attention_tensor_cores::<Runtime>(&device, output, head_dim);
            eprintln!("{output:?} output, heads {head_dim} wide: {}", narrower.unwrap_or_default());
        }
        for case in cases() {
            check_tensor_cores::<Eager>(&case, output, tolerance);
            check_tensor_cores::<Fused>(&case, output, tolerance);
        }
    }
}

fn check_tensor_cores<B: FlashAttention>(case: &Case, output_type: DType, tolerance: f32) {
    let inputs = Inputs::<B>::new(case);
    let Inputs { heads, dropout, ref qkv, ref d_output, ref output, ref d_qkv, .. } = inputs;
    let hidden = || inputs.hidden();
    let what = |part: &str| {
        format!(
            "{part} on tensor cores, {output_type:?}, {:?}, documents {:?}, dropout {}",
            case.dims, case.starts, case.p
        )
    };
    let (ours, logsumexp) = B::flash_attention(qkv.clone(), heads, hidden(), dropout, output_type, TensorCores);
    let (_, fp32_logsumexp) = B::flash_attention(qkv.clone(), heads, hidden(), dropout, DType::F32, Fp32Units);
    assert_within(&what("output"), output, &values::<B, 2>(ours.clone()), tolerance);
    assert_within(
        &what("log-sum-exps"),
        &values::<B, 3>(fp32_logsumexp),
        &values::<B, 3>(logsumexp.clone()),
        tolerance,
    );
    let d_ours = B::flash_attention_backward(
        qkv.clone(),
        ours,
        logsumexp,
        d_output.clone(),
        heads,
        hidden(),
        dropout,
        TensorCores,
    );
    assert_within(&what("q/k/v gradient"), d_qkv, &values::<B, 2>(d_ours), tolerance);
}
