//! Loading by Hub id from the cache shared with the Hub's own clients, offline.

use burn::backend::NdArray;
use stage::model;
use std::{fs, path::Path};

#[test]
fn a_cached_hub_model_loads_offline_and_a_missing_one_says_what_to_download() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--someone--tiny-gpt2");
    let snapshot = repo.join("snapshots/abc123");
    fs::create_dir_all(&snapshot).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), "abc123").unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gpt2/tests/fixtures/tiny");
    for file in ["config.json", "model.safetensors"] {
        fs::copy(fixture.join(file), snapshot.join(file)).unwrap();
    }
    // This test binary holds only this test, so the variables reach no other test.
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let dir = model::locate("someone/tiny-gpt2").unwrap();
    let (config, _) = gpt2::hf::load_dir::<NdArray<f32>>(&dir, &Default::default()).unwrap();
    assert_eq!((config.n_layer, dir), (2, snapshot));

    let error = format!("{:#}", model::locate("openai-community/gpt2-medium").unwrap_err());
    assert!(error.contains("huggingface-cli download openai-community/gpt2-medium config.json"), "{error}");
    let error = format!("{:#}", model::locate("./no/such/dir").unwrap_err());
    assert!(error.contains("no such directory"), "{error}");
}
