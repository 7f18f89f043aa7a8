//! Text to model input: tokenization with character offsets, and windows with stride.

pub mod lexical;
pub mod tokenizer;
mod unigram;
pub mod windows;
pub mod word_features;
pub mod word_shares;

pub use windows::{DocTokens, TextEncoder, Window, WindowOptions};
