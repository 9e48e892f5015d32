//! Generation speed on the CPU at the gpt2 (124M) shapes with random weights: 256 new tokens,
//! batch 1 and 8, with and without the KV cache. `make bench-generate` runs it next to
//! `transformers`' generate (scripts/bench/generate_baseline.py) on the same machine.
//!
//! cargo bench -p sample --bench generate [-- NEW_TOKENS] [--no-cache]
//!
//! `--no-cache` adds the runs without the KV cache (as the baseline's flag does); at 256 new
//! tokens they take minutes.

use burn::prelude::*;
use gpt2::{Cpu, Gpt2, Gpt2Config};
use std::time::Instant;

// The allocator of the `sample` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Greedy decoding; without the cache every step runs the whole sequence again.
fn tokens_per_second(model: &Gpt2<Cpu>, batch: usize, new_tokens: usize, cached: bool) -> f64 {
    let device = Default::default();
    let prompt = vec![464i64; batch * 8];
    let mut sequence = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(prompt, [batch, 8]), &device);
    let mut cache = model.new_cache();
    let mut input = sequence.clone();
    let start = Instant::now();
    for _ in 0..new_tokens {
        let logits = if cached { model.forward_cached(input, &mut cache) } else { model.forward(sequence.clone()) };
        let [_, time, vocab] = logits.dims();
        let next: Tensor<Cpu, 2, Int> =
            logits.slice([0..batch, time - 1..time, 0..vocab]).argmax(2).reshape([batch, 1]);
        sequence = Tensor::cat(vec![sequence, next.clone()], 1);
        input = next;
    }
    let _ = sequence.into_data();
    (batch * new_tokens) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let new_tokens: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(256);
    let caching: &[bool] = if std::env::args().any(|a| a == "--no-cache") { &[true, false] } else { &[true] };
    let model = Gpt2Config::preset("gpt2").unwrap().init::<Cpu>(&Default::default());
    tokens_per_second(&model, 1, 4, true); // warm-up
    for batch in [1, 8] {
        for &cached in caching {
            let rate = tokens_per_second(&model, batch, new_tokens, cached);
            let cache = if cached { "KV cache" } else { "no cache" };
            println!(
                "gpt2 crate gpt2 124M shapes, f32, {cache}, {new_tokens} new tokens, batch {batch}: {rate:.1} tokens/s"
            );
        }
    }
}
