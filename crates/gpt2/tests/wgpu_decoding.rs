//! Decoding with the KV cache on burn's CubeCL + fusion path (the path CUDA takes, here on
//! wgpu: Mesa's software Vulkan driver on a machine without a GPU) against the CPU: the prompt's
//! pass through the flash attention kernel, a few positions more together through burn's
//! operations over the cache, then each new position through the few-row kernel (every layer's
//! products and the LM head's) and the decoding attention kernel of `cube-kernels`, the cache
//! growing on the way.
//! `cargo test -p gpt2 --features wgpu --test wgpu_decoding`

use burn::prelude::*;
use gpt2::{hf, Cpu, Gpt2, Gpt2Backend, Wgpu};
use std::path::Path;

/// Three rows: a 24-token prompt (72 rows of the residual stream, more than the few-row kernels
/// take), 4 tokens a row together, then one token a row a step up to 40 (the cache grows past
/// 32); each step's next-token logits.
fn decoding_logits<B: Gpt2Backend>(ids: &[i64]) -> Vec<f32> {
    let device = Default::default();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let (_, model): (_, Gpt2<B>) = hf::load_dir(&fixture, &device).expect("the tiny fixture");
    let rows = |range: std::ops::Range<usize>| {
        let tokens: Vec<i64> =
            [0, 40, 80].iter().flat_map(|&row| ids[row + range.start..row + range.end].to_vec()).collect();
        Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [3, range.len()]), &device)
    };
    let mut cache = model.new_cache();
    let mut logits = model.next_token_logits(rows(0..24), &mut cache).into_data().to_vec::<f32>().unwrap();
    logits.extend(model.next_token_logits(rows(24..28), &mut cache).into_data().to_vec::<f32>().unwrap());
    for position in 28..40 {
        logits.extend(
            model.next_token_logits(rows(position..position + 1), &mut cache).into_data().to_vec::<f32>().unwrap(),
        );
    }
    assert_eq!(cache.len(), 40);
    logits
}

#[test]
fn decoding_on_wgpu_gives_the_cpus_logits() {
    let ids: Vec<i64> = (0..120).map(|i| (i * 37 % 511) as i64).collect();
    let (cpu, wgpu) = (decoding_logits::<Cpu>(&ids), decoding_logits::<Wgpu>(&ids));
    assert_eq!(cpu.len(), wgpu.len());
    let difference = cpu.iter().zip(&wgpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(difference <= 1e-4, "max |wgpu − CPU| logit difference {difference}");
}
