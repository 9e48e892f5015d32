//! `--against DATA_DIR`: does a sample reproduce a training joke rather than make a new one?
//!
//! A sample counts as recited when its tokens (prompt and generated, with the end-of-text
//! token when it ended on one) are exactly a training document, or when any run of
//! [`RUN_TOKENS`] consecutive tokens of it occurs in a training document. 32 GPT-2 tokens are
//! about 25 words: longer than the stock phrases jokes share ("A man walks into a bar and the
//! bartender says"), shorter than any joke worth calling the same joke.

use anyhow::Result;
use shards::Dataset;
use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hash, Hasher},
    path::Path,
};

pub const RUN_TOKENS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recited {
    /// The whole sample is a training joke.
    WholeJoke,
    /// A run of at least [`RUN_TOKENS`] tokens comes from a training joke.
    LongRun,
}

impl std::fmt::Display for Recited {
    /// What the terminal says of a recited sample.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recited::WholeJoke => f.write_str("the whole joke"),
            Recited::LongRun => write!(f, "a run of {RUN_TOKENS} or more tokens"),
        }
    }
}

/// What `--against` found of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recitation {
    /// No `--against`: not looked for (the record has no `recited` field).
    NotChecked,
    /// Looked for and not found: a new joke (`"recited": null`).
    New,
    /// Found (`"recited": "whole_joke"` or `"long_run"`).
    Recited(Recited),
}

impl Recitation {
    pub fn not_checked(&self) -> bool {
        *self == Recitation::NotChecked
    }
}

impl serde::Serialize for Recitation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Recitation::Recited(kind) => kind.serialize(serializer),
            Recitation::New | Recitation::NotChecked => serializer.serialize_none(),
        }
    }
}

pub struct TrainingJokes {
    whole: HashSet<Vec<u32>>,
    runs: HashSet<u64>,
}

impl TrainingJokes {
    /// The train split of a prepared dataset.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self::from_documents(Dataset::open(dir)?.read_split("train")?.documents()))
    }

    pub fn from_documents(documents: Vec<Vec<u32>>) -> Self {
        let runs = documents.iter().flat_map(|d| d.windows(RUN_TOKENS).map(hash)).collect();
        Self { whole: documents.into_iter().collect(), runs }
    }

    /// `sequence`: the prompt, the generated tokens, and the end-of-text token if it ended so.
    pub fn check(&self, sequence: &[u32]) -> Option<Recited> {
        if self.whole.contains(sequence) {
            Some(Recited::WholeJoke)
        } else if sequence.windows(RUN_TOKENS).any(|w| self.runs.contains(&hash(w))) {
            Some(Recited::LongRun)
        } else {
            None
        }
    }
}

fn hash(tokens: &[u32]) -> u64 {
    let mut hasher = DefaultHasher::new();
    tokens.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_jokes_and_long_runs_are_caught_and_new_text_is_not() {
        let joke: Vec<u32> = (100..160).collect();
        let short = vec![1, 2, 3, 4];
        let jokes = TrainingJokes::from_documents(vec![joke.clone(), short.clone()]);
        assert_eq!(jokes.check(&short), Some(Recited::WholeJoke));
        assert_eq!(jokes.check(&joke), Some(Recited::WholeJoke));
        let mut borrowed = vec![7, 8, 9];
        borrowed.extend(&joke[10..10 + RUN_TOKENS]);
        assert_eq!(jokes.check(&borrowed), Some(Recited::LongRun));
        let mut almost = vec![7, 8, 9];
        almost.extend(&joke[10..10 + RUN_TOKENS - 1]);
        assert_eq!(jokes.check(&almost), None);
        assert_eq!(jokes.check(&[1, 2, 3]), None);
    }
}
