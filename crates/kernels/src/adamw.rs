//! The numbers of one AdamW update, shared by the optimizer's update on every backend.

/// One AdamW update of a parameter group, as PyTorch's `_single_tensor_adamw` takes it, with
/// the step's scalars worked out in f64 (the tensors take them rounded to their type):
///
/// ```text
/// param  ← param · decay
/// first  ← first + (grad − first) · (1 − beta1)
/// second ← second · beta2 + grad² · (1 − beta2)
/// param  ← param − first / (√second / bias_correction2_sqrt + eps) · step_size
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// `1 − lr · weight_decay`, or 1 for a group without decay.
    pub decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// `√(1 − beta2^step)`.
    pub bias_correction2_sqrt: f64,
    /// `lr / (1 − beta1^step)`.
    pub step_size: f64,
}
