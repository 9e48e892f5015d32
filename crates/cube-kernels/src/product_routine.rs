//! Which of cubek's matrix-product routines the model's products take.
//!
//! Unset, f32 products are burn's (its fused product, which takes a bias add after it into the
//! same kernel) and bf16 ones [`MixedMatmul`]'s with burn's default routine: cubek's simple
//! cyclic tensor-core routine, which ran gpt2's step's products at ~40 TFLOP/s on an H200
//! (BENCHMARKS.md, 2026-12-04), a tenth of the card's TF32 rate. `GPT2_PRODUCTS` names another
//! routine from [`product_routines`] (the ones burn's autotune tries on tensor cores, which
//! `examples/product_routines.rs` times product by product), and then every product of the
//! model's linear layers and LM head, forward and backward, f32 or bf16, takes it through
//! [`product_in_f32`] (those it refuses, burn's default, with a notice): so one build on a GPU
//! machine can time the train stage under each.
//!
//! [`MixedMatmul`]: crate::MixedMatmul
//! [`product_in_f32`]: crate::product_in_f32

use cubek::matmul::{
    components::tile::TileMatmulKind::{self, Cmma, Mma},
    launch::Strategy,
    routines::{
        double_buffering::DoubleBufferingArgs, ordered_double_buffering::OrderedSelectionArgs, simple::SimpleArgs,
        BlueprintStrategy::Inferred,
    },
};
use std::sync::OnceLock;

/// The environment variable that names the routine.
pub const PRODUCT_ROUTINE_VARIABLE: &str = "GPT2_PRODUCTS";

/// A routine by the name [`PRODUCT_ROUTINE_VARIABLE`] takes.
#[derive(Clone)]
pub struct ProductRoutine {
    pub name: &'static str,
    pub strategy: Strategy,
}

/// The tensor-core routines burn's autotune tries (burn-cubecl `kernel/matmul/tune`), burn's
/// default first, then those likelier to win on a Hopper card.
pub fn product_routines() -> Vec<ProductRoutine> {
    let simple = |tile_matmul: TileMatmulKind, multi_rows| SimpleArgs { tile_matmul, multi_rows };
    let double = |tile_matmul: TileMatmulKind, specialized| DoubleBufferingArgs { tile_matmul, specialized };
    let ordered = |tile_matmul: TileMatmulKind, row_count| OrderedSelectionArgs {
        partition_k: Some(2),
        row_count: Some(row_count),
        rows_per_plane: Some(2),
        tile_matmul,
    };
    let routine = |name, strategy| ProductRoutine { name, strategy };
    vec![
        routine("default", Strategy::Auto),
        routine("double-cyclic-cmma", Strategy::DoubleCyclicCmma(Inferred(double(Cmma, false)))),
        routine("double-cyclic-mma", Strategy::DoubleCyclicMma(Inferred(double(Mma, false)))),
        routine("double-cyclic-cmma-specialized", Strategy::DoubleCyclicCmma(Inferred(double(Cmma, true)))),
        routine("double-cyclic-mma-specialized", Strategy::DoubleCyclicMma(Inferred(double(Mma, true)))),
        routine("specialized-cyclic-cmma", Strategy::SpecializedCyclicCmma(Inferred(().into()))),
        routine("specialized-cyclic-mma", Strategy::SpecializedCyclicMma(Inferred(().into()))),
        routine("specialized-tma-cmma", Strategy::SpecializedTmaCmma(Inferred(().into()))),
        routine("specialized-tma-mma", Strategy::SpecializedTmaMma(Inferred(().into()))),
        routine("simple-tma-cmma", Strategy::SimpleTmaCmma(Inferred(simple(Cmma, false)))),
        routine("simple-tma-mma", Strategy::SimpleTmaMma(Inferred(simple(Mma, false)))),
        routine("simple-tma-cmma-multi-rows", Strategy::SimpleTmaCmma(Inferred(simple(Cmma, true)))),
        routine("simple-tma-mma-multi-rows", Strategy::SimpleTmaMma(Inferred(simple(Mma, true)))),
        routine("simple-cyclic-mma", Strategy::SimpleCyclicMma(Inferred(simple(Mma, false)))),
        routine("simple-cyclic-cmma-multi-rows", Strategy::SimpleCyclicCmma(Inferred(simple(Cmma, true)))),
        routine("simple-cyclic-mma-multi-rows", Strategy::SimpleCyclicMma(Inferred(simple(Mma, true)))),
        routine("ordered-double-cmma-4", Strategy::OrderedDoubleCmma(Inferred(ordered(Cmma, 4)))),
        routine("ordered-double-mma-4", Strategy::OrderedDoubleMma(Inferred(ordered(Mma, 4)))),
        routine("ordered-double-cmma-8", Strategy::OrderedDoubleCmma(Inferred(ordered(Cmma, 8)))),
        routine("ordered-double-mma-8", Strategy::OrderedDoubleMma(Inferred(ordered(Mma, 8)))),
    ]
}

/// The routine [`PRODUCT_ROUTINE_VARIABLE`] names (`None` when it is unset or empty), or what
/// is wrong with it and the names it may take.
pub fn product_routine_from_env() -> Result<Option<ProductRoutine>, String> {
    match std::env::var_os(PRODUCT_ROUTINE_VARIABLE) {
        Some(name) if !name.is_empty() => product_routine_named(&name.to_string_lossy()).map(Some),
        _ => Ok(None),
    }
}

fn product_routine_named(name: &str) -> Result<ProductRoutine, String> {
    let routines = product_routines();
    let found = routines.iter().find(|routine| routine.name == name).cloned();
    found.ok_or_else(|| {
        let names: Vec<_> = routines.iter().map(|routine| routine.name).collect();
        format!("{PRODUCT_ROUTINE_VARIABLE}={name}: no such product routine (it takes {})", names.join(", "))
    })
}

/// The routine the model's products take, read from the environment once: `None` for burn's
/// own. Panics if the variable names none; the stages check it with
/// [`product_routine_from_env`] first.
pub fn chosen_product_routine() -> Option<&'static ProductRoutine> {
    static CHOSEN: OnceLock<Option<ProductRoutine>> = OnceLock::new();
    CHOSEN.get_or_init(|| product_routine_from_env().unwrap_or_else(|why| panic!("{why}"))).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_distinct_and_fit_in_a_shell_word() {
        let routines = product_routines();
        let names: HashSet<_> = routines.iter().map(|routine| routine.name).collect();
        assert_eq!(names.len(), routines.len());
        assert!(names
            .iter()
            .all(|name| name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')));
        assert_eq!(routines[0].name, "default");
    }

    #[test]
    fn a_name_finds_its_routine_and_a_wrong_one_lists_them_all() {
        let found = product_routine_named("specialized-tma-mma").expect("a routine of the list");
        assert_eq!(found.strategy.to_string(), Strategy::SpecializedTmaMma(Inferred(().into())).to_string());
        let why = product_routine_named("double-cyclic").err().expect("no routine of that name");
        assert!(why.contains("GPT2_PRODUCTS=double-cyclic") && why.contains("default, double-cyclic-cmma,"), "{why}");
    }
}
