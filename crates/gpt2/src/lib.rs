//! GPT-2 in burn.
