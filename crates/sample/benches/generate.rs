//! Generation speed on the CPU at the gpt2 (124M) shapes with random weights: 256 new tokens,
//! batch 1 and 8, through the sample stage's generator (greedy, and top-k 40 sampling), and
//! without the KV cache. `make bench-generate` runs it next to `transformers`' generate
//! (scripts/bench/generate_baseline.py) on the same machine.
//!
//! cargo bench -p sample --bench generate [-- NEW_TOKENS] [--no-cache]
//!
//! `--no-cache` adds greedy runs that run the whole sequence again for every token (as the
//! baseline's flag does); at 256 new tokens they take minutes.

use burn::prelude::*;
use gpt2::{Cpu, Gpt2, Gpt2Config};
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
use sample::{
    decoding::Decoding,
    generate::{Generator, Limits},
    pace::Pace,
};
use std::time::Instant;

// The allocator of the `sample` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROMPT: [u32; 8] = [464; 8];

/// `batch` samples of `new_tokens` tokens each, as the sample stage makes them (the KV cache,
/// logits read back, the next token chosen on the host); tokens/s.
fn tokens_per_second(model: &Gpt2<Cpu>, batch: usize, new_tokens: usize, decoding: &Decoding) -> f64 {
    let generator = Generator {
        model,
        decoding,
        // No token is the end of text: every sample runs to `new_tokens`.
        limits: Limits { max_new_tokens: new_tokens, eos_id: u32::MAX, stop: &[] },
        decode: &|_| String::new(),
        device: &Default::default(),
    };
    let mut rngs: Vec<ChaCha8Rng> = (0..batch as u64).map(ChaCha8Rng::seed_from_u64).collect();
    let mut pace = Pace::default();
    let samples = generator.generate(&PROMPT, &mut rngs, &mut |_, _| {}, &mut pace);
    assert!(samples.iter().all(|sample| sample.tokens.len() == new_tokens));
    pace.tokens_per_second()
}

/// Greedy decoding that runs the whole sequence again for every token; tokens/s.
fn tokens_per_second_without_cache(model: &Gpt2<Cpu>, batch: usize, new_tokens: usize) -> f64 {
    let prompt: Vec<i64> = (0..batch).flat_map(|_| PROMPT.map(i64::from)).collect();
    let mut sequence =
        Tensor::<Cpu, 2, Int>::from_data(TensorData::new(prompt, [batch, PROMPT.len()]), &Default::default());
    let start = Instant::now();
    for _ in 0..new_tokens {
        let next = model.next_token_logits(sequence.clone(), &mut model.new_cache()).argmax(1);
        sequence = Tensor::cat(vec![sequence, next], 1);
    }
    let _ = sequence.into_data();
    (batch * new_tokens) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let new_tokens: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(256);
    let without_cache = std::env::args().any(|a| a == "--no-cache");
    let model = Gpt2Config::preset("gpt2").unwrap().init::<Cpu>(&Default::default());
    let greedy = Decoding { greedy: true, ..Default::default() };
    let top_k = Decoding { top_k: 40, ..Default::default() };
    tokens_per_second(&model, 1, 4, &greedy); // warm-up
    for batch in [1, 8] {
        for (name, decoding) in [("greedy", &greedy), ("top-k 40", &top_k)] {
            let rate = tokens_per_second(&model, batch, new_tokens, decoding);
            println!(
                "gpt2 crate gpt2 124M shapes, f32, KV cache, {name}, {new_tokens} new tokens, batch {batch}: {rate:.1} tokens/s"
            );
        }
        if without_cache {
            let rate = tokens_per_second_without_cache(&model, batch, new_tokens);
            println!(
                "gpt2 crate gpt2 124M shapes, f32, no cache, greedy, {new_tokens} new tokens, batch {batch}: {rate:.1} tokens/s"
            );
        }
    }
}
