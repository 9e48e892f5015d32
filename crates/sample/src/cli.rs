use clap::Parser;
use gpt2::Precision;
use serde::Serialize;
use stage::device::{self, DeviceChoice};
use std::path::PathBuf;

/// Generate text (jokes) from a GPT-2 model.
///
/// Loads a Hugging Face model directory (a pretrained model, a fine-tuned run's `final/`, or a
/// checkpoint `train export` wrote) or Hub id, continues each prompt --num-samples times (the
/// samples of a prompt are decoded together with the KV cache), streams them to the terminal,
/// and optionally writes JSONL (--out) and a plain list (--txt). With --against, it marks
/// samples that recite a training joke instead of making a new one.
///
/// Example: sample --model data/runs/demo/final --prompt "JOKE:" --num-samples 5 --top-k 40
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "sample", version, args_override_self = true)]
pub struct Cli {
    /// Read flags from the [sample] table of this pipeline TOML file (command-line flags win).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub pipeline: Option<PathBuf>,

    /// A model directory (config.json + model.safetensors) or a Hugging Face Hub id.
    #[arg(long, value_name = "DIR_OR_ID")]
    pub model: String,

    /// tokenizer.json to use (default: the one in the model directory).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,

    /// A prompt to continue; repeat for several.
    #[arg(long = "prompt", value_name = "TEXT")]
    pub prompts: Vec<String>,

    /// A file of prompts, one per line (blank lines skipped).
    #[arg(long, value_name = "FILE")]
    pub prompts_file: Option<PathBuf>,

    /// Samples per prompt, generated together in batches (as many at once as fit in about
    /// 2 GiB of attention cache, at most 64).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub num_samples: u64,

    /// Most tokens to generate per sample.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_new_tokens: usize,

    /// End a sample where this text appears (the text is left out, cut exactly where it
    /// starts); repeatable. Samples always end at the end-of-text token.
    #[arg(long, value_name = "TEXT", value_parser = non_empty)]
    pub stop: Vec<String>,

    /// Always take the most likely token (ignores the sampling flags).
    #[arg(long)]
    pub greedy: bool,

    /// Softmax temperature, above 0: below 1 is more conservative, above 1 wilder (--greedy
    /// for always the most likely token).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub temperature: f32,

    /// Sample only among the K most likely tokens (0: all).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub top_k: usize,

    /// Sample only among the most likely tokens whose probabilities add up to P, in (0, 1]
    /// (1: all).
    #[arg(long, value_name = "P", default_value_t = 1.0, value_parser = probability)]
    pub top_p: f32,

    /// Penalise tokens already in the prompt or sample, above 0 (1: off; 1.2 is common).
    #[arg(long, value_name = "R", default_value_t = 1.0, value_parser = positive)]
    pub repetition_penalty: f32,

    /// Use top-K for the first --first-tokens generated tokens, then --top-k. The original
    /// joke experiment: --first-top-k 20 --first-tokens 5 --top-k 3.
    #[arg(long, value_name = "K", requires = "first_tokens")]
    pub first_top_k: Option<usize>,

    /// How many tokens --first-top-k applies to.
    #[arg(long, value_name = "N", requires = "first_top_k")]
    pub first_tokens: Option<usize>,

    /// Seed of the sampler: the same seed on the same backend gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Write one JSON line per sample: prompt, text, tokens, finish, settings, and the hash of
    /// everything that determined them. When FILE already holds samples with that hash (and
    /// --txt, if given, exists), nothing is generated.
    #[arg(long, value_name = "FILE.jsonl")]
    #[serde(skip)]
    pub out: Option<PathBuf>,

    /// Write the generated texts as a plain list, separated by blank lines. An existing FILE is
    /// replaced only beside --out's samples (or with --force).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub txt: Option<PathBuf>,

    /// Generate even when --out already holds these samples; replace a --txt file that is not
    /// beside --out's samples.
    #[arg(long)]
    #[serde(skip)]
    pub force: bool,

    #[arg(long, value_name = "DEVICE", default_value_t, help = device::HELP)]
    #[serde(serialize_with = "as_text")]
    pub device: DeviceChoice,

    /// f32, or bf16 (CUDA only): the matrices (projections and the token embedding, which is
    /// also the LM head) stored in bf16 and the operands of every matrix product rounded to
    /// bf16, products accumulated in f32: a decoding step reads half the bytes. Biases,
    /// LayerNorm, attention over the cache and the sampling stay f32.
    #[arg(long, value_name = "f32|bf16", default_value_t = Precision::F32)]
    #[serde(skip_serializing_if = "is_f32")]
    pub precision: Precision,

    /// A prepared dataset: mark samples that recite one of its training jokes (the whole joke,
    /// or a run of 32 tokens of one) and report the share.
    #[arg(long, value_name = "DATA_DIR")]
    pub against: Option<PathBuf>,
}

fn positive(text: &str) -> Result<f32, String> {
    let value: f32 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{text} is not a number above 0"))
    }
}

fn probability(text: &str) -> Result<f32, String> {
    let value: f32 = text.parse().map_err(|e| format!("{e}"))?;
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(format!("{text} is not in (0, 1]"))
    }
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("an empty stop text would end every sample before it starts".into())
    } else {
        Ok(text.to_string())
    }
}

/// f32 is left out of the samples' settings hash: --out files written before --precision
/// existed still count as up to date.
fn is_f32(precision: &Precision) -> bool {
    *precision == Precision::F32
}

fn as_text<S: serde::Serializer>(device: &DeviceChoice, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(device)
}
