//! Saving in the Hugging Face layout and loading it back; clear errors for broken files.

use burn::{backend::NdArray, prelude::*};
use gpt2::{hf, Gpt2, Gpt2Config};
use safetensors::SafeTensors;
use std::{collections::HashMap, fs, path::Path};

type B = NdArray<f32>;

fn tiny() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

fn weights<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn all_weights(model: &Gpt2<B>) -> Vec<f32> {
    let mut all = weights(model.wte.weight.val());
    all.extend(weights(model.wpe.weight.val()));
    for block in &model.h {
        all.extend(weights(block.attn.c_attn.weight.val()));
        all.extend(weights(block.mlp.c_proj.bias.as_ref().unwrap().val()));
        all.extend(weights(block.ln_2.gamma.val()));
    }
    all.extend(weights(model.ln_f.beta.as_ref().unwrap().val()));
    all
}

#[test]
fn save_then_load_is_bit_exact_with_hugging_face_names() {
    let device = Default::default();
    let (config, model) = hf::load_dir::<B>(&tiny(), &device).unwrap();
    let out = tempfile::tempdir().unwrap();
    let tokenizer = out.path().join("source-tokenizer.json");
    fs::write(&tokenizer, "{\"model\": {}}").unwrap();
    hf::save(&model, &config, &out.path().join("saved"), Some(&tokenizer)).unwrap();
    let saved = out.path().join("saved");
    let (config_again, model_again) = hf::load_dir::<B>(&saved, &device).unwrap();
    assert_eq!(config_again, config);
    assert_eq!(all_weights(&model_again), all_weights(&model));
    assert_eq!(fs::read(saved.join("tokenizer.json")).unwrap(), fs::read(&tokenizer).unwrap());

    // The same tensor names as transformers' own file, the tied LM head left out.
    let names = |path: &Path| {
        let bytes = fs::read(path).unwrap();
        let mut names: Vec<String> =
            SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(String::from).collect();
        names.sort();
        names
    };
    assert_eq!(names(&saved.join("model.safetensors")), names(&tiny().join("model.safetensors")));
    let bytes = fs::read(saved.join("model.safetensors")).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(metadata.metadata().as_ref().unwrap()["format"], "pt");
    assert!(fs::read_dir(&saved).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".partial")));
}

/// Rewrite the fixture's weights through `edit`, into a new directory.
fn edited(edit: impl FnOnce(&mut HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(tiny().join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = fs::read(tiny().join("model.safetensors")).unwrap();
    let mut tensors: HashMap<_, _> = SafeTensors::deserialize(&bytes)
        .unwrap()
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.dtype(), view.shape().to_vec(), view.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            (name.clone(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    fs::write(dir.path().join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    format!("{:#}", hf::load_dir::<B>(dir, &Default::default()).expect_err("loading must fail"))
}

#[test]
fn broken_checkpoints_name_the_tensor() {
    let missing = edited(|t| {
        t.remove("transformer.h.1.mlp.c_fc.bias");
    });
    let error = load_error(missing.path());
    assert!(error.contains("missing tensor(s): h.1.mlp.c_fc.bias"), "{error}");

    let extra = edited(|t| {
        let entry = t["transformer.ln_f.bias"].clone();
        t.insert("transformer.h.9.attn.c_attn.weight".into(), entry);
    });
    let error = load_error(extra.path());
    assert!(error.contains("unexpected tensor(s)") && error.contains("h.9.attn.c_attn.weight"), "{error}");

    let misshaped = edited(|t| {
        let (dtype, _, data) = t["transformer.wpe.weight"].clone();
        t.insert("transformer.wpe.weight".into(), (dtype, vec![32, 64], data));
    });
    let error = load_error(misshaped.path());
    assert!(error.contains("tensor wpe.weight has shape [32, 64], the config needs [64, 32]"), "{error}");

    let empty = tempfile::tempdir().unwrap();
    let error = load_error(empty.path());
    assert!(error.contains("config.json"), "{error}");
    fs::copy(tiny().join("config.json"), empty.path().join("config.json")).unwrap();
    assert!(load_error(empty.path()).contains("no model.safetensors"));
    // What `save_pretrained` wrote before safetensors: named, with the way to convert it.
    fs::write(empty.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let error = load_error(empty.path());
    assert!(error.contains("only pytorch_model.bin") && error.contains("safe_serialization=True"), "{error}");
    assert_eq!(gpt2::hf::weights_sha256(empty.path()).unwrap_err().to_string(), error);
}

#[test]
fn config_json_round_trips_and_refuses_other_models() {
    let text = fs::read_to_string(tiny().join("config.json")).unwrap();
    let config = Gpt2Config::from_hf_json(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(Gpt2Config::from_hf_json(&config.to_hf_json()).unwrap(), config);
    let mut other: serde_json::Value = serde_json::from_str(&text).unwrap();
    other["activation_function"] = "relu".into();
    assert!(Gpt2Config::from_hf_json(&other).unwrap_err().to_string().contains("relu"));
    assert_eq!(Gpt2Config::preset("openai-community/gpt2-medium").unwrap().n_layer, 24);
    assert!(Gpt2Config::preset("gpt3").is_none());
}

/// The real gpt2 (124M) shapes: build from the preset, save, reload, same logits.
#[test]
fn gpt2_124m_shapes_save_and_reload() {
    let device = Default::default();
    let config = Gpt2Config::preset("gpt2").unwrap();
    let model = config.init::<B>(&device);
    let parameters: usize = model.num_params();
    assert_eq!(parameters, 124_439_808);
    assert_eq!(config.num_params(), parameters, "the count read off the config, before any weights exist");
    let dir = tempfile::tempdir().unwrap();
    hf::save(&model, &config, dir.path(), None).unwrap();
    let (_, reloaded) = hf::load_dir::<B>(dir.path(), &device).unwrap();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![464i64, 3290, 318, 257, 50256], [1, 5]), &device);
    assert_eq!(weights(model.forward(ids.clone())), weights(reloaded.forward(ids)));
}
