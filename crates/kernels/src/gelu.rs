//! GPT-2's GELU, with tanh: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.

use ndarray::{ArrayViewMut, Dimension};

/// √(2/π), as burn's `gelu_approximate` has it.
pub const GELU_SQRT_2_OVER_PI: f32 = (std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2) as f32;

/// The cubic term's coefficient.
pub const GELU_CUBIC: f32 = 0.044715;

/// GELU of every element, in place, in one pass (burn's takes six, each into a new array).
pub fn gelu_tanh_in_place<D: Dimension>(mut x: ArrayViewMut<'_, f32, D>) {
    x.par_mapv_inplace(|x| {
        let inner = (x + x * x * x * GELU_CUBIC) * GELU_SQRT_2_OVER_PI;
        x * (inner.tanh() + 1.0) * 0.5
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn matches_the_formula_and_its_limits() {
        let mut x = arr1(&[-10.0f32, -1.0, 0.0, 1.0, 10.0]);
        gelu_tanh_in_place(x.view_mut());
        let expected = [-0.0, -0.158_808, 0.0, 0.841_192, 10.0];
        for (got, want) in x.iter().zip(expected) {
            assert!((got - want).abs() < 1e-5, "{x:?}");
        }
    }
}
