//! Generation through the sample stage's own loop, on the gpt2 crate's transformers fixture.

use burn::backend::NdArray;
use gpt2::hf;
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
use sample::{
    decoding::Decoding,
    generate::{Finish, Generated, Generator, Limits},
    pace::Pace,
};
use std::path::Path;

type B = NdArray<f32>;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gpt2/tests/fixtures")
}

fn run(prompt: &[u32], samples: usize, decoding: &Decoding, seed: u64, max_new_tokens: usize) -> Vec<Generated> {
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
        for sample in run(&prompt, 3, &greedy, 0, want.len()) {
            assert_eq!(sample.tokens, want, "prompt {prompt:?}");
            assert_eq!(sample.finish, Finish::Length);
        }
    }
}

#[test]
fn sampling_is_reproducible_under_a_seed() {
    let decoding = Decoding { top_k: 50, temperature: 1.2, ..Default::default() };
    let a = run(&[5, 17], 4, &decoding, 11, 12);
    assert_eq!(a, run(&[5, 17], 4, &decoding, 11, 12));
    assert_ne!(a, run(&[5, 17], 4, &decoding, 12, 12));
    assert!(a.windows(2).any(|w| w[0].tokens != w[1].tokens), "samples of one batch differ");
}

#[test]
fn samples_stop_at_the_end_of_text_token() {
    // Token 511 is the fixture's end-of-text id; a very high temperature reaches it quickly.
    let decoding = Decoding { temperature: 50.0, ..Default::default() };
    let samples = run(&[7], 8, &decoding, 3, 60);
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
