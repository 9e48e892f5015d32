//! Choosing where a stage runs: `--device cpu|cuda[:N]`, CUDA by default where it is built in
//! and a GPU is present, otherwise the CPU with a notice that says why.

use anyhow::{bail, Result};
#[cfg(feature = "cuda")]
use gpt2::Gpu;
use gpt2::{Cpu, Gpt2Backend};
use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => match text.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(index)) => Ok(DeviceChoice::Cuda(index)),
                _ => bail!("unknown device `{text}` (expected cpu, cuda or cuda:N)"),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Whether the NVIDIA driver's device nodes exist on this machine.
fn gpu_present() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists()
}

/// The device to use for `requested` (`None`: the best available), printing a notice on
/// stderr whenever the answer is not what was asked for.
pub fn resolve(requested: Option<DeviceChoice>) -> DeviceChoice {
    let built_with_cuda = cfg!(feature = "cuda");
    match requested {
        Some(DeviceChoice::Cpu) => DeviceChoice::Cpu,
        Some(DeviceChoice::Cuda(index)) if built_with_cuda && gpu_present() => DeviceChoice::Cuda(index),
        None if built_with_cuda && gpu_present() => DeviceChoice::Cuda(0),
        None if !built_with_cuda => DeviceChoice::Cpu,
        _ => {
            let why = if built_with_cuda {
                "no NVIDIA GPU found (no /dev/nvidiactl)"
            } else {
                "this build has no CUDA support (build with `--features cuda`)"
            };
            eprintln!("notice: {why}; running on the CPU");
            DeviceChoice::Cpu
        }
    }
}

/// Work that runs on whichever backend was chosen.
pub trait OnBackend {
    type Output;
    fn run<B: Gpt2Backend>(self, device: B::Device) -> Self::Output;
}

/// Run `work` on the backend and device of `choice`.
pub fn dispatch<W: OnBackend>(choice: DeviceChoice, work: W) -> W::Output {
    match choice {
        DeviceChoice::Cpu => work.run::<Cpu>(Default::default()),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(index) => work.run::<Gpu>(burn::backend::cuda::CudaDevice::new(index)),
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda(_) => unreachable!("resolve() never picks CUDA without the feature"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        for (text, choice) in
            [("cpu", DeviceChoice::Cpu), ("cuda", DeviceChoice::Cuda(0)), ("cuda:2", DeviceChoice::Cuda(2))]
        {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
        }
        assert_eq!(DeviceChoice::Cuda(1).to_string(), "cuda:1");
        assert!("tpu".parse::<DeviceChoice>().unwrap_err().to_string().contains("cpu, cuda or cuda:N"));
    }

    #[test]
    fn cpu_is_always_honoured() {
        assert_eq!(resolve(Some(DeviceChoice::Cpu)), DeviceChoice::Cpu);
    }
}
