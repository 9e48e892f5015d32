//! The Hugging Face layout: `config.json` plus `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), GPT-2's tensor names, f32/f16/bf16 in, f32 out.

use crate::{Gpt2, Gpt2Config};
use anyhow::{anyhow, bail, Context, Result};
use burn::{
    module::Param,
    nn::{LayerNorm, Linear},
    prelude::*,
};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::{
    collections::{BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// `GPT2LMHeadModel` puts the body's tensors under this prefix; older files have none.
const PREFIX: &str = "transformer.";

/// `sha256:<hash>` of a model directory's weights (the single file, or the shard index with
/// every shard's hash), naming exactly the weights later stages start from.
pub fn weights_sha256(dir: &Path) -> Result<String> {
    let hash = |file: &Path| artifact::sha256_file(file).with_context(|| format!("reading {}", file.display()));
    match weight_files(dir)? {
        WeightFiles::Single(file) => Ok(format!("sha256:{}", hash(&file)?)),
        // Sharded: the hashes of the index and of every shard, in order, hashed together.
        WeightFiles::Sharded { index, shards } => {
            let mut hashes = hash(&index)?;
            for shard in shards {
                hashes += &hash(&shard)?;
            }
            Ok(format!("sha256:{}", artifact::sha256_bytes(hashes.as_bytes())))
        }
    }
}

/// Where a model directory keeps its weights.
enum WeightFiles {
    Single(PathBuf),
    Sharded { index: PathBuf, shards: Vec<PathBuf> },
}

impl WeightFiles {
    fn tensor_files(self) -> Vec<PathBuf> {
        match self {
            WeightFiles::Single(file) => vec![file],
            WeightFiles::Sharded { shards, .. } => shards,
        }
    }
}

/// The weight files of `dir`. Only safetensors are read: a PyTorch pickle can run code when
/// loaded, so a directory holding only one is told how to convert it.
fn weight_files(dir: &Path) -> Result<WeightFiles> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(WeightFiles::Single(single));
    }
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if index.is_file() {
        let shards = shard_files(&index)?.into_iter().map(|shard| dir.join(shard)).collect();
        return Ok(WeightFiles::Sharded { index, shards });
    }
    let pickle =
        ["pytorch_model.bin", "pytorch_model.bin.index.json"].into_iter().find(|name| dir.join(name).is_file());
    match pickle {
        Some(name) => bail!(
            "{}: no {WEIGHTS_FILE}, only {name}, PyTorch's pickle format, which is not read (loading a pickle can run \
             code); convert it once with: python3 -c \"from transformers import GPT2LMHeadModel as M; \
             M.from_pretrained('{dir}').save_pretrained('{dir}', safe_serialization=True)\"",
            dir.display(),
            dir = dir.display()
        ),
        None => {
            bail!("{}: no {WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE}: not a Hugging Face model directory", dir.display())
        }
    }
}

/// The `config.json` of a Hugging Face GPT-2 directory.
pub fn read_config(dir: &Path) -> Result<Gpt2Config> {
    let config_path = dir.join(CONFIG_FILE);
    let config_text = fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
    serde_json::from_str(&config_text)
        .map_err(anyhow::Error::from)
        .and_then(|value| Gpt2Config::from_hf_json(&value))
        .with_context(|| format!("{}", config_path.display()))
}

/// Load `config.json` and the weights of a Hugging Face GPT-2 directory.
pub fn load_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Gpt2Config, Gpt2<B>)> {
    let config = read_config(dir)?;

    let files = weight_files(dir)?.tensor_files();

    let mut tensors: HashMap<String, (Vec<usize>, Vec<f32>, PathBuf)> = HashMap::new();
    for file in &files {
        let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let safetensors =
            SafeTensors::deserialize(&bytes).with_context(|| format!("{}: not a safetensors file", file.display()))?;
        for (name, view) in safetensors.tensors() {
            let name = name.strip_prefix(PREFIX).unwrap_or(&name).to_string();
            if is_ignored_extra(&name) {
                continue;
            }
            let values = to_f32(&view).with_context(|| format!("{}: tensor {name}", file.display()))?;
            tensors.insert(name, (view.shape().to_vec(), values, file.clone()));
        }
    }

    let mut model = config.init_zeros::<B>(device);
    let mut missing = Vec::new();
    for (name, slot) in slots(&mut model) {
        let Some((shape, values, file)) = tensors.remove(&name) else {
            missing.push(name);
            continue;
        };
        if shape != slot.dims() {
            bail!("{}: tensor {name} has shape {shape:?}, the config needs {:?}", file.display(), slot.dims());
        }
        slot.set(values, device);
    }
    if !missing.is_empty() {
        bail!("{}: missing tensor(s): {}", dir.display(), missing.join(", "));
    }
    if !tensors.is_empty() {
        let extra: BTreeSet<_> = tensors.keys().collect();
        bail!("{}: unexpected tensor(s) for GPT-2: {extra:?}", dir.display());
    }
    Ok((config, model))
}

/// Save in the layout `transformers.GPT2LMHeadModel.from_pretrained` reads: `config.json`,
/// `model.safetensors` (f32, `transformer.`-prefixed names, the tied LM head left out as
/// `save_pretrained` does), and `tokenizer.json` when given. Each file is written under a
/// temporary name and renamed, so none is ever half-written.
pub fn save<B: Backend>(model: &Gpt2<B>, config: &Gpt2Config, dir: &Path, tokenizer: Option<&Path>) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut model = model.clone();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, slot) in slots(&mut model) {
        let bytes = slot.values()?.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((format!("{PREFIX}{name}"), slot.dims(), bytes));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| Ok((name.as_str(), TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = safetensors::serialize(views, Some(metadata))?;
    artifact::write_atomically(&dir.join(WEIGHTS_FILE), &weights)?;
    artifact::write_atomically(&dir.join(CONFIG_FILE), serde_json::to_string_pretty(&config.to_hf_json())?.as_bytes())?;
    if let Some(tokenizer_file) = tokenizer {
        let bytes = fs::read(tokenizer_file).with_context(|| format!("reading {}", tokenizer_file.display()))?;
        artifact::write_atomically(&dir.join(tokenizer::FILE_NAME), &bytes)?;
    }
    Ok(())
}

/// The shard files a `model.safetensors.index.json` lists, each once.
pub fn shard_files(index: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(index).with_context(|| format!("reading {}", index.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}", index.display()))?;
    let map = value["weight_map"].as_object().ok_or_else(|| anyhow!("{}: no weight_map", index.display()))?;
    let files: BTreeSet<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    Ok(files.into_iter().collect())
}

/// Tensors older GPT-2 files carry that are not parameters: the causal-mask buffers and an
/// explicit copy of the tied LM head.
fn is_ignored_extra(name: &str) -> bool {
    name == "lm_head.weight" || name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")
}

fn to_f32(view: &TensorView) -> Result<Vec<f32>> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => bail!("dtype {other:?} is not supported (f32, f16 or bf16)"),
    })
}

/// A parameter of the model under its Hugging Face name (without the `transformer.` prefix).
enum Slot<'a, B: Backend> {
    Vector(&'a mut Param<Tensor<B, 1>>),
    Matrix(&'a mut Param<Tensor<B, 2>>),
}

impl<B: Backend> Slot<'_, B> {
    fn dims(&self) -> Vec<usize> {
        match self {
            Slot::Vector(p) => p.dims().to_vec(),
            Slot::Matrix(p) => p.dims().to_vec(),
        }
    }

    fn set(self, values: Vec<f32>, device: &B::Device) {
        match self {
            Slot::Vector(p) => *p = Param::from_tensor(Tensor::from_data(TensorData::new(values, p.dims()), device)),
            Slot::Matrix(p) => *p = Param::from_tensor(Tensor::from_data(TensorData::new(values, p.dims()), device)),
        }
    }

    fn values(&self) -> Result<Vec<f32>> {
        let data = match self {
            Slot::Vector(p) => p.val().into_data(),
            Slot::Matrix(p) => p.val().into_data(),
        };
        data.convert::<f32>().to_vec::<f32>().map_err(|e| anyhow!("reading a tensor back: {e:?}"))
    }
}

/// Every parameter with its checkpoint name, in checkpoint order.
fn slots<B: Backend>(model: &mut Gpt2<B>) -> Vec<(String, Slot<'_, B>)> {
    let mut slots = vec![
        ("wte.weight".to_string(), Slot::Matrix(&mut model.wte.weight)),
        ("wpe.weight".to_string(), Slot::Matrix(&mut model.wpe.weight)),
    ];
    for (i, block) in model.h.iter_mut().enumerate() {
        norm_slots(&mut slots, format!("h.{i}.ln_1"), &mut block.ln_1);
        linear_slots(&mut slots, format!("h.{i}.attn.c_attn"), &mut block.attn.c_attn);
        linear_slots(&mut slots, format!("h.{i}.attn.c_proj"), &mut block.attn.c_proj);
        norm_slots(&mut slots, format!("h.{i}.ln_2"), &mut block.ln_2);
        linear_slots(&mut slots, format!("h.{i}.mlp.c_fc"), &mut block.mlp.c_fc);
        linear_slots(&mut slots, format!("h.{i}.mlp.c_proj"), &mut block.mlp.c_proj);
    }
    norm_slots(&mut slots, "ln_f".to_string(), &mut model.ln_f);
    slots
}

fn norm_slots<'a, B: Backend>(slots: &mut Vec<(String, Slot<'a, B>)>, prefix: String, norm: &'a mut LayerNorm<B>) {
    slots.push((format!("{prefix}.weight"), Slot::Vector(&mut norm.gamma)));
    slots.push((format!("{prefix}.bias"), Slot::Vector(norm.beta.as_mut().expect("GPT-2 LayerNorms have a bias"))));
}

fn linear_slots<'a, B: Backend>(slots: &mut Vec<(String, Slot<'a, B>)>, prefix: String, linear: &'a mut Linear<B>) {
    slots.push((format!("{prefix}.weight"), Slot::Matrix(&mut linear.weight)));
    slots.push((format!("{prefix}.bias"), Slot::Vector(linear.bias.as_mut().expect("GPT-2 projections have a bias"))));
}
