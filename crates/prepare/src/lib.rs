//! The prepare stage: from a joke corpus (URL or file) to packed, verified token shards.
//! The binary in `main.rs` is a thin shell over [`cli::Cli`] and [`build::run`].

pub mod build;
pub mod byte_level_bpe;
pub mod clean;
pub mod cli;
pub mod formats;
pub mod inspect;
pub mod options;
pub mod pack;
pub mod split;
pub mod template;
pub mod tokenize;
