//! One sample run: load, generate for every prompt, report, write.

use crate::{
    cli::Cli,
    decoding::Decoding,
    generate::{Finish, Generated, Generator, Limits},
    pace::Pace,
    recitation::{Recitation, TrainingJokes},
};
use anyhow::{anyhow, bail, Context, Result};
use gpt2::Gpt2Backend;
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
use serde::Serialize;
use stage::{
    device::{self, OnBackend},
    gpu_memory::MemoryNeed,
};
use std::{
    fs,
    io::{self, Write},
    path::Path,
};

/// One generated sample, as written to `--out`.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRecord {
    pub prompt: String,
    /// Generated text only.
    pub text: String,
    /// Generated token ids only.
    pub tokens: Vec<u32>,
    pub finish: Finish,
    /// With --against: whether and how the sample recites a training joke.
    #[serde(skip_serializing_if = "Recitation::not_checked")]
    pub recited: Recitation,
    pub sample: u64,
    pub model: String,
    pub seed: u64,
    pub max_new_tokens: usize,
    #[serde(flatten)]
    pub decoding: Decoding,
    /// sha256 of everything that determined the samples: the flags, the prompts, the model's
    /// weights, the tokenizer and the --against dataset.
    pub inputs_hash: String,
}

pub struct Outcome {
    /// The samples generated (none when up to date).
    pub records: Vec<SampleRecord>,
    /// --out already held the samples of these inputs: nothing was generated.
    pub up_to_date: bool,
}

pub fn run(cli: &Cli) -> Result<Outcome> {
    let prompts = prompts(cli)?;
    let model_dir = stage::model::locate(&cli.model)?;
    let tokenizer = cli.tokenizer.clone().unwrap_or_else(|| model_dir.join(tokenizer::FILE_NAME));
    if !tokenizer.is_file() {
        bail!("no tokenizer at {}: pass --tokenizer FILE", tokenizer.display());
    }
    check_outputs(cli)?;
    let inputs_hash = inputs_hash(cli, &prompts, &model_dir, &tokenizer)?;
    if !cli.force && holds_samples_of(cli, &inputs_hash) {
        return Ok(Outcome { records: Vec::new(), up_to_date: true });
    }
    let config = gpt2::hf::read_config(&model_dir)?;
    let batch = samples_per_batch(&config, cli.max_new_tokens).min(cli.num_samples as usize);
    let need = MemoryNeed::sampling(&config, batch, cache_positions(&config, cli.max_new_tokens));
    let work = Sampling {
        cli,
        prompts: &prompts,
        model_dir: &model_dir,
        tokenizer_path: &tokenizer,
        inputs_hash: &inputs_hash,
        batch,
    };
    let device = device::resolve(cli.device, "sample", &need)?;
    device.check_precision(cli.precision)?;
    let records = device::dispatch_eager(device, work)?;
    if let Some(path) = &cli.out {
        let lines: Vec<String> = records.iter().map(|r| serde_json::to_string(r).expect("records serialise")).collect();
        artifact::write_atomically(path, lines.join("\n") + "\n")?;
    }
    if let Some(path) = &cli.txt {
        let texts: Vec<&str> = records.iter().map(|r| r.text.trim()).collect();
        artifact::write_atomically(path, texts.join("\n\n") + "\n")?;
    }
    Ok(Outcome { records, up_to_date: false })
}

fn inputs_hash(cli: &Cli, prompts: &[String], model_dir: &Path, tokenizer: &Path) -> Result<String> {
    let against = match &cli.against {
        Some(dir) => Some(shards::Dataset::open(dir)?.manifest.lineage),
        None => None,
    };
    let inputs = serde_json::json!({
        "flags": cli,
        "prompts": prompts,
        "weights": gpt2::hf::weights_sha256(model_dir)?,
        "tokenizer": artifact::sha256_file(tokenizer).with_context(|| format!("reading {}", tokenizer.display()))?,
        "against": against,
    });
    Ok(artifact::sha256_bytes(inputs.to_string().as_bytes()))
}

/// Refuse outputs that would overwrite what sample did not write: an --out that is not a
/// samples file, a --txt not beside --out's samples (unless --force), either one an input.
fn check_outputs(cli: &Cli) -> Result<()> {
    let same_file =
        |a: &Path, b: &Path| a == b || a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a));
    let inputs = cli.prompts_file.iter().chain(&cli.tokenizer);
    for (flag, output) in [("--out", &cli.out), ("--txt", &cli.txt)] {
        let Some(output) = output else { continue };
        if output.is_dir() {
            bail!("sample {flag} {} is a directory: give a file name", output.display());
        }
        if let Some(input) = inputs.clone().find(|input| same_file(output, input)) {
            bail!("sample {flag} {} is also an input ({}): choose another file", output.display(), input.display());
        }
    }
    if let (Some(out), Some(txt)) = (&cli.out, &cli.txt) {
        if same_file(out, txt) {
            bail!("--out and --txt are both {}: give each its own file", out.display());
        }
    }
    let out_holds_samples = match &cli.out {
        Some(out) if out.exists() => {
            if !is_samples_file(out) {
                bail!(
                    "sample --out {} holds something other than samples (its first line is not a sample record): \
                     sample leaves it alone; choose another file",
                    out.display()
                );
            }
            true
        }
        _ => false,
    };
    if let Some(txt) = cli.txt.as_ref().filter(|txt| txt.is_file() && fs::metadata(txt).is_ok_and(|m| m.len() > 0)) {
        if !out_holds_samples && !cli.force {
            bail!(
                "sample --txt {} already exists and is not beside samples in --out: pass --force to replace it, or choose another file",
                txt.display()
            );
        }
    }
    Ok(())
}

/// Whether `path` is empty or starts with a sample record (a file this stage wrote).
fn is_samples_file(path: &Path) -> bool {
    use io::BufRead;
    let Ok(file) = fs::File::open(path) else { return false };
    match io::BufReader::new(file).lines().next() {
        None => true,
        Some(Ok(line)) => {
            serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|record| record["inputs_hash"].is_string())
        }
        Some(Err(_)) => false,
    }
}

/// Whether --out (and --txt) already hold the samples of `inputs_hash`.
fn holds_samples_of(cli: &Cli, inputs_hash: &str) -> bool {
    let Some(out) = &cli.out else { return false };
    let first_line = fs::read_to_string(out).ok().and_then(|text| text.lines().next().map(String::from));
    let recorded = first_line.and_then(|line| serde_json::from_str::<serde_json::Value>(&line).ok());
    let same = recorded.is_some_and(|r| r["inputs_hash"] == inputs_hash);
    same && cli.txt.as_ref().is_none_or(|txt| txt.is_file())
}

fn prompts(cli: &Cli) -> Result<Vec<String>> {
    let mut prompts = cli.prompts.clone();
    if let Some(path) = &cli.prompts_file {
        let text = fs::read_to_string(path).with_context(|| format!("reading prompts from {}", path.display()))?;
        // Editors on Windows start UTF-8 files with a byte-order mark; it is not prompt text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        prompts.extend(text.lines().filter(|l| !l.trim().is_empty()).map(String::from));
    }
    if prompts.is_empty() {
        bail!("no prompt: give --prompt TEXT (repeatable) or --prompts-file FILE");
    }
    Ok(prompts)
}

struct Sampling<'a> {
    cli: &'a Cli,
    prompts: &'a [String],
    model_dir: &'a Path,
    tokenizer_path: &'a Path,
    inputs_hash: &'a str,
    /// Samples decoded together.
    batch: usize,
}

impl OnBackend for Sampling<'_> {
    type Output = Result<Vec<SampleRecord>>;

    fn run<B: Gpt2Backend>(self, device: B::Device) -> Self::Output {
        let cli = self.cli;
        let (config, model) = gpt2::hf::load_dir::<B>(self.model_dir, &device)?;
        let model = model.for_sampling(cli.precision);
        let tokenizer_path = self.tokenizer_path;
        let tokenizer = tokenizer::load(tokenizer_path)?;
        let described = format!("tokenizer {}", tokenizer_path.display());
        let model_dir = Some(self.model_dir);
        tokenizer::check_fits_model(&tokenizer, tokenizer_path, &described, &cli.model, config.vocab_size, model_dir)?;
        let eos_id = tokenizer.token_to_id(tokenizer::END_OF_TEXT).unwrap_or(config.eos_token_id as u32);
        let against = match &cli.against {
            Some(dir) => Some(training_jokes(dir, tokenizer_path)?),
            None => None,
        };
        let decoding = Decoding {
            greedy: cli.greedy,
            temperature: cli.temperature,
            top_k: cli.top_k,
            top_p: cli.top_p,
            repetition_penalty: cli.repetition_penalty,
            first_top_k: cli.first_top_k.zip(cli.first_tokens),
        };
        let decode = |ids: &[u32]| tokenizer.decode(ids, false).unwrap_or_default();
        let generator = Generator {
            model: &model,
            decoding: &decoding,
            limits: Limits { max_new_tokens: cli.max_new_tokens, eos_id, stop: &cli.stop },
            decode: &decode,
            device: &device,
        };
        let batch = self.batch;
        let mut records = Vec::new();
        let mut pace = Pace::default();
        let mut stdout = io::stdout().lock();
        let mut context_told = false;
        for (prompt_index, prompt) in self.prompts.iter().enumerate() {
            let encoding = tokenizer
                .encode(prompt.as_str(), false)
                .map_err(|e| anyhow!("tokenizing the prompt {prompt:?}: {e}"))?;
            let prompt_ids = fit_prompt(encoding.get_ids(), config.n_positions, cli.max_new_tokens, prompt)?;
            let room = config.n_positions - prompt_ids.len();
            if room < cli.max_new_tokens && !context_told {
                context_told = true;
                eprintln!(
                    "notice: the model reads at most {} positions, so samples of the prompt {:?} end after {room} new \
                     tokens (finish \"length\"), not --max-new-tokens {}",
                    config.n_positions,
                    shown(prompt),
                    cli.max_new_tokens
                );
            }
            writeln!(stdout, "=== {prompt}")?;
            let samples = self.samples_of_prompt(&generator, prompt_index, &prompt_ids, batch, &mut pace);
            let several = samples.len() > 1;
            for (index, sample) in samples.into_iter().enumerate() {
                let recited = recitation(against.as_ref(), &prompt_ids, &sample, eos_id);
                if several {
                    writeln!(stdout, "--- sample {}:{}", index + 1, sample.text)?;
                }
                if let Recitation::Recited(kind) = recited {
                    writeln!(stdout, "    (recited from the training data: {kind})")?;
                }
                records.push(self.record(prompt, index, sample, recited, &decoding));
            }
        }
        eprintln!("sample: {}", pace.summary());
        if against.is_some() {
            let recited = records.iter().filter(|r| matches!(r.recited, Recitation::Recited(_))).count();
            writeln!(
                stdout,
                "recited: {recited} of {} samples ({:.1}%) reproduce a training joke; the rest are new",
                records.len(),
                100.0 * recited as f64 / records.len() as f64
            )?;
        }
        Ok(records)
    }
}

impl Sampling<'_> {
    /// The --num-samples samples of one prompt, `batch` at a time. One sample streams to the
    /// terminal as it grows; several are printed by the caller once all are done.
    fn samples_of_prompt<B: Gpt2Backend>(
        &self,
        generator: &Generator<'_, B>,
        prompt_index: usize,
        prompt_ids: &[u32],
        batch: usize,
        pace: &mut Pace,
    ) -> Vec<Generated> {
        let (samples, seed) = (self.cli.num_samples as usize, self.cli.seed);
        let mut generated = Vec::with_capacity(samples);
        for first in (0..samples).step_by(batch) {
            // Sample i of prompt p always draws from stream (p, i) of the seed.
            let mut rngs: Vec<ChaCha8Rng> = (first..samples.min(first + batch))
                .map(|i| {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    rng.set_stream(((prompt_index as u64) << 32) | i as u64);
                    rng
                })
                .collect();
            let mut terminal = Stream::new(samples == 1, &self.cli.stop);
            let batch = generator.generate(prompt_ids, &mut rngs, &mut |_, text| terminal.grow(text), pace);
            if let [only] = batch.as_slice() {
                terminal.finish(&only.text);
            }
            generated.extend(batch);
        }
        generated
    }

    fn record(
        &self,
        prompt: &str,
        index: usize,
        sample: Generated,
        recited: Recitation,
        decoding: &Decoding,
    ) -> SampleRecord {
        let cli = self.cli;
        SampleRecord {
            prompt: prompt.to_string(),
            text: sample.text,
            tokens: sample.tokens,
            finish: sample.finish,
            recited,
            sample: index as u64,
            model: cli.model.clone(),
            seed: cli.seed,
            max_new_tokens: cli.max_new_tokens,
            decoding: decoding.clone(),
            inputs_hash: self.inputs_hash.to_string(),
        }
    }
}

/// Whether `sample` of `prompt_ids` recites a joke of `against` (with the end-of-text token
/// when it ended on one, as the training jokes have it).
fn recitation(against: Option<&TrainingJokes>, prompt_ids: &[u32], sample: &Generated, eos_id: u32) -> Recitation {
    let Some(jokes) = against else { return Recitation::NotChecked };
    let mut sequence = prompt_ids.to_vec();
    sequence.extend(&sample.tokens);
    if sample.finish == Finish::Eos {
        sequence.push(eos_id);
    }
    jokes.check(&sequence).map_or(Recitation::New, Recitation::Recited)
}

/// The attention cache a batch of samples may take, in bytes: its keys and values grow with
/// every token, and a batch of all the samples at once would not fit (200,000 samples of
/// gpt2-medium would ask for terabytes).
const BATCH_CACHE_BYTES: usize = 2 << 30;
const MAX_BATCH: usize = 64;

/// How many samples to decode together: as many as fit in [`BATCH_CACHE_BYTES`] of cache.
fn samples_per_batch(config: &gpt2::Gpt2Config, max_new_tokens: usize) -> usize {
    let positions = cache_positions(config, max_new_tokens);
    let per_sample = config.kv_cache_bytes(1, positions) as usize;
    (BATCH_CACHE_BYTES / per_sample.max(1)).clamp(1, MAX_BATCH)
}

/// The positions a sample's cache is sized for: the new tokens and a prompt of up to half the
/// model's positions.
fn cache_positions(config: &gpt2::Gpt2Config, max_new_tokens: usize) -> usize {
    config.n_positions.min(max_new_tokens + config.n_positions / 2)
}

/// A prompt as a notice shows it: its first 40 characters.
fn shown(prompt: &str) -> String {
    prompt.chars().take(40).collect()
}

/// The prompt's tokens as the model can read them. A prompt as long as the model's positions
/// leaves no room to generate: like nanoGPT, keep only its end (with room for
/// --max-new-tokens, up to half the positions), and say so.
fn fit_prompt(ids: &[u32], n_positions: usize, max_new_tokens: usize, prompt: &str) -> Result<Vec<u32>> {
    if ids.is_empty() {
        bail!("the prompt {prompt:?} has no tokens");
    }
    if ids.len() < n_positions {
        return Ok(ids.to_vec());
    }
    let keep = n_positions - max_new_tokens.min(n_positions / 2);
    eprintln!(
        "notice: the prompt {:?}… has {} tokens but the model reads at most {n_positions}: continuing its last {keep} tokens",
        shown(prompt),
        ids.len()
    );
    Ok(ids[ids.len() - keep..].to_vec())
}

/// One sample printed to the terminal as it grows. The last bytes are held back while they
/// could still be the start of a stop text, so the terminal shows what the file gets.
struct Stream {
    on: bool,
    hold: usize,
    printed: usize,
}

impl Stream {
    fn new(on: bool, stop: &[String]) -> Self {
        Self { on, hold: stop.iter().map(String::len).max().unwrap_or(0), printed: 0 }
    }

    fn grow(&mut self, text: &str) {
        let mut end = text.len().saturating_sub(self.hold);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.print(text, end);
    }

    fn finish(&mut self, text: &str) {
        if self.on {
            self.print(text, text.len());
            println!();
        }
    }

    fn print(&mut self, text: &str, end: usize) {
        if self.on && end > self.printed && text.is_char_boundary(self.printed) {
            print!("{}", &text[self.printed..end]);
            io::stdout().flush().ok();
            self.printed = end;
        }
    }
}

/// The training jokes of a prepared dataset, refusing one tokenized differently from the model.
fn training_jokes(dir: &Path, tokenizer: &Path) -> Result<TrainingJokes> {
    let dataset = shards::Dataset::open(dir)?;
    dataset.check_tokenizer(tokenizer)?;
    TrainingJokes::open(dir)
}
