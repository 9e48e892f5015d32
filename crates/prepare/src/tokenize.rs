//! The tokenizer: loaded from a `tokenizer.json` path or a Hub id, used in parallel.

use crate::template::{Template, TemplatePart};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// The end-of-text token GPT-2 tokenizers carry; templates refer to it by its content.
pub const GPT2_EOS: &str = "<|endoftext|>";

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
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
        let given = Path::new(spec);
        let path = if given.is_dir() {
            given.join("tokenizer.json")
        } else if given.exists() || !fetch::looks_like_hub_id(spec) {
            given.to_path_buf()
        } else {
            fetch::hub_file(spec, "tokenizer.json")?
        };
        if !path.is_file() {
            bail!("tokenizer {}: no such file (give a tokenizer.json, a directory holding one, or a Hub id)", path.display());
        }
        let sha256 = shards::sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow!("{}: not a valid tokenizer.json: {e}", path.display()))?;
        // Jokes are text: a joke that happens to contain "<|endoftext|>" must not end itself.
        inner.set_encode_special_tokens(true);
        let specials = special_tokens(&inner);
        let (eos_token, eos_id) = match specials.get(GPT2_EOS) {
            Some(&id) => (GPT2_EOS.to_string(), id),
            None => specials
                .iter()
                .min_by_key(|(_, &id)| id)
                .map(|(t, &id)| (t.clone(), id))
                .ok_or_else(|| anyhow!("{}: the tokenizer has no special end-of-text token", path.display()))?,
        };
        Ok(Self {
            vocab_size: inner.get_vocab_size(true) as u32,
            inner,
            source: spec.to_string(),
            path,
            sha256,
            eos_token,
            eos_id,
        })
    }

    /// Special tokens by content, for [`Template::parse`].
    pub fn special_tokens(&self) -> HashMap<String, u32> {
        special_tokens(&self.inner)
    }

    /// Token ids of one templated joke.
    pub fn encode(&self, template: &Template, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for part in template.parts(text) {
            match part {
                TemplatePart::Special(id) => ids.push(id),
                TemplatePart::Plain(run) => {
                    let encoding = self.inner.encode_fast(run, false).map_err(|e| anyhow!("tokenizing: {e}"))?;
                    ids.extend_from_slice(encoding.get_ids());
                }
            }
        }
        Ok(ids)
    }

    /// Token ids of every joke, computed on all cores, in input order.
    pub fn encode_all(&self, template: &Template, texts: &[String], label: &str) -> Result<Vec<Vec<u32>>> {
        let bar = ProgressBar::new(texts.len() as u64).with_style(
            ProgressStyle::with_template("{msg:>10} {bar:30} {pos}/{len} jokes {per_sec} eta {eta}").expect("valid template"),
        );
        bar.set_message(format!("tokenize {label}"));
        let encoded = texts.par_iter().progress_with(bar.clone()).map(|t| self.encode(template, t)).collect();
        bar.finish_and_clear();
        encoded
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
