//! CUDA against the CPU path: single operations, every stage of the forward pass and the logits
//! of each decoding step on the committed tiny fixture, the same decoding with bf16 weights
//! (`sample --precision bf16`) against f32, then generation speed and time to first token at
//! the gpt2 (124M) and gpt2-medium (355M) shapes in f32 and bf16. Decoding runs as the sample
//! stage runs it, on CUDA without burn's fusion (`GpuEager`); gpt2's speed is also taken with
//! fusion, to compare. Run by
//! scripts/gpu/check.sh on a machine with a GPU:
//! `cargo build --release -p gpt2 --features cuda --example cuda_check`.

use burn::{
    backend::{Cuda, NdArray},
    prelude::*,
    tensor::activation::{gelu_approximate, softmax},
};
use gpt2::{causal_mask, hf, Gpt2, Gpt2Backend, Gpt2Config, GpuEager, Precision};
use std::{path::Path, time::Instant};

type Stages = Vec<(String, Vec<f32>)>;

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn floats<B: Backend, const D: usize>(shape: [usize; D], seed: usize, device: &B::Device) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5) - 1.0).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Single operations the model relies on, each as the model uses it.
fn operations<B: Backend>(device: &B::Device) -> Stages {
    let a = floats::<B, 3>([2, 16, 32], 1, device);
    let w = floats::<B, 2>([32, 64], 2, device);
    let mut out = vec![
        ("matmul [2,16,32]x[1,32,64] broadcast".into(), values(a.clone().matmul(w.clone().unsqueeze::<3>()))),
        ("matmul as 2-D [32,32]x[32,64]".into(), values(a.clone().reshape([32, 32]).matmul(w.clone()))),
        ("matmul broadcast, transposed rhs".into(), {
            let wt = floats::<B, 2>([64, 32], 2, device);
            values(a.clone().matmul(wt.transpose().unsqueeze::<3>()))
        }),
        ("matmul 4-D q·kᵀ".into(), {
            let q = floats::<B, 4>([2, 4, 16, 8], 3, device);
            let k = floats::<B, 4>([2, 4, 16, 8], 4, device);
            values(q.matmul(k.transpose()))
        }),
    ];
    let qkv = floats::<B, 3>([2, 16, 96], 5, device);
    let parts = qkv.clone().chunk(3, 2);
    out.push(("chunk(3, 2)[1]".into(), values(parts[1].clone())));
    out.push(("chunk → reshape → swap_dims".into(), values(parts[1].clone().reshape([2, 16, 4, 8]).swap_dims(1, 2))));
    out.push((
        "narrow → reshape → swap_dims".into(),
        values(qkv.narrow(2, 32, 32).reshape([2, 16, 4, 8]).swap_dims(1, 2)),
    ));
    let heads = floats::<B, 4>([2, 4, 16, 8], 6, device);
    out.push(("swap_dims → reshape back".into(), values(heads.swap_dims(1, 2).reshape([2, 16, 32]))));
    let positions = Tensor::<B, 1, Int>::arange(0..16, device).reshape([1, 16]).expand([2, 16]);
    out.push(("arange → expand (int)".into(), values(positions.clone().float())));
    let table = floats::<B, 2>([64, 32], 7, device);
    let embedding = burn::nn::Embedding { weight: burn::module::Param::from_tensor(table) };
    out.push(("embedding of expanded positions".into(), values(embedding.forward(positions))));
    let scores = floats::<B, 4>([2, 4, 16, 16], 8, device);
    let mask = causal_mask::<B>(16, 16, device);
    out.push(("causal mask (bool → float)".into(), values(mask.clone().float())));
    let expanded = mask.unsqueeze::<4>().expand([2, 4, 16, 16]);
    out.push(("mask_fill(-inf) → softmax".into(), values(softmax(scores.mask_fill(expanded, f32::NEG_INFINITY), 3))));
    let x = floats::<B, 3>([2, 16, 32], 9, device);
    let norm = burn::nn::LayerNormConfig::new(32).init::<B>(device);
    out.push(("layer_norm".into(), values(norm.forward(x.clone()))));
    out.push(("gelu_approximate".into(), values(gelu_approximate(x))));
    out
}

/// Every stage of the forward pass, as `Gpt2::forward` computes it.
fn stages<B: Gpt2Backend>(model: &Gpt2<B>, ids: &[i64], device: &B::Device) -> Stages {
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.to_vec(), [2, ids.len() / 2]), device);
    let mut out = Stages::new();
    let positions = Tensor::<B, 1, Int>::arange(0..(ids.len() / 2) as i64, device)
        .reshape([1, ids.len() / 2])
        .expand([2, ids.len() / 2]);
    let embedded = model.wte.forward(tokens.clone()) + model.wpe.forward(positions);
    out.push(("wte + wpe".into(), values(embedded.clone())));
    let time = ids.len() / 2;
    // The blocks take the residual stream as rows.
    let mut x = embedded.reshape([2 * time, model.wte.weight.dims()[1]]);
    let causal = causal_mask::<B>(time, time, device).unsqueeze::<3>().expand([2, time, time]);
    for (i, block) in model.h.iter().enumerate() {
        let (ln_1, ln_2) = block.pre_norms();
        x = block.attn.forward(x, ln_1, causal.clone(), None);
        out.push((format!("h.{i} x + attention"), values(x.clone())));
        x = block.mlp.forward(x, ln_2);
        out.push((format!("h.{i} x + mlp"), values(x.clone())));
    }
    out.push(("ln_f".into(), values(model.ln_f.forward(x))));
    out.push(("logits (forward)".into(), values(model.forward(tokens))));
    out
}

/// The logits of each decoding step with the KV cache, two rows at a time (CUDA's few-row
/// kernels): an 8-token prompt, then one token a step, each row's next token from `ids` (the
/// same on both backends, whatever their argmax).
fn decoding<B: Gpt2Backend>(model: &Gpt2<B>, ids: &[i64], device: &B::Device) -> Stages {
    let time = ids.len() / 2;
    let tokens = |range: std::ops::Range<usize>| {
        let rows: Vec<i64> =
            [0, time].iter().flat_map(|&row| ids[row + range.start..row + range.end].to_vec()).collect();
        Tensor::<B, 2, Int>::from_data(TensorData::new(rows, [2, range.len()]), device)
    };
    let mut cache = model.new_cache();
    let mut out =
        vec![("prompt's next-token logits".into(), values(model.next_token_logits(tokens(0..8), &mut cache)))];
    for position in 8..time {
        let logits = model.next_token_logits(tokens(position..position + 1), &mut cache);
        out.push((format!("decoding step at position {position}"), values(logits)));
    }
    out
}

/// The largest `|a − b|` over the elements.
fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}

fn compare(cpu: Stages, gpu: Stages) -> f32 {
    let mut worst = 0.0f32;
    for ((name, a), (_, b)) in cpu.into_iter().zip(gpu) {
        let difference = max_difference(&a, &b);
        println!("  {name:<40} max |CUDA - CPU| = {difference:.3e}");
        worst = worst.max(difference);
    }
    worst
}

/// bf16 sampling's logits against f32's, step by step: the largest difference relative to the
/// step's largest logit, and where their greedy choices part. A choice may part only where
/// f32's two best logits are closer than the difference (then either is a fair greedy pick).
/// Returns the worst relative difference and the choices that part where the margin was not
/// that close.
fn compare_bf16(f32_steps: Stages, bf16_steps: Stages, vocab: usize) -> (f32, usize) {
    let (mut worst, mut unexplained) = (0.0f32, 0);
    for ((name, exact), (_, narrow)) in f32_steps.into_iter().zip(bf16_steps) {
        let largest = exact.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let difference = max_difference(&exact, &narrow);
        let mut parted = Vec::new();
        for (row, (exact, narrow)) in exact.chunks(vocab).zip(narrow.chunks(vocab)).enumerate() {
            let (best, runner_up) = best_two(exact);
            let narrow_best = best_two(narrow).0;
            if narrow_best != best {
                let margin = exact[best] - exact[runner_up];
                unexplained += usize::from(margin > 2.0 * difference);
                parted.push(format!("row {row}: {best} vs {narrow_best}, f32 margin {margin:.2e}"));
            }
        }
        println!(
            "  {name:<40} max |bf16 - f32| = {difference:.3e} ({:.2}% of the largest) {}",
            100.0 * difference / largest,
            parted.join("; ")
        );
        worst = worst.max(difference / largest);
    }
    (worst, unexplained)
}

/// The indices of the largest and second-largest values.
fn best_two(values: &[f32]) -> (usize, usize) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    (order[0], order[1])
}

/// Greedy decoding of `new_tokens` tokens for `batch` rows with the KV cache, from an 8-token
/// prompt (as scripts/bench/generate_baseline.py); tokens/s.
fn generation_speed<B: Gpt2Backend>(model: &Gpt2<B>, batch: usize, new_tokens: usize, device: &B::Device) -> f64 {
    let mut cache = model.new_cache();
    let mut next = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![464i64; batch * 8], [batch, 8]), device);
    let start = Instant::now();
    for _ in 0..new_tokens {
        next = model.next_token_logits(next, &mut cache).argmax(1);
    }
    let _ = next.into_data();
    (batch * new_tokens) as f64 / start.elapsed().as_secs_f64()
}

/// Seconds from a `prompt`-token prompt to its first new token, read back on the host, for
/// `batch` rows.
fn time_to_first_token<B: Gpt2Backend>(model: &Gpt2<B>, batch: usize, prompt: usize, device: &B::Device) -> f64 {
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![464i64; batch * prompt], [batch, prompt]), device);
    let start = Instant::now();
    let _ = model.next_token_logits(ids, &mut model.new_cache()).argmax(1).into_data();
    start.elapsed().as_secs_f64()
}

/// Tokens/s and time to first token at batch 1 and 8, after a warm-up (kernel compilation, for
/// every batch size and cache length measured). At batch 1 the first token also after a
/// prompt one token longer than the few-row kernels take: where they stop paying, against
/// burn's tiled products.
fn print_speeds<B: Gpt2Backend>(model: &Gpt2<B>, label: &str, device: &B::Device) {
    // As scripts/bench/generate_baseline.py's first-token prompt.
    let prompt = 64;
    let past_few_rows = cube_kernels::MAX_FEW_ROWS + 1;
    for batch in [1, 8] {
        generation_speed(model, batch, 256, device);
        time_to_first_token(model, batch, prompt, device);
    }
    time_to_first_token(model, 1, past_few_rows, device);
    for batch in [1, 8] {
        println!(
            "{label}, KV cache, 256 new tokens, batch {batch}: {:.1} tokens/s, first token after a {prompt}-token \
             prompt {:.1} ms",
            generation_speed(model, batch, 256, device),
            1e3 * time_to_first_token(model, batch, prompt, device)
        );
    }
    println!(
        "{label}, batch 1: first token after a {past_few_rows}-token prompt (burn's products, not the few-row \
         kernels) {:.1} ms",
        1e3 * time_to_first_token(model, 1, past_few_rows, device)
    );
}

fn main() {
    let cpu = Default::default();
    let gpu = Default::default();
    println!("operations:");
    compare(operations::<NdArray<f32>>(&cpu), operations::<Cuda<f32, i32>>(&gpu));

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let ids: Vec<i64> = (0..32).map(|i| (i * 37 % 511) as i64).collect();
    let (_, cpu_model) = hf::load_dir::<NdArray<f32>>(&fixture, &cpu).unwrap();
    let (_, gpu_model) = hf::load_dir::<Cuda<f32, i32>>(&fixture, &gpu).unwrap();
    println!("tiny fixture forward pass:");
    let forward = compare(stages(&cpu_model, &ids, &cpu), stages(&gpu_model, &ids, &gpu));
    // Decoding as the sample stage runs it: without burn's fusion.
    let (_, gpu_model) = hf::load_dir::<GpuEager>(&fixture, &gpu).unwrap();
    println!("tiny fixture, decoding with the KV cache (2 rows):");
    let difference = forward.max(compare(decoding(&cpu_model, &ids, &cpu), decoding(&gpu_model, &ids, &gpu)));

    println!("tiny fixture, decoding with bf16 weights (sample --precision bf16) against f32 on the CPU:");
    let vocab = cpu_model.wte.weight.dims()[0];
    let bf16_model = gpu_model.clone().for_sampling(Precision::Bf16);
    let (bf16_difference, unexplained) =
        compare_bf16(decoding(&cpu_model, &ids, &cpu), decoding(&bf16_model, &ids, &gpu), vocab);

    // The fused backend once, beside the eager one the sample stage takes.
    let fused = Gpt2Config::preset("gpt2").unwrap().init::<Cuda<f32, i32>>(&gpu);
    print_speeds(&fused, "gpt2 124M shapes, f32 with burn's fusion", &gpu);
    for (preset, size) in [("gpt2", "124M"), ("gpt2-medium", "355M")] {
        let f32_model = Gpt2Config::preset(preset).unwrap().init::<GpuEager>(&gpu);
        print_speeds(&f32_model, &format!("{preset} {size} shapes, f32"), &gpu);
        print_speeds(&f32_model.for_sampling(Precision::Bf16), &format!("{preset} {size} shapes, bf16"), &gpu);
    }
    // CUDA runs f32 matmuls on TF32 tensor cores (10-bit mantissa): about 1e-3 per product.
    assert!(difference <= 5e-2, "CUDA differs from CPU by {difference}");
    // bf16 keeps 8 bits of mantissa: products' operands rounded by up to 2⁻⁹, through 2 layers.
    assert!(bf16_difference <= 2e-2, "bf16 logits differ from f32's by {:.2}% of the largest", 100.0 * bf16_difference);
    assert_eq!(unexplained, 0, "bf16's greedy choices part from f32's where f32's margin is wide");
}
