//! Train/validation split by joke.

use sha2::{Digest, Sha256};

/// Which documents go to validation: the `round(n × val_fraction)` documents with the smallest
/// sha256 of (seed, text). A joke's side depends only on the seed and its own text, so adding
/// jokes to a corpus moves few others, and the same inputs always give the same split. At least
/// one document lands on each side when `val_fraction` is above zero and there are two or more.
pub fn validation_mask(texts: &[String], seed: u64, val_fraction: f64) -> Vec<bool> {
    let n = texts.len();
    let mut want = (n as f64 * val_fraction).round() as usize;
    if val_fraction > 0.0 && n >= 2 {
        want = want.clamp(1, n - 1);
    }
    let mut keyed: Vec<([u8; 32], usize)> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut hasher = Sha256::new();
            hasher.update(seed.to_le_bytes());
            hasher.update(text.as_bytes());
            (hasher.finalize().into(), i)
        })
        .collect();
    keyed.sort_unstable();
    let mut mask = vec![false; n];
    for &(_, i) in &keyed[..want.min(n)] {
        mask[i] = true;
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("joke number {i}")).collect()
    }

    #[test]
    fn split_is_deterministic_sized_and_seed_dependent() {
        let jokes = texts(1000);
        let a = validation_mask(&jokes, 7, 0.05);
        assert_eq!(a, validation_mask(&jokes, 7, 0.05));
        assert_eq!(a.iter().filter(|&&v| v).count(), 50);
        assert_ne!(a, validation_mask(&jokes, 8, 0.05));
        // A joke's side does not depend on its position in the corpus.
        let mut reversed = jokes.clone();
        reversed.reverse();
        let mut b = validation_mask(&reversed, 7, 0.05);
        b.reverse();
        assert_eq!(a, b);
    }

    #[test]
    fn tiny_corpora_keep_both_sides_non_empty() {
        assert_eq!(validation_mask(&texts(2), 0, 0.05).iter().filter(|&&v| v).count(), 1);
        assert_eq!(validation_mask(&texts(3), 0, 0.99).iter().filter(|&&v| v).count(), 2);
        assert!(validation_mask(&texts(5), 0, 0.0).iter().all(|&v| !v));
    }
}
