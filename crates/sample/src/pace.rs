//! How fast a run generated, as its last line on the terminal says: tokens a second, and how
//! long each batch waited for its first tokens (the prompt's pass through the model).

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pace {
    /// Batches of samples decoded.
    pub batches: usize,
    /// Tokens chosen, every row of every step (a step of 8 samples makes 8).
    pub tokens: usize,
    /// From each batch's start to its first tokens on the host, summed over the batches.
    pub first_tokens: Duration,
    /// The batches' whole time, summed.
    pub elapsed: Duration,
}

impl Pace {
    pub fn add(&mut self, other: Pace) {
        self.batches += other.batches;
        self.tokens += other.tokens;
        self.first_tokens += other.first_tokens;
        self.elapsed += other.elapsed;
    }

    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// One line for the terminal: "1024 tokens in 4.10 s (250 tokens/s); first tokens 35 ms
    /// after a batch's start".
    pub fn summary(&self) -> String {
        let first = self.first_tokens.as_secs_f64() * 1e3 / self.batches.max(1) as f64;
        let mean = if self.batches > 1 { format!(" (the mean of {} batches)", self.batches) } else { String::new() };
        format!(
            "{} tokens in {:.2} s ({:.0} tokens/s); first tokens {first:.0} ms after a batch's start{mean}",
            self.tokens,
            self.elapsed.as_secs_f64(),
            self.tokens_per_second()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_batches_and_says_their_means() {
        let mut pace = Pace::default();
        let batch = |tokens, first_ms, ms| Pace {
            batches: 1,
            tokens,
            first_tokens: Duration::from_millis(first_ms),
            elapsed: Duration::from_millis(ms),
        };
        pace.add(batch(300, 30, 1000));
        assert_eq!(pace.summary(), "300 tokens in 1.00 s (300 tokens/s); first tokens 30 ms after a batch's start");
        pace.add(batch(100, 50, 1000));
        assert_eq!(pace.tokens_per_second(), 200.0);
        assert_eq!(
            pace.summary(),
            "400 tokens in 2.00 s (200 tokens/s); first tokens 40 ms after a batch's start (the mean of 2 batches)"
        );
    }
}
