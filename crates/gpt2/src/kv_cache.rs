use crate::{attention::split_heads, Gpt2Backend, Precision};
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
/// history through [`Gpt2Backend::first_positions`] (on the CPU, a view of the buffer), or, for
/// one new position a row, through [`Gpt2Backend::decode_attention`], which also writes it.
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
    /// Whether no position is cached yet (a prompt's first pass comes next).
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append this step's keys and values `[batch, heads, time, head_dim]`.
    pub(crate) fn append(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) {
        let [batch, heads, time, head_dim] = k.dims();
        let (start, end) = (self.len, self.len + time);
        let (keys, values) = self.buffers_holding(end, [batch, heads, head_dim], &k.device());
        self.buffers = Some(write_positions(keys, values, k, v, start));
        self.len = end;
    }

    /// [`append`](LayerCache::append), then the whole history.
    pub(crate) fn extend(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        self.append(k, v);
        let (keys, values) = self.buffers.clone().expect("appended");
        (B::first_positions(keys, self.len), B::first_positions(values, self.len))
    }

    /// Attention for one new position a row, from its q/k/v rows `[batch, 3 × d]`: its key and
    /// value join the cache, and its query attends to every cached position. Returns the
    /// heads' outputs side by side, `[batch, d]`.
    pub(crate) fn attend_new_position(
        &mut self,
        qkv: Tensor<B, 2>,
        heads: usize,
        precision: Precision,
    ) -> Tensor<B, 2> {
        let [batch, width] = qkv.dims();
        let (keys, values) = self.buffers_holding(self.len + 1, [batch, heads, width / (3 * heads)], &qkv.device());
        let (y, keys, values) = B::decode_attention(qkv, keys, values, self.len, heads, precision);
        self.buffers = Some((keys, values));
        self.len += 1;
        y
    }

    /// The buffers, taken out of the cache, with room for `positions` positions of `[batch,
    /// heads, head_dim]`: the capacity doubles when it runs out.
    fn buffers_holding(
        &mut self,
        positions: usize,
        [batch, heads, head_dim]: [usize; 3],
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        match self.buffers.take() {
            Some((keys, values)) if keys.dims()[2] >= positions => (keys, values),
            Some((keys, values)) => (grow(keys, positions), grow(values, positions)),
            None => {
                let empty = || Tensor::zeros([batch, heads, positions.next_power_of_two(), head_dim], device);
                (empty(), empty())
            }
        }
    }
}

/// [`Gpt2Backend::decode_attention`] by burn's operations: the new keys and values written
/// into the buffers, then attention over the filled positions.
pub(crate) fn decode_attention_by_parts<B: Gpt2Backend>(
    qkv: Tensor<B, 2>,
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    position: usize,
    heads: usize,
    precision: Precision,
) -> (Tensor<B, 2>, Tensor<B, 4>, Tensor<B, 4>) {
    let [batch, width] = qkv.dims();
    let (q, k, v) = split_heads(qkv, heads, [batch, 1, position + 1]);
    let (keys, values) = write_positions(keys, values, k, v, position);
    let (k, v) = (B::first_positions(keys.clone(), position + 1), B::first_positions(values.clone(), position + 1));
    let sees_every_key = Tensor::<B, 3, Int>::zeros([batch, 1, position + 1], &q.device()).bool();
    let y = B::masked_attention(q, k, v, sees_every_key, None, precision).reshape([batch, width / 3]);
    (y, keys, values)
}

/// The buffers with `k` and `v` `[batch, heads, time, head_dim]` written at positions
/// `start..start + time`: in place where nothing else holds them.
fn write_positions<B: Backend>(
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    start: usize,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let [batch, heads, time, head_dim] = k.dims();
    let new = [0..batch, 0..heads, start..start + time, 0..head_dim];
    (keys.slice_assign(new.clone(), k), values.slice_assign(new, v))
}

/// `buffer` with its capacity (dimension 2) doubled until it holds `needed` positions.
fn grow<B: Backend>(buffer: Tensor<B, 4>, needed: usize) -> Tensor<B, 4> {
    let [batch, heads, capacity, head_dim] = buffer.dims();
    let spare = Tensor::zeros([batch, heads, needed.next_power_of_two() - capacity, head_dim], &buffer.device());
    Tensor::cat(vec![buffer, spare], 2)
}
