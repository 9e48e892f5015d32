use crate::Gpt2Backend;
use burn::prelude::*;

/// Keys and values of every position decoded so far: one [`LayerCache`] per layer, each
/// handed to its own layer (as llama-burn does), so no layer depends on another's call.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

/// One layer's keys and values, in buffers `[batch, heads, capacity, head_dim]` with room to
/// spare: a decoding step writes its positions in place, where appending with `cat` would copy
/// the whole history at every step. The capacity doubles when it runs out. Attention reads the
/// history through [`Gpt2Backend::first_positions`] (on the CPU, a view of the buffer).
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    buffers: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(n_layer: usize) -> Self {
        Self { layers: vec![LayerCache { buffers: None, len: 0 }; n_layer] }
    }

    /// Positions already cached (the next token's position).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |layer| layer.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep only the rows in `rows` (in that order), e.g. the samples still being generated.
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for (k, v) in self.layers.iter_mut().filter_map(|layer| layer.buffers.as_mut()) {
            *k = k.clone().select(0, rows.clone());
            *v = v.clone().select(0, rows.clone());
        }
    }

    /// Each layer's slot, first layer first.
    pub(crate) fn layers_mut(&mut self) -> impl Iterator<Item = &mut LayerCache<B>> {
        self.layers.iter_mut()
    }
}

impl<B: Gpt2Backend> LayerCache<B> {
    /// Append this step's keys and values `[batch, heads, time, head_dim]`; returns the whole
    /// history.
    pub(crate) fn extend(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, heads, time, head_dim] = k.dims();
        let (start, end) = (self.len, self.len + time);
        let (keys, values) = match self.buffers.take() {
            Some((keys, values)) if keys.dims()[2] >= end => (keys, values),
            Some((keys, values)) => (grow(keys, end), grow(values, end)),
            None => {
                let empty = || Tensor::zeros([batch, heads, end.next_power_of_two(), head_dim], &k.device());
                (empty(), empty())
            }
        };
        let new = [0..batch, 0..heads, start..end, 0..head_dim];
        let (keys, values) = (keys.slice_assign(new.clone(), k), values.slice_assign(new, v));
        self.buffers = Some((keys.clone(), values.clone()));
        self.len = end;
        (B::first_positions(keys, end), B::first_positions(values, end))
    }
}

/// `buffer` with its capacity (dimension 2) doubled until it holds `needed` positions.
fn grow<B: Backend>(buffer: Tensor<B, 4>, needed: usize) -> Tensor<B, 4> {
    let [batch, heads, capacity, head_dim] = buffer.dims();
    let spare = Tensor::zeros([batch, heads, needed.next_power_of_two() - capacity, head_dim], &buffer.device());
    Tensor::cat(vec![buffer, spare], 2)
}
