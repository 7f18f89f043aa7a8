//! docclass: batch classification and entity extraction for German documents with a
//! local transformer encoder. The modules follow the flow of a run:
//! `ingest` → `text` → `infer` (with `model`) → `decode` → `output`; `serve` puts the
//! same flow behind an HTTP API.

pub mod cli;
pub mod commands;
pub mod decode;
pub mod drift;
pub mod eval;
pub mod fsutil;
pub mod hashing;
pub mod infer;
pub mod ingest;
pub mod logging;
pub mod model;
pub mod output;
pub mod overview;
pub mod review;
pub mod rng;
pub mod serve;
pub mod text;
pub mod train;
pub mod unattended;
