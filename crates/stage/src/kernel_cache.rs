//! Where CUDA runs keep the kernels they compile. burn's CUDA backend compiles each kernel with
//! NVRTC the first time a process meets it: gpt2's first training step waited 11 s for 99 of
//! them, and 1.6 s when they were already on disk (BENCHMARKS.md). CubeCL keeps them on disk
//! only when told to, so a CUDA run tells it to, in the user's cache directory, where every later
//! run and the pipeline's stages find them. A `cubecl.toml` that sets `[compilation] cache`
//! decides instead.

use std::path::PathBuf;

/// `$XDG_CACHE_HOME/gpt2-jokes/cubecl`, else `~/.cache/gpt2-jokes/cubecl`; none without either.
pub fn dir(xdg_cache_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    let cache = xdg_cache_home.filter(|dir| dir.is_absolute()).or_else(|| home.map(|home| home.join(".cache")))?;
    Some(cache.join("gpt2-jokes").join("cubecl"))
}

/// Set CubeCL's configuration for this process: the user's `cubecl.toml` and `CUBECL_*`
/// variables as CubeCL reads them, with the compiled-kernel cache in [`dir`] unless they set
/// one. Called before the first CUDA device is made, which is when CubeCL reads it.
#[cfg(feature = "cuda")]
pub fn keep_compiled_kernels() {
    use cubecl_runtime::config::{cache::CacheConfig, CubeClRuntimeConfig, RuntimeConfig};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if CubeClRuntimeConfig::storage().lock().is_some() {
            return; // already read: too late to change, and CubeCL panics if asked to
        }
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        if config.compilation.cache.is_none() {
            let env = |name| std::env::var_os(name).map(PathBuf::from);
            config.compilation.cache = dir(env("XDG_CACHE_HOME"), env("HOME")).map(CacheConfig::File);
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
        assert_eq!(dir(None, home.clone()), Some(PathBuf::from("/home/ada/.cache/gpt2-jokes/cubecl")));
        assert_eq!(
            dir(Some("/var/cache/ada".into()), home.clone()),
            Some(PathBuf::from("/var/cache/ada/gpt2-jokes/cubecl"))
        );
        // The XDG specification ignores a relative XDG_CACHE_HOME.
        assert_eq!(dir(Some("cache".into()), home), Some(PathBuf::from("/home/ada/.cache/gpt2-jokes/cubecl")));
        assert_eq!(dir(None, None), None);
    }
}
