//! Whether the chosen shape fits in the GPU's free memory, checked before the first step: a
//! model too large for the card otherwise fails minutes in, after CUDA has compiled its
//! kernels, with the runtime's "out of memory" panic.

use artifact::size;
use gpt2::Gpt2Config;
use std::process::Command;

/// Bytes in an f32.
const F32: u64 = 4;

/// What a run needs on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Needed whatever the backend does with the activations.
    pub certain: u64,
    /// What `certain` is made of, in words.
    pub certain_is: String,
    /// `certain` plus an estimate of the activations (or the attention cache): a run above
    /// it may still fit, as the estimate is rough.
    pub estimate: u64,
    /// What the user can change when it does not fit.
    pub advice: String,
}

impl MemoryNeed {
    /// Training. Certain: the f32 weights, AdamW's two moments, the step's summed gradients and
    /// a micro-batch's own, all held at the end of each backward pass (20 bytes a parameter).
    /// The estimate adds to the first four what a micro-batch's forward pass keeps for its
    /// backward pass (16 f32 values a token, layer and unit of width, BENCHMARKS.md's "Memory
    /// kept for the backward pass", and the logits twice), and two fifths for what CubeCL
    /// reserves beyond what is in use: on the `cuda-compile` device, which runs CubeCL's memory
    /// management, these peaks were within 3% of the measured ones, and the reserves 1.03-1.37×
    /// the peaks (BENCHMARKS.md, "Memory a training run holds on the card").
    pub fn training(config: &Gpt2Config, micro_batch: usize, seq_len: usize) -> Self {
        let parameters = config.num_params() as u64 * F32;
        let certain = 5 * parameters;
        let tokens = (micro_batch * seq_len) as u64;
        let activations = tokens * config.n_layer as u64 * 16 * config.n_embd as u64 * F32;
        let logits = 2 * tokens * config.vocab_size as u64 * F32;
        let peak = certain.max(4 * parameters + activations + logits);
        MemoryNeed {
            certain,
            certain_is: "the model's weights, AdamW's two moments, the step's gradients and a micro-batch's, in f32"
                .into(),
            estimate: peak * 7 / 5,
            advice: format!(
                "lower --micro-batch (now {micro_batch}) and raise --grad-accum to keep the same step, prepare \
                 shorter rows (prepare --seq-len, now {seq_len}), or train a smaller model"
            ),
        }
    }

    /// Evaluation (forward only, `rows` at a time): the f32 weights, plus the logits and their
    /// log-softmax, and one layer's activations (its attention scores and weights, and about
    /// eight hidden states) alive at a time.
    pub fn evaluation(config: &Gpt2Config, rows: usize, seq_len: usize) -> Self {
        let certain = config.num_params() as u64 * F32;
        let tokens = (rows * seq_len) as u64;
        let logits = 2 * tokens * config.vocab_size as u64 * F32;
        let layer = tokens * (2 * config.n_head * seq_len + 8 * config.n_embd) as u64 * F32;
        MemoryNeed {
            certain,
            certain_is: "the model's weights in f32".into(),
            estimate: certain + logits + layer,
            advice: format!("lower --micro-batch (now {rows}), or evaluate a smaller model"),
        }
    }

    /// Sampling: the f32 weights, plus the attention cache of `batch` samples of `seq_len`
    /// tokens (keys and values, every layer).
    pub fn sampling(config: &Gpt2Config, batch: usize, seq_len: usize) -> Self {
        let certain = config.num_params() as u64 * F32;
        MemoryNeed {
            certain,
            certain_is: "the model's weights in f32".into(),
            estimate: certain + config.kv_cache_bytes(batch, seq_len),
            advice: "lower --num-samples or --max-new-tokens (fewer samples are decoded together), or sample a smaller model".into(),
        }
    }
}

/// How a need compares with what the device has free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    Fits,
    /// Only the estimate is above the free memory: worth a warning, not a refusal.
    MayNotFit(String),
    /// Even the certain part is above the free memory.
    DoesNotFit(String),
}

/// Judge `need` against `free` bytes on `device`.
pub fn judge(need: &MemoryNeed, free: u64, device: &str) -> Fit {
    if need.certain > free {
        Fit::DoesNotFit(format!(
            "{device} has {} free, and {} alone take {}: {}",
            size(free),
            need.certain_is,
            size(need.certain),
            need.advice
        ))
    } else if need.estimate > free {
        Fit::MayNotFit(format!(
            "{device} has {} free and this run needs about {} ({} {}, the rest an estimate of the activations): \
             it may run out of memory; if it does, {}",
            size(free),
            size(need.estimate),
            size(need.certain),
            need.certain_is,
            need.advice
        ))
    } else {
        Fit::Fits
    }
}

/// Free memory of CUDA device `index` as `nvidia-smi` reports it; `None` when it cannot say.
pub fn free_bytes(index: usize) -> Option<u64> {
    let id = nvidia_smi_id(index, std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref());
    free_bytes_by("nvidia-smi", &id)
}

/// `nvidia-smi`'s name for CUDA's device `index`: CUDA numbers only the devices in
/// CUDA_VISIBLE_DEVICES (indices or UUIDs, which `nvidia-smi -i` takes as they are).
fn nvidia_smi_id(index: usize, visible: Option<&str>) -> String {
    visible
        .and_then(|list| list.split(',').map(str::trim).filter(|id| !id.is_empty()).nth(index))
        .map_or_else(|| index.to_string(), String::from)
}

fn free_bytes_by(program: &str, id: &str) -> Option<u64> {
    let out = Command::new(program)
        .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", id])
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let mib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some(mib << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn gpt2_medium_training_needs_20_bytes_a_parameter_before_activations() {
        let medium = Gpt2Config::preset("gpt2-medium").unwrap();
        let need = MemoryNeed::training(&medium, 1, 1024);
        assert_eq!(need.certain, 354_823_168 * 20);
        // CubeCL reserved 7.43 GiB (f32) and 8.41 GiB (bf16) for it on the cuda-compile device,
        // which an 11 GiB card has room for.
        assert!((9.9..10.5).contains(&(need.estimate as f64 / GIB as f64)), "{need:?}");
        // Twice the rows, twice the activations and logits.
        let two = MemoryNeed::training(&medium, 2, 1024);
        let held = 4 * 354_823_168 * 4 * 7 / 5;
        assert!((two.estimate - held).abs_diff(2 * (need.estimate - held)) <= 2, "{two:?}");
        // Short rows keep less than a micro-batch's gradients: the certain part is the peak.
        let short = MemoryNeed::training(&medium, 1, 64);
        assert_eq!(short.estimate, short.certain * 7 / 5);
    }

    #[test]
    fn a_card_too_small_is_refused_and_a_tight_one_warned_about() {
        let medium = Gpt2Config::preset("gpt2-medium").unwrap();
        let need = MemoryNeed::training(&medium, 4, 1024);
        let Fit::DoesNotFit(message) = judge(&need, 4 * GIB, "cuda:0") else { panic!("4 GiB is too little") };
        assert!(message.starts_with("cuda:0 has 4.0 GiB free, and the model's weights"), "{message}");
        assert!(message.contains("take 6.6 GiB: lower --micro-batch (now 4)"), "{message}");
        let Fit::MayNotFit(message) = judge(&need, 12 * GIB, "cuda:0") else { panic!("12 GiB is tight") };
        assert!(message.contains("it may run out of memory; if it does, lower --micro-batch"), "{message}");
        assert_eq!(judge(&need, 80 * GIB, "cuda:0"), Fit::Fits);
    }

    #[test]
    fn sampling_needs_the_weights_and_the_cache() {
        let gpt2 = Gpt2Config::preset("gpt2").unwrap();
        let need = MemoryNeed::sampling(&gpt2, 8, 1024);
        assert_eq!(need.certain, 124_439_808 * 4);
        assert_eq!(need.estimate - need.certain, 2 * 12 * 8 * 1024 * 768 * 4);
    }

    #[test]
    fn cuda_numbers_only_the_visible_devices() {
        assert_eq!(nvidia_smi_id(1, None), "1");
        assert_eq!(nvidia_smi_id(1, Some("3,5")), "5");
        assert_eq!(nvidia_smi_id(0, Some("GPU-8a1c")), "GPU-8a1c");
        assert_eq!(nvidia_smi_id(2, Some("3,5")), "2");
    }

    #[cfg(unix)]
    #[test]
    fn free_memory_is_read_from_nvidia_smi() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let stand_in = dir.path().join("nvidia-smi");
        // Prints 2048 MiB when asked the right question about device 1, fails otherwise.
        std::fs::write(
            &stand_in,
            "#!/bin/sh\n[ \"$*\" = '--query-gpu=memory.free --format=csv,noheader,nounits -i 1' ] && echo 2048\n",
        )
        .unwrap();
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = stand_in.to_str().unwrap();
        assert_eq!(free_bytes_by(program, "1"), Some(2 * GIB));
        assert_eq!(free_bytes_by(program, "0"), None);
        assert_eq!(free_bytes_by("/nonexistent/nvidia-smi", "1"), None);
    }
}
