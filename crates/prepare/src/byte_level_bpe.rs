//! A fast path for GPT-2-style tokenizers (byte-level BPE, no normalizer): the same ids as the
//! `tokenizers` crate, several times faster on joke corpora, because each distinct word is
//! merged once and then read from a cache, and the GPT-2 split runs as a hand-written scanner
//! instead of a regex over an offset-tracking string. `tokenizer_parity` and the randomised
//! comparison in this file's tests hold it to the `tokenizers` crate's output.

use rustc_hash::FxHashMap;
use serde_json::Value;
use unicode_general_category::{get_general_category, GeneralCategory as G};

/// Pieces longer than this (in bytes) are rare and are left to the `tokenizers` crate, whose
/// merge loop is not quadratic in the piece length.
pub const MAX_FAST_PIECE: usize = 256;

/// Byte-level BPE: byte → initial symbol, and (left, right) → (rank, merged id).
pub struct ByteLevelBpe {
    byte_ids: [u32; 256],
    merges: FxHashMap<(u32, u32), (u32, u32)>,
}

/// Ids of pieces already merged, kept by each worker for the length of a batch.
pub type PieceCache = FxHashMap<Box<str>, Box<[u32]>>;

impl ByteLevelBpe {
    /// `Some` when `tokenizer_json` is a plain GPT-2-style tokenizer this path reproduces
    /// exactly: a BPE model without dropout, prefixes or byte fallback, no normalizer, the
    /// ByteLevel pre-tokenizer with GPT-2's regex and no prefix space, and only special added
    /// tokens (which are never matched inside jokes).
    pub fn from_tokenizer_json(tokenizer_json: &Value) -> Option<Self> {
        let model = &tokenizer_json["model"];
        let plain_model = model["type"] == "BPE"
            && model["dropout"].is_null()
            && model["continuing_subword_prefix"].as_str().unwrap_or("").is_empty()
            && model["end_of_word_suffix"].as_str().unwrap_or("").is_empty()
            && model["byte_fallback"] != true
            && model["ignore_merges"] != true;
        let pre = &tokenizer_json["pre_tokenizer"];
        let byte_level =
            |p: &Value| p["type"] == "ByteLevel" && p["add_prefix_space"] != true && p["use_regex"] != false;
        let plain_pre = byte_level(pre)
            || (pre["type"] == "Sequence"
                && pre["pretokenizers"].as_array().is_some_and(|s| s.len() == 1 && byte_level(&s[0])));
        let only_special =
            tokenizer_json["added_tokens"].as_array().is_none_or(|a| a.iter().all(|t| t["special"] == true));
        if !(plain_model && plain_pre && tokenizer_json["normalizer"].is_null() && only_special) {
            return None;
        }

        let vocab: FxHashMap<&str, u32> = model["vocab"]
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.as_str(), v.as_u64()? as u32)))
            .collect::<Option<_>>()?;
        let byte_chars = bytes_to_unicode();
        let mut byte_ids = [0u32; 256];
        for (byte, id) in byte_ids.iter_mut().enumerate() {
            *id = *vocab.get(byte_chars[byte].to_string().as_str())?;
        }
        let mut merges = FxHashMap::default();
        for (rank, merge) in model["merges"].as_array()?.iter().enumerate() {
            let (left, right) = match merge {
                Value::String(s) => s.split_once(' ')?,
                Value::Array(pair) if pair.len() == 2 => (pair[0].as_str()?, pair[1].as_str()?),
                _ => return None,
            };
            let merged = *vocab.get(format!("{left}{right}").as_str())?;
            merges.insert((*vocab.get(left)?, *vocab.get(right)?), (rank as u32, merged));
        }
        Some(Self { byte_ids, merges })
    }

    /// Append the ids of `text` to `ids`. Pieces over [`MAX_FAST_PIECE`] bytes go to `slow`.
    pub fn encode(
        &self,
        text: &str,
        cache: &mut PieceCache,
        ids: &mut Vec<u32>,
        slow: &mut dyn FnMut(&str, &mut Vec<u32>),
    ) {
        for piece in Pieces::new(text) {
            if piece.len() > MAX_FAST_PIECE {
                slow(piece, ids);
            } else if let Some(cached) = cache.get(piece) {
                ids.extend_from_slice(cached);
            } else {
                let merged = self.merge(piece.as_bytes());
                ids.extend_from_slice(&merged);
                cache.insert(piece.into(), merged.into());
            }
        }
    }

    /// Apply merges lowest rank first (leftmost among equals), as the `tokenizers` crate does.
    fn merge(&self, bytes: &[u8]) -> Vec<u32> {
        let mut symbols: Vec<u32> = bytes.iter().map(|&b| self.byte_ids[b as usize]).collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(at, pair)| self.merges.get(&(pair[0], pair[1])).map(|&(rank, id)| (rank, at, id)))
                .min();
            let Some((_, at, id)) = best else { return symbols };
            symbols[at] = id;
            symbols.remove(at + 1);
        }
    }
}

/// GPT-2's byte → printable character table.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[byte as usize] = if printable {
            byte as char
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("valid scalar")
        };
    }
    table
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r' => Class::Space,
            _ => Class::Other,
        };
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter => {
            Class::Letter
        }
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// The pieces of GPT-2's pre-tokenizer regex,
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
/// scanned by hand.
struct Pieces<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Pieces<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    /// End of the run of characters of class `wanted` starting at byte `from`.
    fn run_end(&self, from: usize, wanted: Class) -> usize {
        self.text[from..].char_indices().find(|&(_, c)| class(c) != wanted).map_or(self.text.len(), |(i, _)| from + i)
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.at;
        let rest = &self.text[start..];
        let mut chars = rest.chars();
        let first = chars.next()?;
        let end = if let Some(len) =
            ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].iter().find(|c| rest.starts_with(**c)).map(|c| c.len())
        {
            start + len
        } else {
            let (body_start, body_class) = match (first, chars.next()) {
                (' ', Some(next)) if class(next) != Class::Space => (start + 1, class(next)),
                _ => (start, class(first)),
            };
            if body_class != Class::Space {
                self.run_end(body_start, body_class)
            } else {
                // Whitespace: the whole run at the end of the text, else all but its last
                // character (which may start the next piece as its optional space); a single
                // whitespace character before text stands alone.
                let run_end = self.run_end(start, Class::Space);
                let last = self.text[..run_end].char_indices().next_back().map_or(start, |(i, _)| i);
                if run_end == self.text.len() || last == start {
                    run_end
                } else {
                    last
                }
            }
        };
        self.at = end;
        Some(&self.text[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2_json() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/tokenizers/gpt2/tokenizer.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn splits_like_the_gpt2_regex() {
        let pieces: Vec<&str> = Pieces::new("Hello  world's 123\n\n  ok?! \t").collect();
        assert_eq!(pieces, ["Hello", " ", " world", "'s", " 123", "\n\n ", " ok", "?!", " \t"]);
        let pieces: Vec<&str> = Pieces::new("a\nb ''s 'S x").collect();
        assert_eq!(pieces, ["a", "\n", "b", " ''", "s", " '", "S", " x"]);
    }

    /// Random strings over awkward characters: the fast path must give the crate's ids.
    #[test]
    fn matches_the_tokenizers_crate_on_random_text() {
        let json = gpt2_json();
        let fast = ByteLevelBpe::from_tokenizer_json(&json).expect("GPT-2 qualifies");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/tokenizers/gpt2/tokenizer.json");
        let mut reference = tokenizers::Tokenizer::from_file(path).unwrap();
        reference.set_encode_special_tokens(true);
        let alphabet: Vec<char> = "aZé ß  \t\n\r\n0 9 ¹ Ⅻ '''s'll'd'S .,!?-_—“”()😀👨‍👩‍👧\u{200b}\u{a0}\u{3000}\u{2028}\u{85}日本語한국어ไทยहिन्दीΩмир\u{301}<|endoftext|>"
            .chars()
            .collect();
        let mut state = 0x2545F4914F6CDD1Du64;
        let mut cache = PieceCache::default();
        for _ in 0..3000 {
            let mut text = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let mut ids = Vec::new();
            fast.encode(&text, &mut cache, &mut ids, &mut |_, _| unreachable!("short pieces only"));
            let expected = reference.encode_fast(text.as_str(), false).unwrap();
            assert_eq!(ids, expected.get_ids(), "text {text:?}");
        }
    }

    #[test]
    fn other_tokenizer_shapes_are_left_to_the_crate() {
        let mut json = gpt2_json();
        json["normalizer"] = serde_json::json!({"type": "NFC"});
        assert!(ByteLevelBpe::from_tokenizer_json(&json).is_none());
        let mut json = gpt2_json();
        json["pre_tokenizer"]["add_prefix_space"] = Value::Bool(true);
        assert!(ByteLevelBpe::from_tokenizer_json(&json).is_none());
    }
}
