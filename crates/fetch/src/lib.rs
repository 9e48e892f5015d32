//! Getting files onto this machine: plain HTTP(S) downloads into a local cache
//! ([`Downloader`]) and files of Hugging Face Hub repositories through the cache that the
//! Hub's own clients share ([`hub_file`]).

mod download;
mod hub;

pub use download::{cache_name, Downloader};
pub use hub::{hub_file, local_or_hub, looks_like_hub_id, Named};
