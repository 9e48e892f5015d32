//! The Makefile builds train and sample with CUDA exactly when the machine has an NVIDIA GPU and
//! CUDA's toolkit, says which it chose, and lets `FEATURES` on the command line decide instead.
//! `make -n` prints the commands without running them; a stand-in `nvidia-smi` plays the GPU.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

/// `make -n train` with a stand-in `nvidia-smi` that names `gpu` (or finds none), CUDA_PATH at
/// `cuda_path`, and `extra` arguments; returns what make printed.
fn make_train(gpu: Option<&str>, cuda_path: &Path, extra: &[&str]) -> String {
    let bin = tempfile::tempdir().unwrap();
    let script = match gpu {
        Some(name) => format!("#!/bin/sh\necho \"{name}\"\n"),
        None => "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n".to_string(),
    };
    let stand_in = bin.path().join("nvidia-smi");
    fs::write(&stand_in, script).unwrap();
    fs::set_permissions(&stand_in, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("make")
        .args(["-n", "-C"])
        .arg(&root)
        .args(["train", "PIPELINE=pipelines/demo.toml"])
        .args(extra)
        .env("PATH", path)
        .env("CUDA_PATH", cuda_path)
        .env_remove("FEATURES")
        .env_remove("MAKEFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("make runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_gpu_and_cuda_make_a_cuda_build_and_say_so() {
    let cuda = tempfile::tempdir().unwrap();
    let printed = make_train(Some("NVIDIA H200"), cuda.path(), &[]);
    assert!(printed.contains("--features train/cuda --features sample/cuda"), "{printed}");
    assert!(printed.contains("CUDA build: found NVIDIA H200") && printed.contains(&cuda.path().display().to_string()));
}

#[test]
fn without_a_gpu_the_build_is_for_the_cpu_and_says_why() {
    let cuda = tempfile::tempdir().unwrap();
    let printed = make_train(None, cuda.path(), &[]);
    assert!(!printed.contains("--features"), "{printed}");
    assert!(printed.contains("CPU build: no NVIDIA GPU found"), "{printed}");
}

#[test]
fn features_on_the_command_line_decide() {
    let cuda = tempfile::tempdir().unwrap();
    let printed = make_train(Some("NVIDIA H200"), cuda.path(), &["FEATURES="]);
    assert!(!printed.contains("--features") && printed.contains("CPU build: FEATURES= as given"), "{printed}");
    let printed = make_train(None, cuda.path(), &["FEATURES=cuda"]);
    assert!(printed.contains("--features train/cuda --features sample/cuda"), "{printed}");
    assert!(printed.contains("build with FEATURES=cuda as given"), "{printed}");
}

#[test]
fn a_gpu_without_cuda_stays_unused_and_the_build_says_so() {
    // Only where no toolkit is installed in the default places, which make would find.
    if ["/usr/local/cuda", "/opt/cuda"].iter().any(|dir| Path::new(dir).exists()) {
        return;
    }
    let printed = make_train(Some("NVIDIA H200"), Path::new("/no/cuda/here"), &[]);
    assert!(!printed.contains("--features"), "{printed}");
    assert!(printed.contains("found NVIDIA H200 but not CUDA's toolkit (set CUDA_PATH"), "{printed}");
}
