//! Device memory a training forward pass keeps for its backward pass, per layer and token, as
//! CubeCL's allocator counts it on burn's CubeCL + fusion path (wgpu; on a machine without a
//! GPU, Mesa's software Vulkan driver): the activations' share of training's peak memory,
//! to set beside what PyTorch keeps (`scripts/bench/activation_memory.py`).
//! `cargo run --release -p gpt2 --features wgpu --example activation_memory`
//!
//! gpt2's width and heads over rows of 256 tokens. Models of 1 and 3 layers differ only in
//! their layers, so half their difference is a layer's share, without the embeddings, the LM
//! head and the loss; one row and two differ only in their tokens, so a layer's share splits
//! into bytes a token (activations) and bytes that do not grow with the rows (e.g. a copy of a
//! weight).

use burn::{backend::wgpu::WgpuDevice, backend::Autodiff, prelude::*};
use gpt2::{DropoutMasks, Gpt2Backend, Gpt2Config, NextTokens, RoundedWeights, Wgpu};

type B = Autodiff<Wgpu>;

const TIME: usize = 256;
const VOCAB: usize = 512;

fn main() {
    let device = WgpuDevice::default();
    let gpt2 = Gpt2Config::preset("gpt2").expect("a preset");
    let width = gpt2.n_embd;
    println!(
        "bytes kept for the backward pass, burn wgpu + fusion: gpt2's width {width} and {} heads, rows of {TIME}",
        gpt2.n_head
    );
    for dropout in [0.0, 0.1] {
        let layer = |rows| {
            let kept = |layers| {
                let config = Gpt2Config { vocab_size: VOCAB, n_positions: TIME, n_layer: layers, ..gpt2.clone() };
                kept_bytes(config.init::<B>(&device).with_dropout(dropout), rows, &device) as f64
            };
            (kept(3) - kept(1)) / 2.0
        };
        let (one_row, two_rows) = (layer(1), layer(2));
        let per_token = (two_rows - one_row) / TIME as f64;
        println!(
            "  dropout {dropout}: a layer keeps {per_token:.0} bytes a token ({:.1} f32 rows of the width) \
             and {:.2} MiB besides",
            per_token / (4 * width) as f64,
            (one_row - per_token * TIME as f64) / f64::from(1 << 20)
        );
    }
}

/// Bytes the allocator holds after a forward pass and the loss of `model` on `rows` rows,
/// beyond what it held before: what the backward pass will read, and the loss.
fn kept_bytes(model: gpt2::Gpt2<B>, rows: usize, device: &WgpuDevice) -> u64 {
    let in_use = || B::allocator_memory(device).expect("the device counts its memory").in_use;
    let tokens: Vec<i64> = (0..rows * TIME).map(|i| (i * 7_919 % VOCAB) as i64).collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens.clone(), [rows, TIME]), device);
    let next = NextTokens::new(&tokens, &vec![1.0; rows * TIME], TIME, device);
    // burn initialises a parameter when it is first read: a first pass puts the weights in place.
    let loss =
        |input, next| model.training_loss(input, None, DropoutMasks::new(0, 0, 0), &RoundedWeights::default(), next);
    drop(loss(input.clone(), next.clone()));
    let before = in_use();
    let loss = loss(input, next);
    let kept = in_use() - before;
    // The backward pass runs, so that the forward pass is the one training takes.
    drop(loss.backward());
    kept
}
