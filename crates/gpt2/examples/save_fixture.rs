//! Load the committed tiny fixture and save it with `gpt2::hf::save` into the directory given
//! as the only argument, for scripts/checks/transformers_load.py to read with `transformers`.

use burn::backend::NdArray;
use gpt2::hf;
use std::path::{Path, PathBuf};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: save_fixture OUT_DIR"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let (config, model) = hf::load_dir::<NdArray<f32>>(&fixture, &Default::default())?;
    hf::save(&model, &config, &out, None)?;
    println!("saved {}", out.display());
    Ok(())
}
