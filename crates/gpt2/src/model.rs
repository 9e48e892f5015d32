use crate::{
    block::Block,
    dropout::{dropped, Dropout, DropoutMasks},
    loss::next_token_loss_over,
    Documents, Gpt2Backend, KvCache, NextTokens, PreNorm, Precision, RoundedWeights,
};
use burn::{
    module::Param,
    nn::{Embedding, LayerNorm},
    prelude::*,
    tensor::FloatDType,
};

/// GPT-2: token and position embeddings, a stack of pre-LayerNorm blocks, a final LayerNorm,
/// and an LM head that reuses the token embedding (tied weights). Field names follow the
/// Hugging Face checkpoint names.
#[derive(Module, Debug)]
pub struct Gpt2<B: Backend> {
    pub wte: Embedding<B>,
    pub wpe: Embedding<B>,
    /// Dropout's probability after the embeddings.
    pub(crate) embd_pdrop: f64,
    pub h: Vec<Block<B>>,
    pub ln_f: LayerNorm<B>,
    #[module(skip)]
    pub(crate) precision: Precision,
    /// `ln_f`'s ε, which burn's `LayerNorm` keeps to itself.
    #[module(skip)]
    pub(crate) layer_norm_epsilon: f64,
}

impl<B: Gpt2Backend> Gpt2<B> {
    /// Logits `[batch, time, vocab]` for tokens `[batch, time]` at positions `0..time`.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let (positions, mask) = positions_and_mask(&tokens, None);
        self.logits(tokens, positions, mask)
    }

    /// Training's next-token loss ([`next_token_loss`]) of rows that each hold one document
    /// (`documents` `None`) or several, against `next`, with dropout's masks drawn from
    /// `masks`, the products reading the step's `rounded` weights where it has them.
    /// [`forward`] and [`forward_documents`] drop nothing, on any backend. The LM head computes
    /// [`Gpt2Backend::lm_head_columns`] columns, the token embedding's rows then rows of zeros,
    /// and the loss leaves the padding out: the same loss and gradients as without it, and
    /// products whose operands CubeCL reads in vectors.
    ///
    /// [`next_token_loss`]: crate::next_token_loss
    /// [`forward`]: Gpt2::forward
    /// [`forward_documents`]: Gpt2::forward_documents
    pub fn training_loss(
        &self,
        tokens: Tensor<B, 2, Int>,
        documents: Option<&Documents<B>>,
        masks: DropoutMasks,
        rounded: &RoundedWeights<B>,
        next: NextTokens<B>,
    ) -> Tensor<B, 1> {
        let [batch, time] = tokens.dims();
        let (positions, mask) = positions_and_mask(&tokens, documents);
        let x = self.embeddings(tokens, positions, mask.dims()[2], Some(masks));
        // Each LayerNorm after the first takes in the branch before it: the stream and that
        // LayerNorm's output go from block to block.
        let first = self.h.first().map_or(self.final_norm(), |block| block.pre_norms().0);
        let normed = B::layer_norm_rows(first, x.clone());
        let (_, normed) = self.h.iter().enumerate().fold((x, normed), |(x, normed), (layer, block)| {
            let next = self.h.get(layer + 1).map_or(self.final_norm(), |block| block.pre_norms().0);
            let continues = layer + 1 < self.h.len();
            block.forward_training(x, normed, next, mask.clone(), masks.layer(layer), rounded, continues)
        });
        self.head_loss(normed, rounded.get(&self.wte.weight), [batch, time], next)
    }

    /// Evaluation's next-token loss ([`next_token_loss`]) of rows that each hold one document
    /// (`documents` `None`) or several, against `next`, nothing dropped; the LM head padded as
    /// in [`training_loss`], so that evaluation's logits take the same buffers as training's.
    ///
    /// [`next_token_loss`]: crate::next_token_loss
    /// [`training_loss`]: Gpt2::training_loss
    pub fn loss(
        &self,
        tokens: Tensor<B, 2, Int>,
        documents: Option<&Documents<B>>,
        next: NextTokens<B>,
    ) -> Tensor<B, 1> {
        let [batch, time] = tokens.dims();
        let (positions, mask) = positions_and_mask(&tokens, documents);
        let normed = B::layer_norm_rows(self.final_norm(), self.hidden_states(tokens, positions, mask, None));
        self.head_loss(normed, None, [batch, time], next)
    }

    /// The LM head over [`Gpt2Backend::lm_head_columns`] columns (the token embedding's rows,
    /// then rows of zeros; `rounded`: its rounded copy, padded alike) and the next-token loss
    /// of its logits, the padding left out, for `normed` `[batch × time, d]` after `ln_f`.
    fn head_loss(
        &self,
        normed: Tensor<B, 2>,
        rounded: Option<Tensor<B, 2>>,
        [batch, time]: [usize; 2],
        next: NextTokens<B>,
    ) -> Tensor<B, 1> {
        let vocab = self.wte.weight.dims()[0];
        let columns = B::lm_head_columns(vocab);
        let head = |weight: Tensor<B, 2>| padded_rows(weight, columns);
        let logits = self.precision.matmul_transposed(normed, head(self.wte.weight.val()), rounded.map(head));
        next_token_loss_over(logits.reshape([batch, time, columns]), vocab, next, self.precision)
    }

    /// Logits `[batch, vocab]` of the token after `tokens`, which follow the positions already
    /// in `cache` (extended with them). The LM head runs on the last position only: for a
    /// prompt's first pass, one row of `time`.
    pub fn next_token_logits(&self, tokens: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Tensor<B, 2> {
        let [batch, time] = tokens.dims();
        let (start, device) = (cache.len(), tokens.device());
        let mask = causal_mask::<B>(time, start + time, &device).unsqueeze::<3>().expand([batch, time, start + time]);
        let x = self.hidden_states(tokens, sequence_positions(start, batch, time, &device), mask, Some(cache));
        let width = x.dims()[1];
        let last = x.reshape([batch, time, width]).slice([0..batch, time - 1..time, 0..width]);
        self.lm_head(last.reshape([batch, width]))
    }

    /// Logits for rows that each hold several `documents` side by side: every document gets
    /// the logits it would get alone.
    pub fn forward_documents(&self, tokens: Tensor<B, 2, Int>, documents: &Documents<B>) -> Tensor<B, 3> {
        let (positions, mask) = positions_and_mask(&tokens, Some(documents));
        self.logits(tokens, positions, mask)
    }

    /// Logits `[batch, time, vocab]` at every position.
    fn logits(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        mask: Tensor<B, 3, Bool>,
    ) -> Tensor<B, 3> {
        let [batch, time] = tokens.dims();
        let vocab = self.wte.weight.dims()[0];
        self.lm_head(self.hidden_states(tokens, positions, mask, None)).reshape([batch, time, vocab])
    }

    /// The last block's output, `[batch × time, d]`, nothing dropped.
    fn hidden_states(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        mask: Tensor<B, 3, Bool>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 2> {
        let mut x = self.embeddings(tokens, positions, mask.dims()[2], None);
        let mut layer_caches = cache.map(|cache| cache.layers_mut());
        for block in &self.h {
            let layer_cache = layer_caches.as_mut().map(|layers| layers.next().expect("a cache slot per layer"));
            x = block.forward(x, mask.clone(), layer_cache);
        }
        x
    }

    /// The token and position embeddings' sum, `[batch × time, d]`, with dropout where `masks`
    /// are given; `keys` is how many positions attention will see.
    fn embeddings(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        keys: usize,
        masks: Option<DropoutMasks>,
    ) -> Tensor<B, 2> {
        let n_positions = self.wpe.weight.dims()[0];
        assert!(keys <= n_positions, "sequence of {keys} tokens is longer than the model's {n_positions} positions");
        let [batch, time] = tokens.dims();
        // f32 whatever `wte` is stored in (bf16 for sampling): the residual stream is f32.
        let embedded =
            B::embed(self.wte.weight.val(), tokens).cast(FloatDType::F32) + B::embed(self.wpe.weight.val(), positions);
        let embedded = dropped(embedded, Dropout::at(self.embd_pdrop, masks.map(DropoutMasks::embedding)));
        embedded.reshape([batch * time, self.wte.weight.dims()[1]])
    }

    /// The final LayerNorm and the LM head, `[rows, d]` to logits `[rows, vocab]`. The head is
    /// the token embedding, transposed. A plain 2-D product: burn 0.21's CUDA matmul gives wrong
    /// results for a transposed right-hand side broadcast over a batch.
    fn lm_head(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        B::lm_head(self.final_norm(), self.wte.weight.val(), x, self.precision)
    }

    /// `ln_f` with its ε, before the LM head.
    pub fn final_norm(&self) -> PreNorm<'_, B> {
        PreNorm { layer: &self.ln_f, epsilon: self.layer_norm_epsilon, output: self.precision.operands() }
    }
}

impl<B: Backend> Gpt2<B> {
    /// The same model with every dropout (embedding, attention, residual) at probability `p`.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.embd_pdrop = p;
        for block in &mut self.h {
            block.attn.set_dropout(p);
            block.mlp.set_dropout(p);
        }
        self
    }

    /// The same model with its matrix products in `precision` (see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        for block in &mut self.h {
            block.attn.precision = precision;
            block.mlp.precision = precision;
        }
        self
    }

    /// The same model for sampling with its matrix products in `precision`, its matrices (the
    /// q/k/v, output and MLP projections, and the token embedding the LM head shares) stored
    /// in the products' operand type: with bf16, a decoding step (which reads every weight
    /// once for a few rows) streams half the bytes. Biases, LayerNorms and position embeddings
    /// stay f32. Not for training: the optimizer updates f32 weights.
    pub fn for_sampling(self, precision: Precision) -> Self {
        let mut model = self.with_precision(precision);
        let operands = precision.operands();
        let stored = |weight: &Param<Tensor<B, 2>>| weight.clone().map(|tensor| tensor.cast(operands));
        model.wte.weight = stored(&model.wte.weight);
        for block in &mut model.h {
            for layer in [&mut block.attn.c_attn, &mut block.attn.c_proj, &mut block.mlp.c_fc, &mut block.mlp.c_proj] {
                layer.weight = stored(&layer.weight);
            }
        }
        model
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.h.len())
    }
}

/// The positions `[batch, time]` and attention mask `[batch, time, time]` of rows of `tokens`:
/// each row one document from position 0, or the `documents` packed side by side in it.
fn positions_and_mask<B: Backend>(
    tokens: &Tensor<B, 2, Int>,
    documents: Option<&Documents<B>>,
) -> (Tensor<B, 2, Int>, Tensor<B, 3, Bool>) {
    let [batch, time] = tokens.dims();
    let device = tokens.device();
    let causal = causal_mask::<B>(time, time, &device);
    match documents {
        Some(documents) => (documents.positions.clone(), documents.mask(causal)),
        None => (sequence_positions(0, batch, time, &device), causal.unsqueeze::<3>().expand([batch, time, time])),
    }
}

/// `weight` `[rows, d]` with rows of zeros after it up to `rows_wanted` (its own type).
fn padded_rows<B: Backend>(weight: Tensor<B, 2>, rows_wanted: usize) -> Tensor<B, 2> {
    let [rows, d] = weight.dims();
    if rows_wanted == rows {
        return weight;
    }
    let zeros = Tensor::<B, 2>::zeros([rows_wanted - rows, d], &weight.device()).cast(weight.dtype());
    Tensor::cat(vec![weight, zeros], 0)
}

/// `[batch, time]`: positions `start..start + time` in every row.
fn sequence_positions<B: Backend>(start: usize, batch: usize, time: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::<B, 1, Int>::arange(start as i64..(start + time) as i64, device).reshape([1, time]).expand([batch, time])
}

/// `[queries, keys]`, `true` where query `i` (the last `queries` of `keys` positions) must not
/// see key `j`: `j` is later than the query's own position.
pub fn causal_mask<B: Backend>(queries: usize, keys: usize, device: &B::Device) -> Tensor<B, 2, Bool> {
    let offset = (keys - queries) as i64;
    let query_positions = Tensor::<B, 1, Int>::arange(offset..offset + queries as i64, device)
        .reshape([queries, 1])
        .expand([queries, keys]);
    let key_positions = Tensor::<B, 1, Int>::arange(0..keys as i64, device).reshape([1, keys]).expand([queries, keys]);
    key_positions.greater(query_positions)
}
