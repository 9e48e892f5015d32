use burn::{prelude::*, tensor::TensorData};

/// The documents packed side by side in each row of a batch. With it, a forward pass treats
/// each document as if it were alone: a token attends only to earlier tokens of its own
/// document, and positions count from the document's first token, as they do when the model
/// later generates a document from its start.
pub struct Documents<B: Backend> {
    /// `[batch, time]`: which document of its row each token belongs to.
    ids: Tensor<B, 2, Int>,
    /// `[batch, time]`: each token's position within its document.
    pub(crate) positions: Tensor<B, 2, Int>,
}

impl<B: Backend> Documents<B> {
    /// `starts[r]`: the offsets in row `r` where documents begin (a first one at 0 is implied).
    /// Rows are `width` tokens; padding after the last document counts as part of it.
    pub fn new(starts: &[Vec<usize>], width: usize, device: &B::Device) -> Self {
        let mut ids = Vec::with_capacity(starts.len() * width);
        let mut positions = Vec::with_capacity(starts.len() * width);
        for row in starts {
            let (mut id, mut start) = (0i64, 0usize);
            for i in 0..width {
                if i > 0 && row.contains(&i) {
                    (id, start) = (id + 1, i);
                }
                ids.push(id);
                positions.push((i - start) as i64);
            }
        }
        let shape = [starts.len(), width];
        Self {
            ids: Tensor::from_data(TensorData::new(ids, shape), device),
            positions: Tensor::from_data(TensorData::new(positions, shape), device),
        }
    }

    /// `[batch, time, time]`, `true` where query `i` must not see key `j`: a later token, or
    /// one of another document.
    pub fn mask(&self, causal: Tensor<B, 2, Bool>) -> Tensor<B, 3, Bool> {
        let [batch, time] = self.ids.dims();
        let queries = self.ids.clone().unsqueeze_dim::<3>(2).expand([batch, time, time]);
        let keys = self.ids.clone().unsqueeze_dim::<3>(1).expand([batch, time, time]);
        queries.not_equal(keys).bool_or(causal.unsqueeze::<3>().expand([batch, time, time]))
    }
}
