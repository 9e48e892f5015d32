//! The sample stage: generate text from a GPT-2 model, several samples of a prompt decoded
//! together with the KV cache, and tell which samples recite the training data.

pub mod cli;
pub mod decoding;
pub mod generate;
pub mod pace;
pub mod recitation;
pub mod run;
