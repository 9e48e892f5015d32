//! The kernels the environment chooses on CUDA and wgpu, for benchmarks: one build on a GPU
//! machine (which has no Rust) can time the train stage under each.
//!
//! - `GPT2_PRODUCTS=NAME`: the product routine every product of the model takes
//!   (`cube_kernels::product_routines`).
//! - `GPT2_ATTENTION=products`: training's attention through burn's batched products, which run
//!   on tensor cores, with each layer's `time × time` scores made and dropped again (the CPU's
//!   way, [`crate::training_attention`], with the softmax between the products one kernel each
//!   way, `cube_kernels::AttentionSoftmax`), instead of the flash kernels, which keep nothing
//!   that size but multiply on the FP32 units. `flash` (or unset) keeps the flash kernels;
//!   `flash-tensor-cores` takes the flash kernels' products on tensor cores where the device
//!   has them (`cube_kernels::AttentionProducts::TensorCores`), to be the default once a card
//!   has timed and checked them against the FP32 kernels.
//!
//! Both are read once a process; the stages check them before anything runs
//! ([`check_kernel_choices`]), so a wrong value stops a run with the names it takes.

/// The environment variable that chooses training's attention.
pub const ATTENTION_ROUTE_VARIABLE: &str = "GPT2_ATTENTION";

/// Which kernels take causal self-attention in training and in evaluation on CUDA and wgpu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionRoute {
    /// `cube_kernels`' flash attention: one launch forward, two backward, on the FP32 units.
    Flash,
    /// The same, with their products on tensor cores where the device has them.
    FlashTensorCores,
    /// burn's batched products and a softmax kernel between them, the scores made in full per
    /// layer.
    Products,
}

impl AttentionRoute {
    const NAMES: [(&'static str, AttentionRoute); 3] = [
        ("flash", AttentionRoute::Flash),
        ("flash-tensor-cores", AttentionRoute::FlashTensorCores),
        ("products", AttentionRoute::Products),
    ];

    /// The route [`ATTENTION_ROUTE_VARIABLE`] names: flash attention when it is unset or empty.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var_os(ATTENTION_ROUTE_VARIABLE) {
            Some(name) if !name.is_empty() => Self::named(&name.to_string_lossy()),
            _ => Ok(Self::Flash),
        }
    }

    fn named(name: &str) -> Result<Self, String> {
        let found = Self::NAMES.iter().find(|(known, _)| *known == name).map(|&(_, route)| route);
        found.ok_or_else(|| {
            let names: Vec<_> = Self::NAMES.iter().map(|(known, _)| *known).collect();
            format!("{ATTENTION_ROUTE_VARIABLE}={name}: no such attention route (it takes {})", names.join(" or "))
        })
    }

    /// The route read from the environment once. Panics if the variable names none; the stages
    /// check it with [`check_kernel_choices`] first.
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    pub fn chosen() -> Self {
        static CHOSEN: std::sync::OnceLock<AttentionRoute> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| Self::from_env().unwrap_or_else(|why| panic!("{why}")))
    }
}

/// What is wrong with `GPT2_PRODUCTS` or `GPT2_ATTENTION` where one names nothing it takes, in
/// a build with a GPU backend; nothing in a build without one, which never reads them.
pub fn check_kernel_choices() -> anyhow::Result<()> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        cube_kernels::product_routine_from_env().map_err(anyhow::Error::msg)?;
        AttentionRoute::from_env().map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_name_and_a_wrong_name_lists_them() {
        assert_eq!(AttentionRoute::named("flash"), Ok(AttentionRoute::Flash));
        assert_eq!(AttentionRoute::named("flash-tensor-cores"), Ok(AttentionRoute::FlashTensorCores));
        assert_eq!(AttentionRoute::named("products"), Ok(AttentionRoute::Products));
        let why = AttentionRoute::named("product").unwrap_err();
        assert!(
            why.contains("GPT2_ATTENTION=product:") && why.contains("flash or flash-tensor-cores or products"),
            "{why}"
        );
    }
}
