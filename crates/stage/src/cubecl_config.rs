//! CubeCL's configuration for a CUDA run, set before the first device is made (which is when
//! CubeCL reads it), over the user's `cubecl.toml` and `CUBECL_*` variables:
//! - Compiled kernels are kept on disk. burn's CUDA backend compiles each kernel with NVRTC the
//!   first time a process meets it: gpt2's first training step waited 11 s for 99 of them, and
//!   1.6 s when they were already on disk (BENCHMARKS.md). CubeCL keeps them only when told to,
//!   so a CUDA run puts them in the user's cache directory, where every later run and the
//!   pipeline's stages find them, unless `[compilation] cache` says where. Autotune's results
//!   (a build with the `autotune` feature times candidate kernels for each new shape, >100 s
//!   before gpt2's first step) go to the same directory unless `[autotune] cache` says where,
//!   rather than CubeCL's default, a `target` directory above the working directory.
//! - Training and evaluation give every buffer its own exact size. CubeCL's default pools cut
//!   buffers out of pages of up to a quarter of the card, and for training's large, repeating
//!   buffers left most of what they reserved unused: gpt2 at 4 × 1024 held 5.7 GiB at its peak
//!   and reserved 15.5 GiB of an H200, against 6.4 GiB with exact sizes (measured on the
//!   `cuda-compile` device, which runs CubeCL's memory management: BENCHMARKS.md). A step asks
//!   for the same sizes every time, so after the first one each request finds a free buffer of
//!   its size. Decoding's shapes grow with every token, which the pools suit better, so
//!   sampling keeps them. `[memory] persistent_memory = "disabled"` keeps the pools for training
//!   too.

use std::path::PathBuf;

/// How CubeCL hands out device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffers {
    /// Every buffer its own exact size, kept for the next request of that size.
    ExactSize,
    /// CubeCL's default: buffers sliced out of pooled pages.
    Pooled,
}

/// `$XDG_CACHE_HOME/gpt2-jokes/cubecl`, else `~/.cache/gpt2-jokes/cubecl`; none without either.
pub fn kernel_cache_dir(xdg_cache_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    let cache = xdg_cache_home.filter(|dir| dir.is_absolute()).or_else(|| home.map(|home| home.join(".cache")))?;
    Some(cache.join("gpt2-jokes").join("cubecl"))
}

/// Set CubeCL's configuration for this process, once: the user's, with the compiled-kernel
/// and autotune caches in [`kernel_cache_dir`] unless it names others, and `buffers`.
#[cfg(feature = "cuda")]
pub fn configure(buffers: Buffers) {
    use cubecl_runtime::config::{cache::CacheConfig, memory::PersistentMemory, CubeClRuntimeConfig, RuntimeConfig};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if CubeClRuntimeConfig::storage().lock().is_some() {
            return; // already read: too late to change, and CubeCL panics if asked to
        }
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        let env = |name| std::env::var_os(name).map(PathBuf::from);
        if let Some(dir) = kernel_cache_dir(env("XDG_CACHE_HOME"), env("HOME")) {
            if config.compilation.cache.is_none() {
                config.compilation.cache = Some(CacheConfig::File(dir.clone()));
            }
            // `Target`, the default, cannot be told from a user's choice of it.
            if matches!(config.autotune.cache, CacheConfig::Target) {
                config.autotune.cache = CacheConfig::File(dir);
            }
        }
        // `Enabled`, the default, lets a program ask for exact sizes where it chooses;
        // `Disabled` is the user's choice of the pools.
        if buffers == Buffers::ExactSize && matches!(config.memory.persistent_memory, PersistentMemory::Enabled) {
            config.memory.persistent_memory = PersistentMemory::Enforced;
        }
        CubeClRuntimeConfig::set(config);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_go_to_the_users_cache_directory() {
        let home = Some(PathBuf::from("/home/ada"));
        assert_eq!(kernel_cache_dir(None, home.clone()), Some(PathBuf::from("/home/ada/.cache/gpt2-jokes/cubecl")));
        assert_eq!(
            kernel_cache_dir(Some("/var/cache/ada".into()), home.clone()),
            Some(PathBuf::from("/var/cache/ada/gpt2-jokes/cubecl"))
        );
        // The XDG specification ignores a relative XDG_CACHE_HOME.
        assert_eq!(
            kernel_cache_dir(Some("cache".into()), home),
            Some(PathBuf::from("/home/ada/.cache/gpt2-jokes/cubecl"))
        );
        assert_eq!(kernel_cache_dir(None, None), None);
    }
}
