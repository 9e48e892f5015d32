//! Token ids must equal those of Hugging Face `tokenizers` (Python), recorded by
//! scripts/fixtures/tokenizer_parity.py.

mod common;

use prepare::{template::Template, tokenize::TextTokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    template: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    joke: String,
    ids: Vec<u32>,
}

#[test]
fn ids_match_hugging_face_tokenizers() {
    let fixture: Fixture =
        serde_json::from_str(include_str!("fixtures/tokenizer_parity.json")).expect("fixture parses");
    let tokenizer = TextTokenizer::load(&common::gpt2_tokenizer().display().to_string()).unwrap();
    assert!(tokenizer.is_fast(), "GPT-2's tokenizer takes the fast path, so this checks it");
    let template = Template::parse(&fixture.template, &tokenizer.special_tokens()).unwrap();
    assert!(fixture.cases.len() >= 10);
    for case in &fixture.cases {
        let ids = tokenizer.encode(&template, &case.joke).unwrap();
        assert_eq!(ids, case.ids, "joke {:?}", case.joke);
        // Byte-level BPE decodes back to the exact templated text, which `dump --docs` relies on.
        assert_eq!(tokenizer.decode(&ids).unwrap(), template.render(&case.joke));
    }
    let all: Vec<String> = fixture.cases.iter().map(|c| c.joke.clone()).collect();
    let batch = tokenizer.encode_all(&template, &all, "test").unwrap();
    assert_eq!(batch, fixture.cases.iter().map(|c| c.ids.clone()).collect::<Vec<_>>());
}

#[test]
fn eos_and_vocabulary_come_from_the_tokenizer() {
    let tokenizer = TextTokenizer::load(&common::gpt2_tokenizer().display().to_string()).unwrap();
    assert_eq!((tokenizer.eos_token.as_str(), tokenizer.eos_id, tokenizer.vocab_size), ("<|endoftext|>", 50256, 50257));
    let dir = common::gpt2_tokenizer().parent().unwrap().display().to_string();
    assert_eq!(TextTokenizer::load(&dir).unwrap().sha256, tokenizer.sha256, "a directory loads its tokenizer.json");
}

#[test]
fn a_missing_or_invalid_tokenizer_is_named() {
    let error = TextTokenizer::load("/no/such/tokenizer.json").err().unwrap().to_string();
    assert!(error.contains("/no/such/tokenizer.json"), "{error}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "{}").unwrap();
    let error = TextTokenizer::load(&file.path().display().to_string()).err().unwrap().to_string();
    assert!(error.contains("not a valid tokenizer.json"), "{error}");
}
