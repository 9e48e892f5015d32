//! CUDA against the CPU path on the committed tiny fixture, then generation speed at the
//! gpt2 (124M) shapes. Run by scripts/gpu-check.sh on a machine with a GPU:
//! `cargo build --release -p gpt2 --features cuda --example cuda_check`.

use burn::{
    backend::{Cuda, NdArray},
    prelude::*,
};
use gpt2::{hf, Gpt2, Gpt2Config};
use std::{path::Path, time::Instant};

fn logits<B: Backend>(model: &Gpt2<B>, ids: &[i64], device: &B::Device) -> Vec<f32> {
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.to_vec(), [2, ids.len() / 2]), device);
    model.forward(tokens).into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Greedy decoding of `new_tokens` tokens for `batch` rows with the KV cache; tokens/s.
fn generation_speed<B: Backend>(model: &Gpt2<B>, batch: usize, new_tokens: usize, device: &B::Device) -> f64 {
    let mut cache = model.new_cache();
    let mut next = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![464i64; batch * 8], [batch, 8]), device);
    let start = Instant::now();
    for _ in 0..new_tokens {
        let logits = model.forward_cached(next, &mut cache);
        let [_, time, vocab] = logits.dims();
        next = logits.slice([0..batch, time - 1..time, 0..vocab]).argmax(2).reshape([batch, 1]);
    }
    let _ = next.into_data();
    (batch * new_tokens) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let ids: Vec<i64> = (0..32).map(|i| (i * 37 % 511) as i64).collect();
    let cpu = Default::default();
    let (_, cpu_model) = hf::load_dir::<NdArray<f32>>(&fixture, &cpu).unwrap();
    let gpu = Default::default();
    let (_, gpu_model) = hf::load_dir::<Cuda<f32, i32>>(&fixture, &gpu).unwrap();
    let (a, b) = (logits(&cpu_model, &ids, &cpu), logits(&gpu_model, &ids, &gpu));
    let difference = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    println!("tiny fixture: max |logit difference| CUDA vs CPU = {difference:.3e}");

    let config = Gpt2Config::preset("gpt2").unwrap();
    let model = config.init::<Cuda<f32, i32>>(&gpu);
    generation_speed(&model, 1, 16, &gpu); // warm-up: kernel compilation and autotune
    for batch in [1, 8] {
        println!("gpt2 124M shapes, f32, KV cache, 256 new tokens, batch {batch}: {:.1} tokens/s", generation_speed(&model, batch, 256, &gpu));
    }
    assert!(difference <= 1e-3, "CUDA logits differ from CPU by {difference}");
}
