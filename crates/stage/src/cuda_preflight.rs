//! What the CUDA backend needs at run time, checked before any device call, so that a missing
//! piece is named with where it was looked for and how to get it, not met as a panic from deep
//! inside the GPU runtime. burn 0.21's CUDA backend loads the driver's `libcuda` and NVRTC's
//! `libnvrtc` through the dynamic loader, and compiles its kernels against CUDA's headers; with
//! several devices it also loads NCCL, which moves tensors between them.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The driver's control node: present when the NVIDIA driver runs and sees a GPU.
pub const DRIVER_NODE: &str = "/dev/nvidiactl";

/// Headers every kernel includes (`cuda_runtime.h`) or the model's f16/bf16 kernels include.
const HEADERS: [&str; 3] = ["cuda_runtime.h", "cuda_fp16.h", "cuda_bf16.h"];

/// The names under which burn's CUDA backend loads NCCL (cudarc 0.19's
/// `get_lib_name_candidates("nccl")` on Linux, CUDA 13): never NCCL's own soname, libnccl.so.2,
/// which is all its run-time packages (libnccl2, PyTorch's nvidia-nccl wheels) install.
const NCCL_NAMES: [&str; 7] =
    ["libnccl.so", "libnccl.so.13", "libnccl.so.12", "libnccl.so.11", "libnccl.so.10", "libnccl.so.9", "libnccl.so.1"];

/// NCCL's soname.
const NCCL_SONAME: &str = "libnccl.so.2";

/// Where the dynamic loader finds libraries besides `LD_LIBRARY_PATH` and its cache.
const SYSTEM_LIBRARY_DIRS: [&str; 5] =
    ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/usr/lib/wsl/lib"];

/// One piece CUDA needs that is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub piece: &'static str,
    /// Where it was looked for.
    pub looked: String,
    /// What to do about it.
    pub fix: String,
}

/// What of this machine the check reads.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub driver_node: bool,
    /// Directories the dynamic loader searches (`LD_LIBRARY_PATH` first).
    pub library_dirs: Vec<PathBuf>,
    /// Library file names in the loader's cache (`ldconfig -p`).
    pub cached_libraries: Vec<String>,
    /// CUDA's toolkit directory, found as the CUDA backend finds it.
    pub toolkit: Option<PathBuf>,
}

impl Machine {
    pub fn this_one() -> Self {
        let mut library_dirs: Vec<PathBuf> =
            std::env::var_os("LD_LIBRARY_PATH").map(|dirs| std::env::split_paths(&dirs).collect()).unwrap_or_default();
        library_dirs.extend(SYSTEM_LIBRARY_DIRS.iter().map(PathBuf::from));
        Machine {
            driver_node: Path::new(DRIVER_NODE).exists(),
            library_dirs,
            cached_libraries: loader_cache(),
            toolkit: toolkit_dir(),
        }
    }

    fn has_library(&self, prefix: &str) -> bool {
        self.cached_libraries.iter().any(|name| name.starts_with(prefix))
            || self.library_dirs.iter().any(|dir| holds_library(dir, prefix))
    }

    /// Whether the loader finds a library by exactly this file name.
    fn has_library_named(&self, name: &str) -> bool {
        self.cached_libraries.iter().any(|cached| cached == name)
            || self.library_dirs.iter().any(|dir| dir.join(name).exists())
    }

    fn searched(&self) -> String {
        let dirs: Vec<String> = self.library_dirs.iter().map(|d| d.display().to_string()).collect();
        format!("LD_LIBRARY_PATH and {}, and the loader's cache (ldconfig -p)", dirs.join(", "))
    }
}

/// What CUDA would miss on `machine`; nothing past the driver when there is no driver.
pub fn missing(machine: &Machine) -> Vec<Missing> {
    if !machine.driver_node {
        return vec![Missing {
            piece: "an NVIDIA GPU",
            looked: DRIVER_NODE.to_string(),
            fix: "install the NVIDIA driver (`nvidia-smi` lists the GPUs it sees); in a container, start it with \
                  the GPUs (`docker run --gpus all`)"
                .to_string(),
        }];
    }
    let mut missing = Vec::new();
    if !machine.has_library("libcuda.so") {
        missing.push(Missing {
            piece: "the driver's library libcuda.so",
            looked: machine.searched(),
            fix: "install the NVIDIA driver's user-space libraries, or add the directory holding libcuda.so.1 to \
                  LD_LIBRARY_PATH"
                .to_string(),
        });
    }
    if !machine.has_library("libnvrtc.so") {
        let toolkit_lib =
            machine.toolkit.as_ref().map(|dir| dir.join("lib64")).filter(|lib| holds_library(lib, "libnvrtc.so"));
        let fix = match toolkit_lib {
            Some(lib) => format!(
                "it is in {}, where the loader does not look: `export LD_LIBRARY_PATH={}:$LD_LIBRARY_PATH`",
                lib.display(),
                lib.display()
            ),
            None => "install CUDA's NVRTC (the CUDA toolkit, or its cuda-nvrtc package) and add its lib64 directory \
                     to LD_LIBRARY_PATH"
                .to_string(),
        };
        missing.push(Missing { piece: "CUDA's run-time compiler libnvrtc.so", looked: machine.searched(), fix });
    }
    match &machine.toolkit {
        None => missing.push(Missing {
            piece: "CUDA's toolkit (its headers)",
            looked: "CUDA_PATH (not set), /usr/local/cuda, /opt/cuda, /usr/bin/nvcc".to_string(),
            fix: "install the CUDA toolkit, or set CUDA_PATH to the directory holding include/cuda_runtime.h"
                .to_string(),
        }),
        Some(toolkit) => {
            let include = toolkit.join("include");
            let absent: Vec<&str> = HEADERS.into_iter().filter(|header| !include.join(header).is_file()).collect();
            if !absent.is_empty() {
                missing.push(Missing {
                    piece: "CUDA's headers",
                    looked: format!("{} for {}", include.display(), absent.join(", ")),
                    fix:
                        "set CUDA_PATH to the CUDA toolkit (the directory holding include/cuda_runtime.h), or install \
                          its headers (the cuda-cudart-dev package)"
                            .to_string(),
                });
            }
        }
    }
    missing
}

pub fn missing_on_this_machine() -> Vec<Missing> {
    missing(&Machine::this_one())
}

/// What several CUDA devices need of `machine` besides what one needs: NCCL, which burn's CUDA
/// backend loads the first time it moves a tensor between devices, and without which it panics
/// on the device's thread rather than returning an error.
pub fn missing_for_several(machine: &Machine) -> Option<Missing> {
    if NCCL_NAMES.iter().any(|name| machine.has_library_named(name)) {
        return None;
    }
    let link = "burn's CUDA backend loads it as libnccl.so, which NCCL's development package (libnccl-dev) \
                links to it";
    let fix = match machine.library_dirs.iter().find(|dir| dir.join(NCCL_SONAME).exists()) {
        Some(dir) => format!(
            "{} holds {NCCL_SONAME}, but {link}: `ln -s {NCCL_SONAME} {}`, or install libnccl-dev",
            dir.display(),
            dir.join("libnccl.so").display()
        ),
        None if machine.has_library_named(NCCL_SONAME) => {
            format!("the loader's cache has {NCCL_SONAME}, but {link}: install libnccl-dev")
        }
        None => format!(
            "install NCCL: NVIDIA's libnccl2 and libnccl-dev packages, or `pip install nvidia-nccl-cu12` and, in a \
             directory on LD_LIBRARY_PATH, a link libnccl.so to the wheel's {NCCL_SONAME} ({link})"
        ),
    };
    Some(Missing {
        piece: "NCCL's libnccl.so, which moves the gradients between CUDA devices,",
        looked: machine.searched(),
        fix,
    })
}

pub fn missing_for_several_on_this_machine() -> Option<Missing> {
    missing_for_several(&Machine::this_one())
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} was not found (looked in {}): {}", self.piece, self.looked, self.fix)
    }
}

/// One message for the user: each missing piece, where it was looked for, what to do.
pub fn describe(missing: &[Missing]) -> String {
    let pieces: Vec<String> = missing.iter().map(ToString::to_string).collect();
    format!("CUDA cannot run here: {}", pieces.join("; "))
}

/// CUDA's toolkit directory, where burn's CUDA backend (cubecl-cuda 0.10, `install::cuda_path`)
/// takes its headers from: CUDA_PATH, else the first of /usr/local/cuda, /opt/cuda, and /usr
/// when /usr/bin/nvcc exists.
fn toolkit_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CUDA_PATH") {
        return Some(PathBuf::from(path));
    }
    ["/usr/local/cuda", "/opt/cuda"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| dir.exists())
        .or_else(|| Path::new("/usr/bin/nvcc").exists().then(|| PathBuf::from("/usr")))
}

fn holds_library(dir: &Path, prefix: &str) -> bool {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|entry| entry.file_name().to_string_lossy().starts_with(prefix)))
        .unwrap_or(false)
}

/// The file names in the dynamic loader's cache; none when `ldconfig` cannot be run.
fn loader_cache() -> Vec<String> {
    ["ldconfig", "/sbin/ldconfig"]
        .into_iter()
        .find_map(|ldconfig| Command::new(ldconfig).arg("-p").output().ok().filter(|out| out.status.success()))
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| line.split_whitespace().next().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_driver() -> Machine {
        Machine { driver_node: true, ..Machine::default() }
    }

    #[test]
    fn without_a_driver_only_the_gpu_is_named() {
        let missing = missing(&Machine::default());
        assert_eq!(missing.len(), 1);
        assert!(describe(&missing).contains("an NVIDIA GPU was not found (looked in /dev/nvidiactl)"));
    }

    #[test]
    fn an_empty_cuda_path_names_the_headers_it_lacks_and_how_to_fix_it() {
        let cuda = tempfile::tempdir().unwrap();
        let machine = Machine { toolkit: Some(cuda.path().to_path_buf()), ..with_driver() };
        let message = describe(&missing(&machine));
        let include = cuda.path().join("include");
        assert!(
            message
                .contains(&format!("CUDA's headers was not found (looked in {} for cuda_runtime.h", include.display())),
            "{message}"
        );
        assert!(message.contains("set CUDA_PATH to the CUDA toolkit"), "{message}");
        assert!(message.contains("libcuda.so was not found") && message.contains("libnvrtc.so was not found"));
    }

    #[test]
    fn nvrtc_beside_the_toolkit_but_off_the_loader_path_gets_the_export_line() {
        let cuda = tempfile::tempdir().unwrap();
        let (include, lib) = (cuda.path().join("include"), cuda.path().join("lib64"));
        fs::create_dir_all(&include).unwrap();
        fs::create_dir_all(&lib).unwrap();
        for header in HEADERS {
            fs::write(include.join(header), "").unwrap();
        }
        fs::write(lib.join("libnvrtc.so.12"), "").unwrap();
        let machine = Machine {
            toolkit: Some(cuda.path().to_path_buf()),
            cached_libraries: vec!["libcuda.so.1".into()],
            ..with_driver()
        };
        let missing_now = missing(&machine);
        assert_eq!(missing_now.len(), 1, "{missing_now:?}");
        assert!(missing_now[0].fix.contains(&format!("export LD_LIBRARY_PATH={}:$LD_LIBRARY_PATH", lib.display())));

        let machine = Machine { library_dirs: vec![lib], ..machine };
        assert!(missing(&machine).is_empty());
    }

    #[test]
    fn several_devices_need_nccl_under_the_name_burn_loads_it_by() {
        let lib = tempfile::tempdir().unwrap();
        let machine = Machine { library_dirs: vec![lib.path().to_path_buf()], ..with_driver() };
        let absent = missing_for_several(&machine).expect("no NCCL at all").to_string();
        assert!(absent.starts_with("NCCL's libnccl.so, which moves the gradients"), "{absent}");
        assert!(absent.contains("install NCCL") && absent.contains("pip install nvidia-nccl-cu12"), "{absent}");

        // NCCL's run-time package alone: the loader would not find it under the names burn tries.
        fs::write(lib.path().join(NCCL_SONAME), "").unwrap();
        let soname_only = missing_for_several(&machine).expect("libnccl.so.2 alone is not loaded").to_string();
        let link = lib.path().join("libnccl.so");
        assert!(soname_only.contains(&format!("`ln -s libnccl.so.2 {}`", link.display())), "{soname_only}");
        let cached = Machine { cached_libraries: vec![NCCL_SONAME.into()], ..with_driver() };
        let in_cache = missing_for_several(&cached).expect("libnccl.so.2 alone is not loaded").to_string();
        assert!(in_cache.contains("the loader's cache has libnccl.so.2") && in_cache.contains("libnccl-dev"));

        fs::write(&link, "").unwrap();
        assert_eq!(missing_for_several(&machine), None);
        let cached = Machine { cached_libraries: vec!["libnccl.so".into()], ..with_driver() };
        assert_eq!(missing_for_several(&cached), None);
    }
}
