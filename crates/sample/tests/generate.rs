//! Generation through the sample stage's own loop, on the gpt2 crate's transformers fixture;
//! with the `wgpu` feature, also on the CubeCL path CUDA takes (Mesa's software Vulkan driver
//! on a machine without a GPU), where top-k sampling draws among the tokens the device found.
//! `cargo test -p sample --features wgpu --test generate`

use gpt2::{hf, Cpu, Gpt2Backend};
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
use sample::{
    decoding::Decoding,
    generate::{Finish, Generated, Generator, Limits},
    pace::Pace,
};
use std::path::Path;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gpt2/tests/fixtures")
}

fn run<B: Gpt2Backend>(
    prompt: &[u32],
    samples: usize,
    decoding: &Decoding,
    seed: u64,
    max_new_tokens: usize,
) -> Vec<Generated> {
    let (config, model) = hf::load_dir::<B>(&fixtures().join("tiny"), &Default::default()).unwrap();
    let limits = Limits { max_new_tokens, eos_id: config.eos_token_id as u32, stop: &[] };
    let decode = |ids: &[u32]| ids.iter().map(|i| format!("<{i}>")).collect::<String>();
    let mut rngs: Vec<ChaCha8Rng> = (0..samples as u64)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i);
            rng
        })
        .collect();
    let generator = Generator { model: &model, decoding, limits, decode: &decode, device: &Default::default() };
    let mut pace = Pace::default();
    let generated = generator.generate(prompt, &mut rngs, &mut |_, _| {}, &mut pace);
    // Every sample's tokens, and each one's end-of-text token where it chose one.
    let chosen: usize = generated.iter().map(|g| g.tokens.len() + usize::from(g.finish == Finish::Eos)).sum();
    assert_eq!((pace.batches, pace.tokens), (1, chosen));
    generated
}

#[test]
fn greedy_batches_match_transformers_generate() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    let greedy = Decoding { greedy: true, ..Default::default() };
    for (prompt, want) in expected["prompts"].as_array().unwrap().iter().zip(expected["greedy"].as_array().unwrap()) {
        let prompt: Vec<u32> = prompt.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let want: Vec<u32> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        // Three rows decoded together must each equal transformers' single greedy sequence.
        for sample in run::<Cpu>(&prompt, 3, &greedy, 0, want.len()) {
            assert_eq!(sample.tokens, want, "prompt {prompt:?}");
            assert_eq!(sample.finish, Finish::Length);
        }
    }
}

#[test]
fn sampling_is_reproducible_under_a_seed() {
    let decoding = Decoding { top_k: 50, temperature: 1.2, ..Default::default() };
    let a = run::<Cpu>(&[5, 17], 4, &decoding, 11, 12);
    assert_eq!(a, run::<Cpu>(&[5, 17], 4, &decoding, 11, 12));
    assert_ne!(a, run::<Cpu>(&[5, 17], 4, &decoding, 12, 12));
    assert!(a.windows(2).any(|w| w[0].tokens != w[1].tokens), "samples of one batch differ");
}

#[test]
fn samples_stop_at_the_end_of_text_token() {
    // Token 511 is the fixture's end-of-text id; a very high temperature reaches it quickly.
    let decoding = Decoding { temperature: 50.0, ..Default::default() };
    let samples = run::<Cpu>(&[7], 8, &decoding, 3, 60);
    for sample in &samples {
        assert!(!sample.tokens.contains(&511), "the end-of-text token is not part of the text");
        match sample.finish {
            Finish::Eos => assert!(sample.tokens.len() < 60),
            Finish::Length => assert_eq!(sample.tokens.len(), 60),
            Finish::Stop => unreachable!("no stop strings"),
        }
    }
    assert!(samples.iter().any(|s| s.finish == Finish::Eos), "{samples:?}");
}

/// The schedule the reddit-jokes pipeline samples with (top-20 for the first tokens, then
/// top-3), and top-k with temperature and top-p: the same samples on the CPU, which draws from
/// whole rows, and on wgpu, which draws among the tokens the device sends back.
#[cfg(feature = "wgpu")]
#[test]
fn top_k_samples_on_wgpu_are_the_cpus() {
    let schedules = [
        Decoding { top_k: 3, first_top_k: Some((20, 5)), ..Default::default() },
        Decoding { top_k: 40, temperature: 1.3, top_p: 0.9, ..Default::default() },
    ];
    assert_samples_on_wgpu_are_the_cpus(&[5, 17, 300], &schedules);
}

/// Six samples of `prompt` under each of `schedules`, the same on wgpu as on the CPU.
#[cfg(feature = "wgpu")]
fn assert_samples_on_wgpu_are_the_cpus(prompt: &[u32], schedules: &[Decoding]) {
    for decoding in schedules {
        let cpu = run::<Cpu>(prompt, 6, decoding, 4, 30);
        assert_eq!(run::<gpt2::WgpuEager>(prompt, 6, decoding, 4, 30), cpu, "{decoding:?}");
    }
}

/// Top-p over the whole vocabulary: the same samples on the CPU, which draws from whole rows, and
/// on wgpu, which draws among the device's 64 most likely tokens where the softmax denominator
/// it sends with them shows the nucleus within them (most steps of the sharper settings here),
/// and reads the rows otherwise (most steps at temperature 1, where the fixture's nucleus is
/// wide).
#[cfg(feature = "wgpu")]
#[test]
fn top_p_samples_on_wgpu_are_the_cpus() {
    let schedules = [
        Decoding { top_p: 0.9, ..Default::default() },
        Decoding { top_p: 0.8, temperature: 0.2, ..Default::default() },
        Decoding { top_p: 0.95, temperature: 0.1, ..Default::default() },
        Decoding { top_p: 0.9, temperature: 0.3, repetition_penalty: 1.5, ..Default::default() },
    ];
    assert_samples_on_wgpu_are_the_cpus(&[5, 17, 300], &schedules);
}

/// The repetition penalty applied on the device: the same samples as on the CPU, which applies
/// it to whole rows on the host. Greedy (the device's argmax after it), the pipeline's top-k
/// schedule (the device's most likely tokens after it) and top-p alone.
#[cfg(feature = "wgpu")]
#[test]
fn repetition_penalised_samples_on_wgpu_are_the_cpus() {
    let schedules = [
        Decoding { greedy: true, repetition_penalty: 3.0, ..Default::default() },
        Decoding { top_k: 3, first_top_k: Some((20, 5)), repetition_penalty: 3.0, ..Default::default() },
        Decoding { top_p: 0.9, repetition_penalty: 3.0, ..Default::default() },
    ];
    let prompt = [5, 17, 300, 17];
    for decoding in &schedules {
        let cpu = run::<Cpu>(&prompt, 6, decoding, 4, 30);
        let unpenalised = Decoding { repetition_penalty: 1.0, ..decoding.clone() };
        assert_ne!(run::<Cpu>(&prompt, 6, &unpenalised, 4, 30), cpu, "the penalty matters here: {decoding:?}");
        assert_eq!(run::<gpt2::WgpuEager>(&prompt, 6, decoding, 4, 30), cpu, "{decoding:?}");
    }
}

/// The draw among the device's most likely tokens is the draw from the whole row, token for
/// token, on the same logits: random ones, and ones rounded so that many tie.
#[cfg(feature = "wgpu")]
#[test]
fn drawing_among_the_devices_most_likely_is_drawing_from_the_row() {
    use burn::prelude::*;
    use sample::decoding::Candidate;
    type B = gpt2::WgpuEager;
    let (rows, vocab) = (4, 50_257);
    let device = Default::default();
    let mut state = 7u64;
    let drawn: Vec<f32> = (0..rows * vocab)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 24) as f32 * 12.0
        })
        .collect();
    let tied: Vec<f32> = drawn.iter().map(|x| x.round()).collect();
    for logits in [drawn, tied] {
        let tensor = Tensor::<B, 2>::from_data(TensorData::new(logits.clone(), [rows, vocab]), &device);
        for decoding in [
            Decoding { top_k: 1, ..Default::default() },
            Decoding { top_k: 20, temperature: 0.7, ..Default::default() },
            Decoding { top_k: 64, temperature: 2.0, top_p: 0.8, ..Default::default() },
        ] {
            let k = decoding.samples_among(0, vocab).expect("top-k without repetition penalty");
            let best = B::most_likely(tensor.clone(), k).expect("the device's kernel takes f32 logits");
            let best = best.into_data().to_vec::<f32>().unwrap();
            for (row, best) in best.chunks(2 * k).enumerate() {
                let candidates = Candidate::from_most_likely(best);
                let (mut whole_row, mut among) =
                    (ChaCha8Rng::seed_from_u64(row as u64), ChaCha8Rng::seed_from_u64(row as u64));
                for _ in 0..200 {
                    let row_logits = &mut logits[row * vocab..(row + 1) * vocab].to_vec();
                    assert_eq!(
                        decoding.draw(&candidates, &mut among),
                        decoding.choose(row_logits, &[], 0, &mut whole_row),
                        "{decoding:?}, row {row}"
                    );
                }
            }
        }
    }
}
