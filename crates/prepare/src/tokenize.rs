//! The tokenizer: loaded from a `tokenizer.json` path, a directory or a Hub id, used in parallel.

use crate::{
    byte_level_bpe::{ByteLevelBpe, PieceCache},
    template::{Template, TemplatePart},
};
use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::{collections::HashMap, path::PathBuf};

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer's fast path, for GPT-2-style tokenizers.
    fast: Option<ByteLevelBpe>,
    /// What the user named: a path or a Hub id.
    pub source: String,
    /// The `tokenizer.json` file that was loaded.
    pub path: PathBuf,
    pub sha256: String,
    pub vocab_size: u32,
    pub eos_token: String,
    pub eos_id: u32,
}

impl TextTokenizer {
    /// `spec` is a `tokenizer.json` file, a directory holding one, or a Hugging Face Hub id.
    pub fn load(spec: &str) -> Result<Self> {
        let path = tokenizer::locate(spec)?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let sha256 = artifact::sha256_bytes(&bytes);
        let mut inner = tokenizer::from_bytes(&bytes, &path)?;
        let fast = serde_json::from_slice(&bytes).ok().and_then(|json| ByteLevelBpe::from_tokenizer_json(&json));
        // Jokes are text: a joke that happens to contain "<|endoftext|>" must not end itself.
        inner.set_encode_special_tokens(true);
        let specials = special_tokens(&inner);
        let (eos_token, eos_id) = match specials.get(tokenizer::END_OF_TEXT) {
            Some(&id) => (tokenizer::END_OF_TEXT.to_string(), id),
            None => specials
                .iter()
                .min_by_key(|(_, &id)| id)
                .map(|(t, &id)| (t.clone(), id))
                .ok_or_else(|| anyhow!("{}: the tokenizer has no special end-of-text token", path.display()))?,
        };
        Ok(Self {
            vocab_size: inner.get_vocab_size(true) as u32,
            inner,
            fast,
            source: spec.to_string(),
            path,
            sha256,
            eos_token,
            eos_id,
        })
    }

    /// Whether ids come from the GPT-2 fast path rather than the `tokenizers` crate.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Special tokens by content, for [`Template::parse`].
    pub fn special_tokens(&self) -> HashMap<String, u32> {
        special_tokens(&self.inner)
    }

    /// Token ids of one templated joke.
    pub fn encode(&self, template: &Template, text: &str) -> Result<Vec<u32>> {
        self.encode_cached(template, text, &mut PieceCache::default())
    }

    fn encode_cached(&self, template: &Template, text: &str, cache: &mut PieceCache) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for part in template.parts(text) {
            match part {
                TemplatePart::Special(id) => ids.push(id),
                TemplatePart::Plain(run) => match &self.fast {
                    Some(fast) => {
                        let mut failure = None;
                        fast.encode(&run, cache, &mut ids, &mut |piece, ids| match self.encode_plain(piece) {
                            Ok(piece_ids) => ids.extend(piece_ids),
                            Err(error) => failure = Some(error),
                        });
                        if let Some(error) = failure {
                            return Err(error);
                        }
                    }
                    None => ids.extend(self.encode_plain(&run)?),
                },
            }
        }
        Ok(ids)
    }

    fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, false).map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of every joke, computed on all cores, in input order.
    pub fn encode_all(&self, template: &Template, texts: &[String], label: &str) -> Result<Vec<Vec<u32>>> {
        let bar = ProgressBar::new(texts.len() as u64).with_style(
            ProgressStyle::with_template("{msg:>10} {bar:30} {pos}/{len} jokes {per_sec} eta {eta}")
                .expect("valid template"),
        );
        bar.set_message(format!("tokenize {label}"));
        // Large chunks, each with its own cache of merged words: most words repeat.
        let chunk = texts.len().div_ceil(rayon::current_num_threads() * 8).max(1);
        let chunks: Result<Vec<Vec<Vec<u32>>>> = texts
            .par_chunks(chunk)
            .map(|chunk| {
                let mut cache = PieceCache::default();
                let encoded = chunk.iter().map(|text| self.encode_cached(template, text, &mut cache)).collect();
                bar.inc(chunk.len() as u64);
                encoded
            })
            .collect();
        bar.finish_and_clear();
        Ok(chunks?.into_iter().flatten().collect())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| anyhow!("decoding tokens: {e}"))
    }
}

fn special_tokens(tokenizer: &tokenizers::Tokenizer) -> HashMap<String, u32> {
    tokenizer
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, token)| token.special)
        .map(|(id, token)| (token.content, id))
        .collect()
}
