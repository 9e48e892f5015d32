use crate::Gpt2Backend;
use burn::prelude::*;

/// Keys and values of every position decoded so far, per layer.
///
/// Each layer keeps them in buffers `[batch, heads, capacity, head_dim]` with room to spare, and
/// a decoding step writes its position in place: appending with `cat` would copy the whole
/// history of every layer at every step. The capacity doubles when it runs out. Attention reads
/// the history through [`Gpt2Backend::first_positions`] (on the CPU, a view of the buffer).
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(n_layer: usize) -> Self {
        Self { layers: vec![None; n_layer], len: 0 }
    }

    /// Positions already cached (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keep only the rows in `rows` (in that order), e.g. the samples still being generated.
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, rows.clone());
            *v = v.clone().select(0, rows.clone());
        }
    }
}

impl<B: Gpt2Backend> KvCache<B> {
    /// Append this step's keys and values `[batch, heads, time, head_dim]` for `layer`; returns
    /// the whole history. The last layer's call completes the step.
    pub(crate) fn extend(&mut self, layer: usize, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, heads, time, head_dim] = k.dims();
        let (start, end) = (self.len, self.len + time);
        let (keys, values) = match self.layers[layer].take() {
            Some((keys, values)) if keys.dims()[2] >= end => (keys, values),
            Some((keys, values)) => (grow(keys, end), grow(values, end)),
            None => {
                let empty = || Tensor::zeros([batch, heads, end.next_power_of_two(), head_dim], &k.device());
                (empty(), empty())
            }
        };
        let new = [0..batch, 0..heads, start..end, 0..head_dim];
        let (keys, values) = (keys.slice_assign(new.clone(), k), values.slice_assign(new, v));
        self.layers[layer] = Some((keys.clone(), values.clone()));
        if layer + 1 == self.layers.len() {
            self.len = end;
        }
        (B::first_positions(keys, end), B::first_positions(values, end))
    }
}

/// `buffer` with its capacity (dimension 2) doubled until it holds `needed` positions.
fn grow<B: Backend>(buffer: Tensor<B, 4>, needed: usize) -> Tensor<B, 4> {
    let [batch, heads, capacity, head_dim] = buffer.dims();
    let spare = Tensor::zeros([batch, heads, needed.next_power_of_two() - capacity, head_dim], &buffer.device());
    Tensor::cat(vec![buffer, spare], 2)
}
