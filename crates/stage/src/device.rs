//! Choosing where a stage runs: `--device auto|cpu|cuda[:N]`. `auto` (the default) takes CUDA
//! where the build has it, a GPU is present and CUDA's run-time pieces are found, and otherwise
//! the CPU with a notice that says why. An explicit `cuda` that cannot run is an error that
//! says what to do.

use crate::cuda_preflight;
use anyhow::{bail, Result};
#[cfg(feature = "cuda")]
use gpt2::Gpu;
use gpt2::{Cpu, Gpt2Backend};
use std::{fmt, str::FromStr};

/// What `--device` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

/// Where a stage runs, once chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => match text.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(index)) => Ok(DeviceChoice::Cuda(index)),
                _ => bail!("unknown device `{text}` (expected auto, cpu, cuda or cuda:N)"),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Whether the NVIDIA driver's device nodes exist on this machine.
fn gpu_present() -> bool {
    std::path::Path::new(cuda_preflight::DRIVER_NODE).exists()
}

/// The device `stage` (train or sample) runs on for `requested`, printing a notice on stderr
/// whenever `auto` does not take a GPU the machine has.
pub fn resolve(requested: DeviceChoice, stage: &str) -> Result<Device> {
    let rebuild = format!(
        "rebuild with CUDA: `make {stage} FEATURES=cuda`, or `cargo build --release -p {stage} --features cuda`"
    );
    match requested {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(_) if !cfg!(feature = "cuda") => {
            bail!("--device {requested}: this build of {stage} has no CUDA support; {rebuild}")
        }
        DeviceChoice::Auto if !cfg!(feature = "cuda") => {
            if gpu_present() {
                eprintln!("notice: this machine has an NVIDIA GPU but this build has no CUDA support, so {stage} runs on the CPU; {rebuild}");
            }
            Ok(Device::Cpu)
        }
        _ => match (cuda_preflight::missing_on_this_machine(), requested) {
            (missing, DeviceChoice::Cuda(index)) if missing.is_empty() => Ok(Device::Cuda(index)),
            (missing, _) if missing.is_empty() => Ok(Device::Cuda(0)),
            (missing, DeviceChoice::Auto) => {
                eprintln!("notice: {}; running on the CPU (--device auto)", cuda_preflight::describe(&missing));
                Ok(Device::Cpu)
            }
            (missing, _) => bail!("--device {requested}: {}", cuda_preflight::describe(&missing)),
        },
    }
}

/// Work that runs on whichever backend was chosen.
pub trait OnBackend {
    type Output;
    fn run<B: Gpt2Backend>(self, device: B::Device) -> Self::Output;
}

/// Run `work` on the backend and device of `device`.
pub fn dispatch<W: OnBackend>(device: Device, work: W) -> W::Output {
    match device {
        Device::Cpu => work.run::<Cpu>(Default::default()),
        #[cfg(feature = "cuda")]
        Device::Cuda(index) => work.run::<Gpu>(burn::backend::cuda::CudaDevice::new(index)),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => unreachable!("resolve() never picks CUDA without the feature"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        for (text, choice) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:2", DeviceChoice::Cuda(2)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
        }
        assert_eq!(DeviceChoice::Cuda(1).to_string(), "cuda:1");
        assert_eq!(DeviceChoice::default().to_string(), "auto");
        assert!("tpu".parse::<DeviceChoice>().unwrap_err().to_string().contains("auto, cpu, cuda or cuda:N"));
    }

    #[test]
    fn cpu_is_always_honoured() {
        assert_eq!(resolve(DeviceChoice::Cpu, "train").unwrap(), Device::Cpu);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_asked_of_a_build_without_it_names_the_command_that_adds_it() {
        let error = resolve(DeviceChoice::Cuda(0), "train").unwrap_err().to_string();
        assert!(error.contains("--device cuda:0: this build of train has no CUDA support"), "{error}");
        assert!(error.contains("`make train FEATURES=cuda`"), "{error}");
        assert!(error.contains("`cargo build --release -p train --features cuda`"), "{error}");
        assert_eq!(resolve(DeviceChoice::Auto, "sample").unwrap(), Device::Cpu);
    }
}
