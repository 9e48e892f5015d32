//! Generating several samples of one prompt together, with the KV cache.

use crate::{
    decoding::{Candidate, Decoding},
    pace::Pace,
};
use burn::{prelude::*, tensor::Transaction};
use gpt2::{Gpt2, Gpt2Backend};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::{
    borrow::Cow,
    time::{Duration, Instant},
};

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// The model produced the end-of-text token.
    Eos,
    /// `max_new_tokens` (or the model's last position) was reached.
    Length,
    /// A `--stop` string appeared; the text ends before it.
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Generated token ids only: no prompt, no end-of-text token. After a stop text, the
    /// tokens wholly before it.
    pub tokens: Vec<u32>,
    /// The generated text; after a stop text, all of it up to where the stop text starts
    /// (which may be inside a token).
    pub text: String,
    pub finish: Finish,
}

pub struct Limits<'a> {
    pub max_new_tokens: usize,
    pub eos_id: u32,
    /// Stop strings, checked on the decoded text of each sample.
    pub stop: &'a [String],
}

/// What stays the same from one batch of samples to the next.
pub struct Generator<'a, B: Gpt2Backend> {
    pub model: &'a Gpt2<B>,
    pub decoding: &'a Decoding,
    pub limits: Limits<'a>,
    /// Token ids to text (for stop strings and the samples' text).
    pub decode: &'a dyn Fn(&[u32]) -> String,
    pub device: &'a B::Device,
}

impl<B: Gpt2Backend> Generator<'_, B> {
    /// One continuation of `prompt` per random stream in `rngs`, decoded as one batch. Each
    /// sample draws only from its own stream, so what it says does not depend on when the
    /// others end. `on_token(row, text)` sees each sample's text grow, never with a whole stop
    /// string in it (its start may be at the end). The batch's pace is added to `pace`.
    pub fn generate(
        &self,
        prompt: &[u32],
        rngs: &mut [ChaCha8Rng],
        on_token: &mut dyn FnMut(usize, &str),
        pace: &mut Pace,
    ) -> Vec<Generated> {
        let start = Instant::now();
        let Generator { model, decoding, ref limits, decode, device } = *self;
        assert!(!prompt.is_empty(), "a prompt needs at least one token");
        let samples = rngs.len();
        let n_positions = model.wpe.weight.dims()[0];
        let mut results: Vec<Option<Generated>> = vec![None; samples];
        let mut generated: Vec<Vec<u32>> = vec![Vec::new(); samples];
        let mut stopped_text: Vec<Option<String>> = vec![None; samples];
        let mut active: Vec<usize> = (0..samples).collect();
        let mut cache = model.new_cache();
        let ids: Vec<i64> = (0..samples).flat_map(|_| prompt.iter().map(|&t| t as i64)).collect();
        let mut input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [samples, prompt.len()]), device);
        let (mut tokens, mut first_tokens) = (0, Duration::ZERO);

        for step in 0..limits.max_new_tokens {
            let logits = model.next_token_logits(input, &mut cache);
            let vocab = logits.dims()[1];
            // The repetition penalty on the device where it can be, so that the step reads
            // back what it would without one; on the host otherwise, with the rest.
            let (logits, decoding) = if decoding.repetition_penalty == 1.0 {
                (logits, Cow::Borrowed(decoding))
            } else {
                let seen = || seen_tokens(prompt, active.iter().map(|&row| &generated[row][..]), vocab, device);
                match B::penalise_seen(logits, seen, decoding.repetition_penalty) {
                    Ok(penalised) => (penalised, Cow::Owned(decoding.with_penalty_applied())),
                    Err(logits) => (logits, Cow::Borrowed(decoding)),
                }
            };
            // The device sends back only what the host needs: the tokens themselves where the
            // device can take them, the few tokens top-k sampling draws among, the most likely
            // tokens and the softmax denominators for top-p over the whole vocabulary, or else
            // every row's logits.
            let read_back = if decoding.needs_only_argmax() {
                ReadBack::Tokens(greedy_tokens(logits))
            } else if let Some(best) =
                decoding.samples_among(step, vocab).and_then(|k| B::most_likely(logits.clone(), k))
            {
                ReadBack::MostLikely(floats(best))
            } else if let Some((best, denominators)) = decoding
                .samples_nucleus_of_all(step, vocab)
                .then(|| nucleus_candidates(&logits, decoding.applied_temperature()))
                .flatten()
            {
                ReadBack::Nucleus { best, denominators, logits }
            } else {
                ReadBack::Logits(floats(logits))
            };
            // Where the nucleus may reach past the device's candidates, the rows are read after all.
            let mut whole_rows = None;
            if step == 0 {
                first_tokens = start.elapsed();
            }
            tokens += active.len();
            let mut still_active = Vec::new();
            let mut next = Vec::new();
            for (position, &row) in active.iter().enumerate() {
                let token = match &read_back {
                    ReadBack::Tokens(ids) => ids[position] as u32,
                    ReadBack::MostLikely(best) => {
                        let candidates = Candidate::from_most_likely(row_of(best, active.len(), position));
                        decoding.draw(&candidates, &mut rngs[row])
                    }
                    ReadBack::Nucleus { best, denominators, logits } => {
                        let candidates = Candidate::from_most_likely(row_of(best, active.len(), position));
                        let denominator = f64::from(denominators[position]);
                        decoding.draw_from_nucleus(&candidates, denominator, &mut rngs[row]).unwrap_or_else(|| {
                            let rows = whole_rows.get_or_insert_with(|| floats(logits.clone()));
                            let logits = &mut row_of(rows, active.len(), position).to_vec();
                            decoding.choose(logits, &[], step, &mut rngs[row])
                        })
                    }
                    ReadBack::Logits(last) => {
                        let history: Vec<u32> = prompt.iter().chain(&generated[row]).copied().collect();
                        let logits = &mut row_of(last, active.len(), position).to_vec();
                        decoding.choose(logits, &history, step, &mut rngs[row])
                    }
                };
                let finish = if token == limits.eos_id {
                    Some(Finish::Eos)
                } else {
                    generated[row].push(token);
                    let text = decode(&generated[row]);
                    if let Some(cut) = limits.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                        generated[row] = trim_to_text(&generated[row], &text[..cut], decode);
                        stopped_text[row] = Some(text[..cut].to_string());
                        Some(Finish::Stop)
                    } else {
                        on_token(row, &text);
                        (prompt.len() + generated[row].len() >= n_positions).then_some(Finish::Length)
                    }
                };
                match finish {
                    Some(finish) => {
                        let tokens = std::mem::take(&mut generated[row]);
                        let text = stopped_text[row].take().unwrap_or_else(|| decode(&tokens));
                        results[row] = Some(Generated { tokens, text, finish });
                    }
                    None => {
                        still_active.push(position as i64);
                        next.push(token as i64);
                    }
                }
            }
            if still_active.is_empty() {
                break;
            }
            if still_active.len() < active.len() {
                cache.select_rows(Tensor::from_data(
                    TensorData::new(still_active.clone(), [still_active.len()]),
                    device,
                ));
                active = still_active.iter().map(|&p| active[p as usize]).collect();
            }
            input = Tensor::from_data(TensorData::new(next, [active.len(), 1]), device);
        }
        pace.add(Pace { batches: 1, tokens, first_tokens, elapsed: start.elapsed() });
        results
            .into_iter()
            .zip(generated)
            .map(|(result, tokens)| {
                result.unwrap_or_else(|| Generated { text: decode(&tokens), tokens, finish: Finish::Length })
            })
            .collect()
    }
}

/// The tokens each row has seen, its prompt's and its own, each once: `[rows, n]`, shorter
/// rows padded with `vocab` (no token), for [`Gpt2Backend::penalise_seen`].
fn seen_tokens<'a, B: Gpt2Backend>(
    prompt: &[u32],
    generated: impl Iterator<Item = &'a [u32]>,
    vocab: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let rows: Vec<Vec<u32>> = generated
        .map(|own| {
            let mut seen: Vec<u32> = prompt.iter().chain(own).copied().collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        })
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|seen| seen.iter().map(|&token| i64::from(token)).chain(std::iter::repeat(vocab as i64)).take(width))
        .collect();
    Tensor::from_data(TensorData::new(ids, [rows.len(), width]), device)
}

/// What a decoding step reads back from the device: each row's next token, its most likely
/// tokens (`Gpt2Backend::most_likely`'s logits then ids) for the host to draw among, those and
/// its softmax denominator for top-p, or all its logits for the host to choose from.
enum ReadBack<B: Backend> {
    Tokens(Vec<i64>),
    MostLikely(Vec<f32>),
    /// With the logits, still on the device, for the rows whose nucleus may be larger.
    Nucleus {
        best: Vec<f32>,
        denominators: Vec<f32>,
        logits: Tensor<B, 2>,
    },
    Logits(Vec<f32>),
}

/// Each row's most likely token, the first of equal logits (as `torch.argmax`): found by the
/// device's most-likely kernel where it has one, a cube a row (burn's `argmax` on CubeCL
/// backends is one thread a row down all its 50,257 logits), else by burn's `argmax`.
fn greedy_tokens<B: Gpt2Backend>(logits: Tensor<B, 2>) -> Vec<i64> {
    match B::most_likely(logits.clone(), 1) {
        // Each row's logit, then its id.
        Some(best) => floats(best).chunks(2).map(|best| best[1] as i64).collect(),
        None => logits.argmax(1).into_data().convert::<i64>().to_vec::<i64>().expect("token ids"),
    }
}

/// Most tokens the device hands over for top-p sampling over the whole vocabulary: the most its
/// top-k kernel finds (`cube_kernels::MAX_MOST_LIKELY`). A nucleus of more is read whole.
const NUCLEUS_CANDIDATES: usize = 64;

fn floats<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    data_floats(tensor.into_data())
}

fn data_floats(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().to_vec::<f32>().expect("floats")
}

/// Row `position` of `rows` equal rows laid end to end in `values`.
fn row_of(values: &[f32], rows: usize, position: usize) -> &[f32] {
    let width = values.len() / rows;
    &values[position * width..(position + 1) * width]
}

/// Each row's [`NUCLEUS_CANDIDATES`] most likely tokens (`Gpt2Backend::most_likely`'s layout)
/// and its softmax denominator at `temperature`, read back together; `None` where the device
/// leaves them to the host.
fn nucleus_candidates<B: Gpt2Backend>(logits: &Tensor<B, 2>, temperature: f32) -> Option<(Vec<f32>, Vec<f32>)> {
    let vocab = logits.dims()[1];
    let best = B::most_likely(logits.clone(), NUCLEUS_CANDIDATES.min(vocab))?;
    let denominators = B::softmax_denominators(logits.clone(), temperature)?;
    let [best, denominators] =
        <[_; 2]>::try_from(Transaction::default().register(best).register(denominators).execute())
            .unwrap_or_else(|_| panic!("two tensors read"));
    Some((data_floats(best), data_floats(denominators)))
}

/// The longest prefix of `tokens` whose text does not go past `text` (the part before a stop
/// string).
fn trim_to_text(tokens: &[u32], text: &str, decode: &dyn Fn(&[u32]) -> String) -> Vec<u32> {
    let mut keep = tokens.len();
    while keep > 0 && decode(&tokens[..keep]).len() > text.len() {
        keep -= 1;
    }
    tokens[..keep].to_vec()
}
