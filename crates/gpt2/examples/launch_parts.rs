//! Kernel launches of each part of a training step's forward and backward pass, on burn's
//! CubeCL + fusion path (wgpu; on a machine without a GPU, Mesa's software Vulkan driver):
//! which part of a block the launches of `scripts/bench/launches.sh` come from.
//! `cargo run --release -p gpt2 --features wgpu --example launch_parts`
//!
//! Each part runs forward and backward from parameters (so every input gets its gradient) on
//! gpt2-medium's heads over rows of 2 × 128; the launches of making the inputs and of the
//! backward pass's start are measured alone and taken off.

use burn::{
    backend::{wgpu::WgpuDevice, Autodiff},
    module::Param,
    prelude::*,
    tensor::Distribution,
};
use gpt2::{
    causal_mask, next_token_loss, Dropout, DropoutMasks, Gpt2Backend, Gpt2Config, NextTokens, Precision,
    RoundedWeights, Wgpu,
};
use std::path::Path;

type B = Autodiff<Wgpu>;
/// A part's name, and a run of it forward from fresh inputs.
type Part<'a> = (&'a str, Box<dyn Fn() -> Tensor<B, 2> + 'a>);

const BATCH: usize = 2;
const TIME: usize = 128;
const HEADS: usize = 16;
const WIDTH: usize = 64;
const VOCAB: usize = 512;

fn main() -> std::io::Result<()> {
    // CubeCL reads cubecl.toml from the working directory, when the device is first used.
    let work = std::env::temp_dir().join(format!("launch-parts-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    std::fs::write(work.join("cubecl.toml"), "[profiling.logger]\nlevel = \"minimal\"\nfile = \"kernels.log\"\n")?;
    std::env::set_current_dir(&work)?;
    let device = WgpuDevice::default();
    let log = work.join("kernels.log");

    let config =
        Gpt2Config { vocab_size: VOCAB, n_positions: TIME, n_embd: WIDTH, n_layer: 1, n_head: HEADS, ..gpt2_medium() };
    let model = config.init::<B>(&device).with_dropout(0.1);
    let block = &model.h[0];
    // A training pass's masks: with them each place drops at 0.1.
    let masks = DropoutMasks::new(1, 0, 0).layer(0);
    let dropout = Dropout { p: 0.1, stream: masks.attention_weights() };
    let mask = causal_mask::<B>(TIME, TIME, &device).unsqueeze::<3>().expand([BATCH, TIME, TIME]);
    let rows = BATCH * TIME;
    // Each product rounds its own weight (the parts run in f32 anyway).
    let none = RoundedWeights::default();

    let parts: Vec<Part> = vec![
        ("inputs alone (taken off the others)", Box::new(|| input([rows, WIDTH], &device))),
        ("layer norm", Box::new(|| B::layer_norm_rows(block.pre_norms().0, input([rows, WIDTH], &device)))),
        ("linear d -> 3d", Box::new(|| Precision::F32.linear(&block.attn.c_attn, input([rows, WIDTH], &device), None))),
        (
            "attention core (from q/k/v rows)",
            Box::new(|| {
                B::self_attention(input([rows, 3 * WIDTH], &device), HEADS, mask.clone(), Some(dropout), Precision::F32)
            }),
        ),
        ("gelu", Box::new(|| <B as Gpt2Backend>::gelu_tanh(input([rows, 4 * WIDTH], &device)))),
        ("dropout", Box::new(|| dropout.apply(input([rows, WIDTH], &device)))),
        ("residual add", Box::new(|| input([rows, WIDTH], &device) + input([rows, WIDTH], &device))),
        (
            "attention branch, its add and ln_2",
            Box::new(|| {
                let branch = block.attn.training_branch(input([rows, WIDTH], &device), mask.clone(), masks, &none);
                B::residual_layer_norm(input([rows, WIDTH], &device), branch, block.pre_norms().1, false).1
            }),
        ),
        (
            "mlp branch, its add and the next ln",
            Box::new(|| {
                let branch = block.mlp.training_branch(input([rows, WIDTH], &device), masks, &none);
                B::residual_layer_norm(input([rows, WIDTH], &device), branch, block.pre_norms().0, false).1
            }),
        ),
        (
            "block",
            Box::new(|| {
                let (x, normed) = (input([rows, WIDTH], &device), input([rows, WIDTH], &device));
                block.forward_training(x, normed, block.pre_norms().0, mask.clone(), masks, &none, false).1
            }),
        ),
        ("lm head + loss", Box::new(|| lm_head_loss(&model, input([rows, WIDTH], &device), &device))),
    ];

    // The first runs compile kernels; the second round is the one measured.
    for (_, part) in &parts {
        launches(&log, part, &device);
    }
    let alone = launches(&log, &parts[0].1, &device);
    println!(
        "kernel launches, forward + backward, burn wgpu + fusion (autotune off), rows {BATCH} x {TIME}, {HEADS} heads"
    );
    for (name, part) in &parts[1..] {
        println!("  {name:<36}{:>6}", launches(&log, part, &device) - alone);
    }
    std::fs::remove_dir_all(&work)
}

fn gpt2_medium() -> Gpt2Config {
    Gpt2Config::preset("gpt2-medium").expect("a preset")
}

/// A parameter: a leaf that gets a gradient.
fn input<const D: usize>(shape: [usize; D], device: &WgpuDevice) -> Tensor<B, D> {
    Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)).val()
}

fn lm_head_loss(model: &gpt2::Gpt2<B>, x: Tensor<B, 2>, device: &WgpuDevice) -> Tensor<B, 2> {
    let x = B::layer_norm_rows(model.final_norm(), x);
    let logits = Precision::F32.matmul_transposed(x, model.wte.weight.val(), None).reshape([BATCH, TIME, VOCAB]);
    let tokens: Vec<i64> = (0..BATCH * TIME).map(|i| (i * 7_919 % VOCAB) as i64).collect();
    let next = NextTokens::new(&tokens, &[1.0; BATCH * TIME], TIME, device);
    next_token_loss(logits, next, Precision::F32).unsqueeze()
}

/// Launches of one forward and backward pass of `part`, the inputs' making included.
fn launches(log: &Path, part: &dyn Fn() -> Tensor<B, 2>, device: &WgpuDevice) -> usize {
    B::sync(device).expect("the device");
    let before = lines(log);
    let gradients = (part)().sum().backward();
    B::sync(device).expect("the device");
    drop(gradients);
    lines(log) - before
}

fn lines(log: &Path) -> usize {
    std::fs::read_to_string(log).map(|text| text.lines().count()).unwrap_or(0)
}
