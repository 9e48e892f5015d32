//! Choosing the next token from logits: greedy, or sampling with repetition penalty,
//! temperature, top-k and top-p, applied in that order as `transformers`' `generate` does.

use rand_chacha::{rand_core::RngCore, ChaCha8Rng};
use std::{
    cmp::{Ordering, Reverse},
    collections::BinaryHeap,
};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decoding {
    /// Always take the most likely token (the other settings are then ignored).
    pub greedy: bool,
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Divide positive (multiply negative) logits of tokens already in the prompt or the
    /// sample by this (1: off), as `transformers` does.
    pub repetition_penalty: f32,
    /// `(k, n)`: use top-`k` for the first `n` generated tokens, then `top_k`. The original
    /// joke experiment used top-20 for the first tokens, then top-3.
    pub first_top_k: Option<(usize, usize)>,
}

impl Default for Decoding {
    fn default() -> Self {
        Self { greedy: false, temperature: 1.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, first_top_k: None }
    }
}

impl Decoding {
    /// Whether the next token is the most likely one as the model gives it (greedy, no
    /// repetition penalty): the device can take it, and only the ids need come back.
    pub fn needs_only_argmax(&self) -> bool {
        self.greedy && self.repetition_penalty == 1.0
    }

    /// These settings for logits the repetition penalty has been applied to already (by the
    /// device): the rest of the choice is the same.
    pub fn with_penalty_applied(&self) -> Self {
        Self { repetition_penalty: 1.0, ..self.clone() }
    }

    /// How many of each row's most likely tokens step `step` samples among, where they are all
    /// the host needs of a row of `vocab` logits (top-k sampling without repetition penalty,
    /// which reads the whole row): the device can find them and send back those alone.
    pub fn samples_among(&self, step: usize, vocab: usize) -> Option<usize> {
        if self.greedy || self.repetition_penalty != 1.0 {
            return None;
        }
        self.top_k_among(step, vocab)
    }

    /// The top-k in force at step `step`, where it keeps fewer than all `vocab` tokens.
    fn top_k_among(&self, step: usize, vocab: usize) -> Option<usize> {
        let top_k = match self.first_top_k {
            Some((k, n)) if step < n => k,
            _ => self.top_k,
        };
        (top_k > 0 && top_k < vocab).then_some(top_k)
    }

    /// The next token for one sequence, from its last-position `logits`; `history` holds the
    /// prompt and the tokens generated so far, `step` how many were generated.
    pub fn choose(&self, logits: &mut [f32], history: &[u32], step: usize, rng: &mut ChaCha8Rng) -> u32 {
        if self.repetition_penalty != 1.0 {
            let mut seen = vec![false; logits.len()];
            for &token in history {
                let t = token as usize;
                if t < logits.len() && !seen[t] {
                    seen[t] = true;
                    let l = &mut logits[t];
                    *l = if *l > 0.0 { *l / self.repetition_penalty } else { *l * self.repetition_penalty };
                }
            }
        }
        if self.greedy {
            return argmax(logits);
        }
        let tokens = logits.iter().enumerate().map(|(i, &logit)| Candidate { logit, id: i as u32 });
        let mut candidates: Vec<Candidate> = match self.top_k_among(step, logits.len()) {
            Some(top_k) => most_likely(tokens, top_k),
            None => tokens.collect(),
        };
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        self.draw(&candidates, rng)
    }

    /// Whether step `step` samples from the nucleus (top-p) of the whole vocabulary of `vocab`
    /// tokens, with no top-k and no repetition penalty left to apply: the device can find the
    /// most likely tokens and the softmax denominator of each row, for
    /// [`Decoding::draw_from_nucleus`].
    pub fn samples_nucleus_of_all(&self, step: usize, vocab: usize) -> bool {
        !self.greedy && self.repetition_penalty == 1.0 && self.top_p < 1.0 && self.top_k_among(step, vocab).is_none()
    }

    /// The temperature the logits are divided by (above 0).
    pub fn applied_temperature(&self) -> f32 {
        self.temperature.max(1e-6)
    }

    /// The token drawn from `candidates`, the most likely first (as [`Candidate`]s order), after
    /// temperature and top-p: the rest of [`choose`] once the top-k are known, which the device
    /// may have found ([`samples_among`]).
    ///
    /// [`choose`]: Decoding::choose
    /// [`samples_among`]: Decoding::samples_among
    pub fn draw(&self, candidates: &[Candidate], rng: &mut ChaCha8Rng) -> u32 {
        let weights = self.weights(candidates);
        let keep = match self.top_p < 1.0 {
            true => nucleus_size(&weights, weights.iter().sum(), self.top_p),
            false => weights.len(),
        };
        pick(candidates, &weights[..keep], rng)
    }

    /// The token [`draw`] would give from a whole row whose most likely tokens are `candidates`
    /// (the most likely first) and whose softmax denominator at this temperature is
    /// `denominator` (the device's, relative to the largest logit). `None`, the random stream
    /// untouched, where the nucleus may reach past `candidates`, or where its edge lies too close
    /// to top-p for the denominator's rounding to leave it certain.
    ///
    /// [`draw`]: Decoding::draw
    pub fn draw_from_nucleus(&self, candidates: &[Candidate], denominator: f64, rng: &mut ChaCha8Rng) -> Option<u32> {
        let weights = self.weights(candidates);
        let keep = certain_nucleus_size(&weights, denominator, self.top_p)?;
        Some(pick(candidates, &weights[..keep], rng))
    }

    /// Each candidate's `exp(logit / t − m)`, `m` the first (largest) one's `logit / t`.
    fn weights(&self, candidates: &[Candidate]) -> Vec<f64> {
        let temperature = self.applied_temperature();
        let max = candidates[0].logit / temperature;
        candidates.iter().map(|c| ((c.logit / temperature - max) as f64).exp()).collect()
    }
}

/// How far (relatively) the device's softmax denominator may be from the host's f64 sum over
/// the whole row, with a wide margin: f32 exponentials summed in a tree are ~1e-6 apart.
const DENOMINATOR_TOLERANCE: f64 = 1e-4;

/// How many of the most likely tokens (their `weights`, most likely first, out of `total`) the
/// nucleus keeps: the fewest whose probabilities reach `top_p`.
fn nucleus_size(weights: &[f64], total: f64, top_p: f32) -> usize {
    let mut cumulative = 0.0;
    weights
        .iter()
        .position(|w| {
            cumulative += w / total;
            cumulative >= top_p as f64
        })
        .map_or(weights.len(), |i| i + 1)
}

/// [`nucleus_size`] over the whole row, from its first `weights` and the device's
/// `denominator`: where the probabilities reach `top_p` within `weights` by more than the
/// denominator's error, and the ones before stay below it by as much; `None` otherwise.
fn certain_nucleus_size(weights: &[f64], denominator: f64, top_p: f32) -> Option<usize> {
    let (below, above) = (top_p as f64 * (1.0 - DENOMINATOR_TOLERANCE), top_p as f64 * (1.0 + DENOMINATOR_TOLERANCE));
    let mut cumulative = 0.0;
    for (i, w) in weights.iter().enumerate() {
        cumulative += w / denominator;
        if cumulative >= below {
            return (cumulative >= above).then_some(i + 1);
        }
    }
    None
}

/// A draw among `candidates` in proportion to `weights` (the first `weights.len()` of them).
fn pick(candidates: &[Candidate], weights: &[f64], rng: &mut ChaCha8Rng) -> u32 {
    let total: f64 = weights.iter().sum();
    let mut target = uniform(rng) * total;
    for (i, w) in weights.iter().enumerate() {
        if target < *w {
            return candidates[i].id;
        }
        target -= w;
    }
    candidates[weights.len() - 1].id
}

/// A token and its logit. The more likely compares greater; among equal logits, the lower id:
/// a total order, so the `k` most likely and their order are those of sorting the whole
/// vocabulary. (Temperature, applied after, keeps the order.)
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub logit: f32,
    pub id: u32,
}

impl Candidate {
    /// The candidates of one row of `Gpt2Backend::most_likely`'s output (the device's top k):
    /// its `k` logits, then their ids as floats, the most likely first.
    pub fn from_most_likely(row: &[f32]) -> Vec<Candidate> {
        let (logits, ids) = row.split_at(row.len() / 2);
        logits.iter().zip(ids).map(|(&logit, &id)| Candidate { logit, id: id as u32 }).collect()
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.logit.total_cmp(&other.logit).then(other.id.cmp(&self.id))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// The `k` greatest of `candidates`, in no order: one pass that keeps the best so far in a
/// min-heap, where sorting or selecting among the whole vocabulary copies all of it first.
fn most_likely(candidates: impl Iterator<Item = Candidate>, k: usize) -> Vec<Candidate> {
    let mut kept: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(k);
    for candidate in candidates {
        if kept.len() < k {
            kept.push(Reverse(candidate));
        } else if let Some(mut least) = kept.peek_mut().filter(|least| candidate > least.0) {
            *least = Reverse(candidate);
        }
    }
    kept.into_iter().map(|Reverse(candidate)| candidate).collect()
}

pub fn argmax(values: &[f32]) -> u32 {
    values.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
        as u32
}

/// A uniform draw from [0, 1) with 53 random bits.
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn draws(decoding: &Decoding, logits: &[f32], n: usize) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..n).map(|step| decoding.choose(&mut logits.to_vec(), &[], step, &mut rng)).collect()
    }

    #[test]
    fn greedy_and_top_k_1_take_the_maximum() {
        let logits = [0.1, 3.0, 2.9, -1.0];
        assert!(draws(&Decoding { greedy: true, ..Default::default() }, &logits, 20).iter().all(|&t| t == 1));
        assert!(draws(&Decoding { top_k: 1, ..Default::default() }, &logits, 20).iter().all(|&t| t == 1));
    }

    #[test]
    fn top_k_and_top_p_limit_the_candidates() {
        let logits = [2.0, 1.9, 1.8, 1.7, -5.0];
        let top_2 = draws(&Decoding { top_k: 2, ..Default::default() }, &logits, 500);
        assert!(top_2.iter().all(|&t| t < 2) && top_2.contains(&0) && top_2.contains(&1));
        // Probabilities ≈ 0.28, 0.26, 0.23, 0.21: top-p 0.5 keeps the first two.
        let top_p = draws(&Decoding { top_p: 0.5, ..Default::default() }, &logits, 500);
        assert!(top_p.iter().all(|&t| t < 2) && top_p.contains(&1));
        let schedule = Decoding { top_k: 1, first_top_k: Some((3, 2)), ..Default::default() };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let later: Vec<u32> = (2..50).map(|step| schedule.choose(&mut logits.to_vec(), &[], step, &mut rng)).collect();
        assert!(later.iter().all(|&t| t == 0), "after the first tokens, top-1");
        let early: Vec<u32> = (0..200).map(|_| schedule.choose(&mut logits.to_vec(), &[], 0, &mut rng)).collect();
        assert!(early.iter().all(|&t| t < 3) && early.contains(&2), "first tokens: top-3");
    }

    #[test]
    fn top_k_draws_what_sorting_everything_draws() {
        // Many equal logits: ties are broken by id, the same way as a full sort.
        let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 613) as f32 / 100.0).collect();
        for top_k in [1, 2, 40, 613, 4999] {
            let decoding = Decoding { top_k, ..Default::default() };
            let everything_sorted = Decoding { top_k: 0, ..decoding.clone() };
            let mut kept: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
            kept.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            kept.truncate(top_k);
            // The same draws as sampling from the top k logits alone, in sorted order.
            let mut truncated = vec![f32::NEG_INFINITY; logits.len()];
            for &(i, l) in &kept {
                truncated[i as usize] = l;
            }
            assert_eq!(draws(&decoding, &logits, 300), draws(&everything_sorted, &truncated, 300), "top-k {top_k}");
        }
    }

    #[test]
    fn low_temperature_sharpens_and_sampling_follows_probabilities() {
        let logits = [1.0, 0.0];
        let cold = draws(&Decoding { temperature: 0.01, ..Default::default() }, &logits, 200);
        assert!(cold.iter().all(|&t| t == 0));
        let warm = draws(&Decoding::default(), &logits, 4000);
        let share = warm.iter().filter(|&&t| t == 0).count() as f64 / 4000.0;
        let expected = 1.0 / (1.0 + (-1.0f64).exp()); // 0.731
        assert!((share - expected).abs() < 0.03, "share {share}, expected {expected}");
    }

    #[test]
    fn the_nucleus_among_the_most_likely_draws_what_the_whole_row_draws() {
        // Peaky rows (nuclei of 14 to 36 tokens) and flatter ones (80 and 4,495 tokens).
        for (spread, temperature, top_p) in
            [(40.0, 1.0, 0.9), (60.0, 0.7, 0.95), (40.0, 1.3, 0.5), (20.0, 1.0, 0.9), (0.1, 1.0, 0.9)]
        {
            let decoding = Decoding { top_p, temperature, ..Default::default() };
            let mut state = 1u64;
            let logits: Vec<f32> = (0..5000)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    spread * ((state >> 40) as f32 / (1u64 << 24) as f32).powi(8)
                })
                .collect();
            let mut sorted: Vec<Candidate> =
                logits.iter().enumerate().map(|(i, &logit)| Candidate { logit, id: i as u32 }).collect();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let weights = decoding.weights(&sorted);
            // The device's denominator: the host's sum, rounded as f32.
            let denominator = f64::from(weights.iter().sum::<f64>() as f32);
            let (mut whole, mut among) = (ChaCha8Rng::seed_from_u64(3), ChaCha8Rng::seed_from_u64(3));
            let drawn = decoding.draw_from_nucleus(&sorted[..64], denominator, &mut among);
            match drawn {
                Some(first) => {
                    let from_nucleus: Vec<u32> = std::iter::once(first)
                        .chain(
                            (1..200)
                                .map(|_| decoding.draw_from_nucleus(&sorted[..64], denominator, &mut among).unwrap()),
                        )
                        .collect();
                    let from_row: Vec<u32> = (0..200).map(|_| decoding.draw(&sorted, &mut whole)).collect();
                    assert_eq!(from_nucleus, from_row, "spread {spread}");
                }
                None => assert_eq!(among.next_u64(), whole.next_u64(), "spread {spread}: the stream untouched"),
            }
            let within = nucleus_size(&weights, weights.iter().sum(), top_p) <= 64;
            assert_eq!(drawn.is_some(), within, "spread {spread}: found among the 64 where the nucleus lies there");
        }
    }

    #[test]
    fn a_nucleus_edge_within_the_denominators_error_is_left_to_the_whole_row() {
        // Probabilities 0.5 and 0.25 (the denominator 2 leaves 0.25 to the rest of the row):
        // top-p 0.75 ends exactly at the second token, where a denominator off by its rounding
        // could move the edge.
        let candidates = [Candidate { logit: 0.0, id: 0 }, Candidate { logit: -(2f32.ln()), id: 1 }];
        let decoding = Decoding { top_p: 0.75, ..Default::default() };
        assert_eq!(decoding.draw_from_nucleus(&candidates, 2.0, &mut ChaCha8Rng::seed_from_u64(0)), None);
        let decoding = Decoding { top_p: 0.7, ..decoding };
        assert!(decoding.draw_from_nucleus(&candidates, 2.0, &mut ChaCha8Rng::seed_from_u64(0)).is_some());
    }

    #[test]
    fn repetition_penalty_follows_transformers() {
        let decoding = Decoding { greedy: true, repetition_penalty: 2.0, ..Default::default() };
        let mut logits = [4.0, 3.0, -1.0];
        // Token 0 was seen: 4.0 / 2 = 2.0 < 3.0, so token 1 wins; negative logits are multiplied.
        assert_eq!(decoding.choose(&mut logits, &[0, 2, 0], 0, &mut ChaCha8Rng::seed_from_u64(0)), 1);
        assert_eq!(logits, [2.0, 3.0, -2.0]);
    }
}
