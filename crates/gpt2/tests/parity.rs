//! The model against `transformers` on the fixtures of scripts/fixtures/gpt2_model.py: logits,
//! loss, KV-cache decoding, greedy generation, and every checkpoint variant.

use burn::{backend::NdArray, prelude::*};
use gpt2::{hf, next_token_loss, Gpt2, Gpt2Config, NextTokens};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

type B = NdArray<f32>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load(name: &str) -> (Gpt2Config, Gpt2<B>) {
    hf::load_dir::<B>(&fixture(name), &Default::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

struct Expected {
    input_ids: Vec<i64>,
    logits: Vec<f32>,
    shape: Vec<usize>,
    json: serde_json::Value,
}

fn expected() -> Expected {
    let bytes = std::fs::read(fixture("expected.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let ids = tensors.tensor("input_ids").unwrap();
    let logits = tensors.tensor("logits").unwrap();
    Expected {
        input_ids: ids.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(),
        logits: logits.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        shape: logits.shape().to_vec(),
        json: serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap(),
    }
}

fn tokens(ids: &[i64], batch: usize) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [batch, ids.len() / batch]), &Default::default())
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn logits_match_transformers() {
    let (config, model) = load("tiny");
    assert_eq!((config.vocab_size, config.n_layer, config.n_head, config.n_embd), (512, 2, 4, 32));
    let expected = expected();
    let logits = model.forward(tokens(&expected.input_ids, 2));
    assert_eq!(logits.dims().to_vec(), expected.shape);
    let difference = max_difference(&values(logits), &expected.logits);
    assert!(difference <= 1e-4, "max |logit difference| {difference}");
}

#[test]
fn masked_loss_matches_transformers() {
    let (_, model) = load("tiny");
    let expected = expected();
    let logits = model.forward(tokens(&expected.input_ids, 2));
    let from = expected.json["loss_mask_row1_from"].as_u64().unwrap() as usize;
    let mask: Vec<f32> = (0..32).map(|i| if i >= 16 + from { 0.0 } else { 1.0 }).collect();
    let next = NextTokens::new(&expected.input_ids, &mask, 16, &Default::default());
    let loss = next_token_loss(logits, next, model.precision()).into_scalar();
    let reference = expected.json["loss"].as_f64().unwrap() as f32;
    assert!((loss - reference).abs() <= 1e-5 * reference.abs(), "loss {loss} vs transformers {reference}");
}

#[test]
fn kv_cache_gives_the_full_forward_logits() {
    let (_, model) = load("tiny");
    let ids = &expected().input_ids[..16];
    let full = values(model.forward(tokens(ids, 1)));
    let vocab = full.len() / 16;
    // A prompt of 5 tokens gives the logits after its last (position 4), then one token at a time.
    let mut cache = model.new_cache();
    let mut incremental = values(model.next_token_logits(tokens(&ids[..5], 1), &mut cache));
    for &id in &ids[5..] {
        incremental.extend(values(model.next_token_logits(tokens(&[id], 1), &mut cache)));
    }
    assert_eq!(cache.len(), 16);
    let difference = max_difference(&full[4 * vocab..], &incremental);
    assert!(difference <= 1e-5, "max |difference| {difference}");
}

#[test]
fn greedy_decoding_matches_transformers_generate() {
    let (config, model) = load("tiny");
    let expected = expected();
    for (prompt, continuation) in
        expected.json["prompts"].as_array().unwrap().iter().zip(expected.json["greedy"].as_array().unwrap())
    {
        let prompt: Vec<i64> = prompt.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let want: Vec<i64> = continuation.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let mut cache = model.new_cache();
        let mut next = prompt.clone();
        let mut generated = Vec::new();
        while generated.len() < want.len() {
            let last = values(model.next_token_logits(tokens(&next, 1), &mut cache));
            let id = last.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as i64;
            generated.push(id);
            if id as usize == config.eos_token_id {
                break;
            }
            next = vec![id];
        }
        assert_eq!(generated, want, "prompt {prompt:?}");
    }
}

#[test]
fn sharded_and_legacy_files_load_the_same_weights() {
    let (_, reference) = load("tiny");
    let ids = tokens(&expected().input_ids, 2);
    let want = values(reference.forward(ids.clone()));
    for variant in ["tiny-sharded", "tiny-legacy"] {
        let (_, model) = load(variant);
        assert_eq!(values(model.forward(ids.clone())), want, "{variant}");
    }
}

#[test]
fn half_precision_files_load_as_their_exact_values() {
    let (_, reference) = load("tiny");
    let original = values(reference.wte.weight.val());
    for (variant, round) in [
        ("tiny-f16", (|v: f32| half::f16::from_f32(v).to_f32()) as fn(f32) -> f32),
        ("tiny-bf16", |v: f32| half::bf16::from_f32(v).to_f32()),
    ] {
        let (_, model) = load(variant);
        let rounded: Vec<f32> = original.iter().map(|&v| round(v)).collect();
        assert_eq!(values(model.wte.weight.val()), rounded, "{variant}");
    }
}
