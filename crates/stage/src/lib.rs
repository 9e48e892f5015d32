//! What the model stages (train, sample) share, so that the `gpt2` crate is only the model and
//! its file format:
//! - [`device`]: `--device cpu|cuda[:N]`, the choice where none is given, and running generic
//!   work on the chosen backend;
//! - [`model`]: the model directory a `--model`/`--init` names, a path or a Hugging Face Hub id.

pub mod device;
pub mod model;
