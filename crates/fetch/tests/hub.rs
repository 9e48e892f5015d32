//! Hub files resolve from the cache layout that the Hub's own clients write, with no network.

use fetch::{hub_file, local_or_hub, looks_like_hub_id, Named};
use std::path::Path;

#[test]
fn hub_ids_and_paths_are_told_apart() {
    assert!(looks_like_hub_id("openai-community/gpt2-medium"));
    assert!(looks_like_hub_id("gpt2"));
    assert!(!looks_like_hub_id("./models/gpt2"));
    assert!(!looks_like_hub_id("/abs/path"));
    assert!(!looks_like_hub_id("a/b/c"));
}

#[test]
fn a_path_that_exists_wins_over_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("gpt2");
    std::fs::create_dir(&local).unwrap();
    let name = local.to_str().unwrap();
    assert_eq!(local_or_hub(name), Named::Local(&local));
    assert_eq!(local_or_hub("someone/gpt2"), Named::Hub("someone/gpt2"));
    assert_eq!(local_or_hub("./no/such/dir"), Named::Local(Path::new("./no/such/dir")));
}

#[test]
fn cached_files_resolve_offline_and_missing_ones_say_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--openai-community--gpt2");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    std::fs::write(snapshot.join("tokenizer.json"), "{}").unwrap();
    // Both variables are read by this process only; no other test in this binary reads them.
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    assert_eq!(hub_file("openai-community/gpt2", "tokenizer.json").unwrap(), snapshot.join("tokenizer.json"));
    let error = hub_file("openai-community/gpt2", "model.safetensors").unwrap_err().to_string();
    assert!(error.contains("huggingface-cli download openai-community/gpt2 model.safetensors"), "{error}");
    assert!(error.contains("HF_HUB_OFFLINE"), "{error}");
}
