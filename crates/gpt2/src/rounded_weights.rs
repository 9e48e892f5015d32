use burn::{
    module::{Param, ParamId},
    prelude::*,
};
use std::collections::HashMap;

/// The weight matrices already rounded to the products' operand type ([`Precision::Bf16`]),
/// by parameter: made once a step, after the update, and read by every micro-batch's
/// products, each of which would otherwise round its own weight (a cast a product, 4 a layer,
/// every micro-batch). The train stage's optimizer makes them in one cast of its flat buffer
/// of the matrices. Under autodiff they are constants: the gradients still reach the f32
/// parameters they were rounded from.
///
/// They hold the values of the step they were made for: a model updated since reads stale
/// operands. Empty (the default), each product rounds its own weight.
///
/// [`Precision::Bf16`]: crate::Precision::Bf16
#[derive(Debug, Clone)]
pub struct RoundedWeights<B: Backend> {
    by_param: HashMap<ParamId, Tensor<B, 2>>,
}

impl<B: Backend> RoundedWeights<B> {
    /// Each weight's rounded copy, by the id of its parameter.
    pub fn new(by_param: impl IntoIterator<Item = (ParamId, Tensor<B, 2>)>) -> Self {
        Self { by_param: by_param.into_iter().collect() }
    }

    /// `weight`'s rounded copy, where there is one.
    pub fn get(&self, weight: &Param<Tensor<B, 2>>) -> Option<Tensor<B, 2>> {
        self.by_param.get(&weight.id).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_param.is_empty()
    }
}

impl<B: Backend> Default for RoundedWeights<B> {
    fn default() -> Self {
        Self { by_param: HashMap::new() }
    }
}
