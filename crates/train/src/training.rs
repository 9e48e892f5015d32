//! A training run: set up data, model, optimizer and run directory; the step loop; the outputs.

use crate::{
    batches::{Batching, EpochOrder, MicroBatch, StepPlan, TokenCounts},
    checkpoint::{self, TrainState},
    cli::{RunPaths, TrainArgs},
    compatibility,
    evaluate::{evaluate, Evaluation},
    metrics::{EvalMetrics, MetricsLog, StepMetrics},
    optimizer::{AdamWSettings, GroupedAdamW},
    plot,
    run_dir::{self, Plan, RunInfo, FINAL_DIR, METRICS_FILE, PLOT_FILE, RUN_DIR},
    schedule::LrSchedule,
    workers::{self, Peer},
};
use anyhow::{bail, Context, Result};
use artifact::{OutputLock, Staging};
use burn::{
    backend::Autodiff,
    module::{AutodiffModule, ModuleVisitor, Param},
    optim::GradientsParams,
    prelude::*,
    tensor::{backend::AutodiffBackend, Transaction},
};
use gpt2::{DropoutMasks, Gpt2, Gpt2Backend, Gpt2Config};
use indicatif::{ProgressBar, ProgressStyle};
use shards::{Dataset, SplitRows};
use stage::{
    device::{self, Device, OnDevices},
    gpu_memory::MemoryNeed,
};
use std::{
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// Set by Ctrl-C: the run saves a checkpoint after the current step and stops.
pub static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
pub struct Summary {
    /// The run directory (--out).
    pub run_dir: PathBuf,
    /// Optimizer steps completed.
    pub steps: u64,
    pub total_steps: u64,
    /// The last step's training loss.
    pub loss: Option<f64>,
    /// Validation at the end (none when interrupted).
    pub validation: Option<Evaluation>,
    /// The latest checkpoint.
    pub checkpoint: PathBuf,
    /// `RUN/final`, once the run is complete.
    pub exported: Option<PathBuf>,
    /// The run in --out was already finished with the same inputs: nothing was done.
    pub up_to_date: bool,
}

pub fn train(args: &TrainArgs) -> Result<Summary> {
    let RunPaths { data, init, out } = args.paths()?;
    RUN_DIR.check_replaceable(out).context("train --out")?;
    let dataset = Dataset::open(data)?;
    let train_rows = dataset.read_split("train")?;
    let val_rows = dataset.read_split("val")?;
    if train_rows.is_empty() {
        bail!("{}: the train split has no rows", data.display());
    }
    if args.micro_batch as usize > train_rows.len() {
        bail!(
            "--micro-batch {} is more rows than the train split has ({}): every micro-batch is padded up to \
             --micro-batch rows, so use at most {}",
            args.micro_batch,
            train_rows.len(),
            train_rows.len()
        );
    }
    if val_rows.is_empty() {
        eprintln!(
            "notice: {} has no validation rows (prepared with --val-fraction 0): no validation loss will be reported",
            data.display()
        );
    }
    let initial = Initial::describe(args, init)?;
    let need = MemoryNeed::training(&initial.config, args.micro_batch as usize, dataset.manifest.seq_len as usize);
    let devices = match args.devices.as_slice() {
        [] => vec![device::resolve(args.device, "train", &need)?],
        listed => device::resolve_all(listed, "train", &need)?,
    };
    check_workers(args, devices.len())?;
    devices.iter().try_for_each(|device| device.check_precision(args.precision))?;
    // From here on the run directory is ours alone: a second train on it is refused.
    let _lock = OutputLock::acquire(out, "train")?;
    let run = Run { args, init, out, dataset: &dataset, train_rows: &train_rows, val_rows: &val_rows };
    let work = Training { run, devices: &devices, initial };
    match panic::catch_unwind(AssertUnwindSafe(|| device::dispatch_all(&devices, work))) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if message.to_lowercase().contains("out of memory") {
                bail!(
                    "the device ran out of memory with --micro-batch {} and rows of up to {} tokens: lower --micro-batch \
                     (raise --grad-accum to keep the same step), or prepare shorter rows (prepare --seq-len)",
                    args.micro_batch,
                    dataset.manifest.seq_len
                );
            }
            panic::resume_unwind(payload)
        }
    }
}

/// What several devices need of a run: a micro-batch for each in every step.
fn check_workers(args: &TrainArgs, workers: usize) -> Result<()> {
    if workers == 1 {
        return Ok(());
    }
    if (args.grad_accum as usize) < workers {
        let micro_batches = match args.grad_accum {
            1 => "1 micro-batch".to_string(),
            n => format!("{n} micro-batches"),
        };
        bail!(
            "--grad-accum {} with {workers} devices: a step has {micro_batches}, so a device would have none; use \
             --grad-accum {workers} or more (a multiple of {workers} keeps every device busy)",
            args.grad_accum
        );
    }
    Ok(())
}

/// What every part of a run reads: its flags, where it writes, its data.
#[derive(Clone, Copy)]
struct Run<'a> {
    args: &'a TrainArgs,
    /// --init: the model, or `random:` and a preset or config.
    init: &'a str,
    /// --out: the run directory.
    out: &'a Path,
    dataset: &'a Dataset,
    train_rows: &'a SplitRows,
    val_rows: &'a SplitRows,
}

/// Setting a run up on the backend chosen: the model, the optimizer, the run directory; then a
/// worker for each device.
struct Training<'a> {
    run: Run<'a>,
    devices: &'a [Device],
    initial: Initial,
}

impl OnDevices for Training<'_> {
    type Output = Result<Summary>;

    fn run<B: Gpt2Backend>(self, devices: Vec<B::Device>) -> Self::Output {
        let device = &devices[0];
        let run = self.run;
        let args = run.args;
        let initial = self.initial;
        let config = &initial.config;
        compatibility::check(run.dataset, config, run.init, initial.dir.as_deref())?;

        let plan = StepPlan {
            rows: run.train_rows.len(),
            micro_batch: args.micro_batch as usize,
            grad_accum: args.grad_accum as usize,
            shuffle: !args.no_shuffle,
            seed: args.seed,
        };
        let total_steps = args.max_steps.unwrap_or(args.epochs as u64 * plan.steps_per_epoch());
        let info = RunInfo {
            args: args.clone(),
            data_lineage: run.dataset.manifest.lineage.clone(),
            init_hash: initial.hash.clone(),
            model_config: config.to_hf_json(),
            device: self.devices.iter().map(Device::to_string).collect::<Vec<_>>().join(","),
            rows_per_step: plan.rows_per_step(),
            steps_per_epoch: plan.steps_per_epoch(),
            total_steps,
        };
        let start = run_dir::plan(run.out, &info)?;
        if start == Plan::UpToDate {
            let checkpoint = checkpoint::list(run.out)?.pop().unwrap_or_default();
            let exported = Some(run.out.join(FINAL_DIR));
            return Ok(Summary {
                run_dir: run.out.to_path_buf(),
                steps: total_steps,
                total_steps,
                loss: None,
                validation: None,
                checkpoint,
                exported,
                up_to_date: true,
            });
        }
        if args.warmup_steps > total_steps {
            eprintln!(
                "warning: --warmup-steps {} is longer than the run ({total_steps} steps): the learning rate never reaches --lr {}",
                args.warmup_steps, args.lr
            );
        }
        // Checked before anything on disk changes: a damaged checkpoint stops the run here.
        let resume_from = match start {
            Plan::Resume => checkpoint::latest_intact(run.out)?,
            _ => None,
        };

        let settings =
            AdamWSettings { beta1: args.beta1, beta2: args.beta2, eps: args.eps, weight_decay: args.weight_decay };
        // Loaded only now: a run that is up to date never reads the weights. And the run
        // directory is written only once they have loaded: bad weights leave it as it was.
        // Loaded once, then copied to the other devices: replicas initialised on their own would
        // each draw other random weights.
        let model = initial.load::<Autodiff<B>>(args, device)?;
        if let Plan::Replace { differences } = &start {
            run_dir::set_aside(run.out, differences, args.delete_replaced)?;
        }
        run_dir::write(run.out, &info)?;
        let schedule = LrSchedule { kind: args.schedule, peak: args.lr, warmup_steps: args.warmup_steps, total_steps };
        let steps = StepLoop {
            run,
            device: self.devices[0],
            config,
            plan,
            schedule,
            total_steps,
            batching: Batching {
                rows: plan.micro_batch,
                pad_id: run.dataset.manifest.tokenizer.eos_id,
                doc_mask: args.doc_mask,
            },
        };
        let mut replicas: Vec<_> = devices[1..].iter().map(|device| model.clone().fork(device)).collect();
        replicas.insert(0, model);
        let mut finished = workers::run::<B, _, _>(&devices, replicas, |peer, device, mut model| {
            let mut optimizer = GroupedAdamW::new(settings);
            let mut state = TrainState { step: 0, tokens: 0, elapsed_s: 0.0 };
            if let Some(latest) = &resume_from {
                (model, optimizer, state) = checkpoint::load(latest, model, optimizer, device)?;
                if peer.is_first() {
                    eprintln!("resuming from {} (step {} of {total_steps})", latest.display(), state.step);
                }
            }
            steps.run(peer, model, optimizer, state, resume_from.clone(), device)
        })?;
        if let Some(rank) = finished.iter().position(|worker| worker.weights != finished[0].weights) {
            bail!(
                "the replicas diverged: worker {rank} ended with other weights than worker 0 (a bug; please report it)"
            );
        }
        Ok(finished.swap_remove(0).summary.expect("the first worker reports the run"))
    }
}

/// What a worker ends with.
struct Finished {
    /// The run's summary, from the first worker.
    summary: Option<Summary>,
    /// With several workers, the sha256 of the worker's weights, which every replica shares.
    weights: Option<String>,
}

impl Finished {
    fn new<B: AutodiffBackend>(peer: Peer, summary: Option<Summary>, optimizer: &GroupedAdamW<B>) -> Self {
        Self { summary, weights: (peer.count > 1).then(|| optimizer.weights_sha256()).flatten() }
    }
}

/// The starting weights, described before they are read: their config and their name.
struct Initial {
    /// With --dropout applied.
    config: Gpt2Config,
    /// Names the weights: `sha256:<weights file hash>`, or `random:<preset or config hash> seed <seed>`.
    hash: String,
    /// The model directory, for pretrained weights; none for random ones.
    dir: Option<PathBuf>,
}

impl Initial {
    fn describe(args: &TrainArgs, spec: &str) -> Result<Self> {
        let (mut config, hash, dir) = match spec.strip_prefix("random:") {
            Some(source) => {
                // A config file is named by its contents, so that editing it makes a new run.
                let (config, name) = match Gpt2Config::preset(source) {
                    Some(config) => (config, source.to_string()),
                    None => {
                        let text = std::fs::read_to_string(source)
                            .with_context(|| format!("--init {spec}: neither a preset (gpt2, gpt2-medium, gpt2-large, gpt2-xl) nor a readable config.json"))?;
                        let config = Gpt2Config::from_hf_json(
                            &serde_json::from_str(&text).with_context(|| format!("{source}: not JSON"))?,
                        )
                        .with_context(|| format!("{source}: not a GPT-2 config.json"))?;
                        (config, format!("config sha256:{}", artifact::sha256_bytes(text.as_bytes())))
                    }
                };
                (config, format!("random:{name} seed {}", args.seed), None)
            }
            None => {
                let dir = stage::model::locate(spec)?;
                (gpt2::hf::read_config(&dir)?, gpt2::hf::weights_sha256(&dir)?, Some(dir))
            }
        };
        if let Some(p) = args.dropout {
            (config.embd_pdrop, config.attn_pdrop, config.resid_pdrop) = (p, p, p);
        }
        Ok(Self { config, hash, dir })
    }

    /// The weights themselves, with --dropout and --precision applied.
    fn load<B: Backend>(&self, args: &TrainArgs, device: &B::Device) -> Result<Gpt2<B>> {
        let model = match &self.dir {
            Some(dir) => gpt2::hf::load_dir(dir, device)?.1,
            None => {
                B::seed(device, args.seed);
                let model = self.config.init(device);
                // burn draws random weights when a parameter is first read, and a copy of a
                // parameter not yet read draws its own: drawn now, the replicas of a
                // data-parallel run are copies of one model.
                model.visit(&mut DrawWeights);
                model
            }
        };
        let model = match args.dropout {
            Some(p) => model.with_dropout(p),
            None => model,
        };
        Ok(model.with_precision(args.precision))
    }
}

/// Reads every parameter, which draws the random weights of those not drawn yet.
struct DrawWeights;

impl<B: Backend> ModuleVisitor<B> for DrawWeights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        param.val();
    }
}

/// The optimizer steps of a run, from where it starts to its export.
struct StepLoop<'a> {
    run: Run<'a>,
    device: Device,
    config: &'a Gpt2Config,
    plan: StepPlan,
    schedule: LrSchedule,
    total_steps: u64,
    batching: Batching,
}

impl StepLoop<'_> {
    /// The steps of one worker (of one, or of several: see [`workers`]). The first worker alone
    /// reports progress, writes metrics and checkpoints, validates and exports.
    fn run<B: Gpt2Backend>(
        &self,
        peer: Peer,
        model: Gpt2<Autodiff<B>>,
        mut optimizer: GroupedAdamW<Autodiff<B>>,
        mut state: TrainState,
        mut last_checkpoint: Option<PathBuf>,
        device: &B::Device,
    ) -> Result<Finished> {
        let args = self.run.args;
        let mut metrics = match peer.is_first() {
            true => Some(MetricsLog::open(&self.run.out.join(METRICS_FILE), state.step)?),
            false => None,
        };
        let progress = match peer.is_first() {
            true => progress_bar(self.total_steps, state.step),
            false => ProgressBar::hidden(),
        };
        let mut epoch_order = EpochOrder::default();
        let mut loss = None;
        let mut pace = Pace::default();
        let mut device_reserved = None;
        let mut model = optimizer.adopt(model);
        // Agreed at the end of each step (a request made during it stops the run after it).
        let mut stop = false;
        while state.step < self.total_steps {
            if stop {
                let summary = match peer.is_first() {
                    true => {
                        let saved =
                            checkpoint::save(self.run.out, &model, &optimizer, state, args.keep_checkpoints as usize)?;
                        progress.abandon_with_message(format!("interrupted: saved {}", saved.display()));
                        Some(Summary {
                            run_dir: self.run.out.to_path_buf(),
                            steps: state.step,
                            total_steps: self.total_steps,
                            loss,
                            validation: None,
                            checkpoint: saved,
                            exported: None,
                            up_to_date: false,
                        })
                    }
                    false => None,
                };
                return Ok(Finished::new(peer, summary, &optimizer));
            }
            let step = state.step;
            let epoch = step / self.plan.steps_per_epoch();
            let started = Instant::now();
            // Every worker counts the whole step's tokens, so that each micro-batch is weighted
            // as one worker would weight it; each builds only its own micro-batches.
            let step_rows: Vec<&[usize]> = self.plan.micro_batches(step, epoch_order.of(epoch, &self.plan)).collect();
            let counts = step_rows
                .iter()
                .map(|rows| TokenCounts::of(self.run.train_rows, rows))
                .fold(TokenCounts::default(), |total, counts| total + counts);
            let step_targets = counts.targets.max(1);
            let batches: Vec<(usize, MicroBatch<Autodiff<B>>)> = step_rows
                .iter()
                .enumerate()
                .filter(|&(index, _)| peer.takes(index))
                .map(|(index, rows)| (index, MicroBatch::new(self.run.train_rows, rows, &self.batching, device)))
                .collect();

            // Each micro-batch's mean is weighted by its share of the step's tokens, so the
            // summed gradients are those of the token mean over the whole step.
            let mut gradients = optimizer.gradients(&model);
            let mut step_loss: Option<Tensor<B, 1>> = None;
            for (index, batch) in batches {
                let share = batch.targets as f64 / step_targets as f64;
                // Dropout's masks are named by the step and the micro-batch's place in it: the
                // same on any worker, and in a resumed run as in an uninterrupted one.
                let masks = DropoutMasks::new(args.seed, step, index);
                let loss = batch.training_loss(&model, masks, optimizer.rounded_weights(model.precision()));
                let weighted = loss * share;
                let value = weighted.clone().inner();
                step_loss = Some(match step_loss.take() {
                    Some(total) => total + value,
                    None => value,
                });
                gradients = gradients.add(&model, GradientsParams::from_grads(weighted.backward(), &model));
            }
            let lr = self.schedule.at(step);
            let grad_norm;
            (model, grad_norm) = optimizer.step(lr, model, gradients, args.max_grad_norm, &peer)?;
            // The step's one wait for the device: its loss and gradient norm, read together
            // after the update is queued. A non-finite one stops the run before anything of
            // this step is saved, so the update it made in memory is never kept.
            let step_loss = step_loss.unwrap_or_else(|| Tensor::zeros([1], device));
            let requested = STOP_REQUESTED.load(Ordering::SeqCst);
            let [step_loss, grad_norm, stop_votes] = if peer.count == 1 {
                let [step_loss, grad_norm] = read_together([step_loss, grad_norm]);
                [step_loss, grad_norm, f64::from(u8::from(requested))]
            } else {
                // The workers' losses are summed, and with them their stop requests: every
                // worker stops after the same step.
                let vote = Tensor::from_floats([f32::from(u8::from(requested))], device);
                let summed = peer.sum(Tensor::cat(vec![step_loss, vote], 0))?;
                read_together([summed.clone().slice(0..1), grad_norm, summed.slice(1..2)])
            };
            stop = stop_votes > 0.0;
            if !step_loss.is_finite() || !grad_norm.is_finite() {
                let kept = last_checkpoint.as_ref().map_or("no checkpoint yet".to_string(), |p| {
                    format!("the last good checkpoint is {}", p.display())
                });
                bail!(
                    "step {}: the loss is {step_loss} and the gradient norm {grad_norm}: training diverged, so this step was \
                     not saved ({kept}); lower --lr or raise --warmup-steps, and check the data",
                    step + 1
                );
            }

            let seconds = started.elapsed().as_secs_f64();
            state = TrainState {
                step: step + 1,
                tokens: state.tokens + counts.real_tokens as u64,
                elapsed_s: state.elapsed_s + seconds,
            };
            loss = Some(step_loss);
            let Some(metrics) = &mut metrics else { continue };
            let tokens_per_s = counts.real_tokens as f64 / seconds;
            device_reserved = device_reserved.max(B::allocator_memory(device).map(|memory| memory.reserved));
            metrics.write_step(&StepMetrics {
                step: state.step,
                loss: step_loss,
                lr,
                grad_norm,
                tokens_per_s,
                elapsed_s: state.elapsed_s,
                device_reserved_mib: device_reserved.map(|bytes| bytes as f64 / f64::from(1 << 20)),
            })?;
            progress.set_message(format!("loss {step_loss:.4} · {tokens_per_s:.0} tok/s"));
            progress.inc(1);
            if self.device == Device::Cpu {
                if let Some(notice) = pace.long_cpu_run(seconds, self.total_steps - state.step) {
                    progress.suspend(|| eprintln!("{notice}"));
                }
            }

            let last = state.step == self.total_steps;
            if !last && args.eval_every > 0 && state.step.is_multiple_of(args.eval_every) {
                if let Some(evaluation) = self.validate(&model, device) {
                    metrics.write_eval(&eval_line(state.step, evaluation))?;
                    progress.println(format!(
                        "step {}: validation loss {:.4}, perplexity {:.2}",
                        state.step, evaluation.loss, evaluation.perplexity
                    ));
                }
            }
            if last || (args.save_every > 0 && state.step.is_multiple_of(args.save_every)) {
                last_checkpoint =
                    Some(checkpoint::save(self.run.out, &model, &optimizer, state, args.keep_checkpoints as usize)?);
            }
        }
        let Some(metrics) = &mut metrics else { return Ok(Finished::new(peer, None, &optimizer)) };
        progress.finish_and_clear();

        let validation = self.validate(&model, device);
        if let Some(evaluation) = validation {
            metrics.write_eval(&eval_line(state.step, evaluation))?;
        }
        let exported = self.export(&model)?;
        plot::write(&self.run.out.join(METRICS_FILE), &self.run.out.join(PLOT_FILE))?;
        let checkpoint = last_checkpoint.expect("the last step saves a checkpoint");
        let summary = Summary {
            run_dir: self.run.out.to_path_buf(),
            steps: state.step,
            total_steps: self.total_steps,
            loss,
            validation,
            checkpoint,
            exported: Some(exported),
            up_to_date: false,
        };
        Ok(Finished::new(peer, Some(summary), &optimizer))
    }

    /// None when the dataset has no validation rows.
    fn validate<B: Gpt2Backend>(&self, model: &Gpt2<Autodiff<B>>, device: &B::Device) -> Option<Evaluation> {
        evaluate(&model.valid(), self.run.val_rows, &self.batching, device)
    }

    /// `RUN/final/` in Hugging Face layout with the dataset's tokenizer, swapped in whole.
    fn export<B: Backend>(&self, model: &Gpt2<Autodiff<B>>) -> Result<PathBuf> {
        let target = self.run.out.join(FINAL_DIR);
        artifact::ensure_free(self.run.out, model.num_params() as u64 * 4, "the exported model")?;
        let staging = Staging::new(&target)?;
        gpt2::hf::save(&model.valid(), self.config, staging.path(), Some(&self.run.dataset.tokenizer_path()))?;
        staging.commit()?;
        Ok(target)
    }
}

/// A CPU run longer than this gets a notice: gpt2-medium on a CPU takes days.
const LONG_CPU_RUN: Duration = Duration::from_secs(3 * 3600);
/// Steps timed before the estimate: the first ones are the slowest (allocations, caches).
const STEPS_BEFORE_ESTIMATE: u32 = 3;

/// The pace of the steps run so far, for the long-run notice (given at most once).
#[derive(Debug, Default)]
struct Pace {
    steps: u32,
    seconds: f64,
    noticed: bool,
}

impl Pace {
    /// After a step of `seconds` with `steps_left` to go: the notice, once, when the run left
    /// is estimated to take longer than [`LONG_CPU_RUN`].
    fn long_cpu_run(&mut self, seconds: f64, steps_left: u64) -> Option<String> {
        self.steps += 1;
        self.seconds += seconds;
        if self.noticed || self.steps < STEPS_BEFORE_ESTIMATE {
            return None;
        }
        self.noticed = true;
        let per_step = self.seconds / self.steps as f64;
        let left = Duration::from_secs_f64(per_step * steps_left as f64);
        (left > LONG_CPU_RUN).then(|| {
            format!(
                "notice: at {per_step:.1} s a step, the {steps_left} steps left take about {:.0} hours on the CPU. \
                 On a machine with an NVIDIA GPU, a CUDA build trains many times faster (`make train FEATURES=cuda`); \
                 `make demo` runs the whole pipeline on a small model in about a minute.",
                left.as_secs_f64() / 3600.0
            )
        })
    }
}

/// One-element tensors as numbers, with a single wait for the device.
fn read_together<B: Backend, const N: usize>(tensors: [Tensor<B, 1>; N]) -> [f64; N] {
    let data = tensors.into_iter().fold(Transaction::default(), |reading, t| reading.register(t)).execute();
    let values: Vec<f64> = data.iter().map(|d| d.iter::<f64>().next().expect("a one-element tensor")).collect();
    values.try_into().expect("one value per tensor")
}

fn eval_line(step: u64, evaluation: Evaluation) -> EvalMetrics {
    EvalMetrics { step, eval: true, loss: evaluation.loss, perplexity: evaluation.perplexity }
}

fn progress_bar(total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(total).with_position(done);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} · {msg} · ETA {eta}")
            .expect("template parses")
            .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_cpu_run_is_noticed_once_after_the_first_steps() {
        let mut pace = Pace::default();
        // gpt2-medium on two cores: ~60 s a step, 1,000 steps to go.
        assert_eq!(pace.long_cpu_run(60.0, 1_000), None);
        assert_eq!(pace.long_cpu_run(60.0, 999), None);
        let notice = pace.long_cpu_run(60.0, 998).expect("about 17 hours is a long run");
        assert!(notice.contains("at 60.0 s a step, the 998 steps left take about 17 hours"), "{notice}");
        assert!(notice.contains("`make train FEATURES=cuda`") && notice.contains("`make demo`"), "{notice}");
        assert_eq!(pace.long_cpu_run(60.0, 997), None, "said once");
    }

    #[test]
    fn a_short_run_gets_no_notice() {
        let mut pace = Pace::default();
        let notices: Vec<_> = (0..10).filter_map(|step| pace.long_cpu_run(2.0, 5_000 - step)).collect();
        assert!(notices.is_empty(), "{notices:?}"); // under 3 hours
    }
}
