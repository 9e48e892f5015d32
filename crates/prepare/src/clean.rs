//! Cleaning: each joke is normalised, then must survive every filter in [`DropReason`] order.

use crate::formats::RawJoke;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::{collections::HashSet, path::Path};

/// Why a record was left out. The order here is the order the checks run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Empty,
    TooShort,
    TooLong,
    LowScore,
    Blocklisted,
    Duplicate,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::Empty,
        DropReason::TooShort,
        DropReason::TooLong,
        DropReason::LowScore,
        DropReason::Blocklisted,
        DropReason::Duplicate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Empty => "empty",
            DropReason::TooShort => "too_short",
            DropReason::TooLong => "too_long",
            DropReason::LowScore => "low_score",
            DropReason::Blocklisted => "blocklisted",
            DropReason::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CleanOptions {
    /// Fewer characters than this (after trimming) and the joke is dropped.
    pub min_chars: usize,
    pub max_chars: Option<usize>,
    /// Jokes with a lower score are dropped; jokes without a score are kept.
    pub min_score: Option<f64>,
    pub blocklist: Blocklist,
}

/// Words and phrases that drop a joke when they occur in it as whole words, in any case.
#[derive(Debug, Clone, Default)]
pub struct Blocklist {
    words: HashSet<String>,
    /// Multi-word entries, normalised like [`words_of`] output joined by single spaces.
    phrases: Vec<String>,
}

impl Blocklist {
    /// One entry per line; blank lines and lines starting with `#` are ignored.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading blocklist {}", path.display()))?;
        Ok(Self::from_entries(text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))))
    }

    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Self {
        let mut list = Self::default();
        for entry in entries {
            let words = words_of(entry);
            match words.len() {
                0 => {}
                1 => {
                    list.words.extend(words);
                }
                _ => list.phrases.push(words.join(" ")),
            }
        }
        list
    }

    pub fn len(&self) -> usize {
        self.words.len() + self.phrases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn matches(&self, text: &str) -> bool {
        let words = words_of(text);
        if words.iter().any(|w| self.words.contains(w)) {
            return true;
        }
        if self.phrases.is_empty() {
            return false;
        }
        let joined = format!(" {} ", words.join(" "));
        self.phrases.iter().any(|p| joined.contains(&format!(" {p} ")))
    }
}

/// Lower-cased words: maximal runs of letters, digits and apostrophes.
fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Trim, and turn CRLF and lone CR line endings into LF.
pub fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n").trim().to_string()
}

/// Applies [`CleanOptions`] to a stream of records, counting what each step drops.
pub struct Cleaner {
    options: CleanOptions,
    seen: HashSet<[u8; 16]>,
    dropped: [u64; DropReason::ALL.len()],
}

impl Cleaner {
    pub fn new(options: CleanOptions) -> Self {
        Self { options, seen: HashSet::new(), dropped: [0; DropReason::ALL.len()] }
    }

    /// The cleaned joke, or `None` (counted) when a step drops it.
    pub fn accept(&mut self, raw: RawJoke) -> Option<String> {
        match self.check(raw) {
            Ok(text) => Some(text),
            Err(reason) => {
                self.dropped[reason as usize] += 1;
                None
            }
        }
    }

    fn check(&mut self, raw: RawJoke) -> Result<String, DropReason> {
        let text = normalise(&raw.text);
        let chars = text.chars().count();
        let options = &self.options;
        if text.is_empty() {
            return Err(DropReason::Empty);
        }
        if chars < options.min_chars {
            return Err(DropReason::TooShort);
        }
        if options.max_chars.is_some_and(|max| chars > max) {
            return Err(DropReason::TooLong);
        }
        if let (Some(min), Some(score)) = (options.min_score, raw.score) {
            if score < min {
                return Err(DropReason::LowScore);
            }
        }
        if !options.blocklist.is_empty() && options.blocklist.matches(&text) {
            return Err(DropReason::Blocklisted);
        }
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if !self.seen.insert(digest[..16].try_into().expect("16 bytes")) {
            return Err(DropReason::Duplicate);
        }
        Ok(text)
    }

    /// `(reason, count)` for every step, in the order they ran.
    pub fn dropped(&self) -> Vec<(String, u64)> {
        DropReason::ALL.iter().map(|r| (r.name().to_string(), self.dropped[*r as usize])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joke(text: &str, score: Option<f64>) -> RawJoke {
        RawJoke { text: text.into(), score }
    }

    #[test]
    fn each_step_counts_what_it_drops() {
        let options = CleanOptions {
            min_chars: 5,
            max_chars: Some(40),
            min_score: Some(10.0),
            blocklist: Blocklist::from_entries(["badword", "two words"]),
        };
        let mut cleaner = Cleaner::new(options);
        let inputs = [
            joke("  \r\n ", None),                     // empty
            joke("hey", None),                         // too short
            joke(&"long ".repeat(20), None),           // too long
            joke("a fine joke, low score", Some(3.0)), // low score
            joke("has BADWORD! in it", Some(50.0)),    // blocklisted (case, punctuation)
            joke("has two\nwords in it", None),        // blocklisted phrase across a newline
            joke("badwords is another word", None),    // kept: not a whole-word match
            joke("  Why?\r\nBecause.  ", None),        // kept, normalised
            joke("Why?\nBecause.", Some(11.0)),        // duplicate after normalising
        ];
        let kept: Vec<String> = inputs.into_iter().filter_map(|j| cleaner.accept(j)).collect();
        assert_eq!(kept, ["badwords is another word", "Why?\nBecause."]);
        let dropped: Vec<u64> = cleaner.dropped().into_iter().map(|(_, n)| n).collect();
        assert_eq!(dropped, [1, 1, 1, 1, 2, 1]);
    }
}
