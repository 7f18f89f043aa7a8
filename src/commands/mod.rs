//! One file per verb. Each returns an [`Outcome`]; `main` turns it into the exit status.

mod bench;
mod classify;
mod drift;
mod eval;
mod merge;
mod model;
mod report;
mod review;
mod serve;
pub mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, RunArgs, WindowArgs};
use crate::infer::{Pipeline, PipelineOptions};
use crate::text::WindowOptions;

/// How a run ended, as the exit status tells a scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every document was processed: exit 0.
    Complete,
    /// The run finished but some documents have error records: exit 3.
    SomeFailed,
    /// Nothing more could be done: exit 1. (clap exits with 2 on a bad command line.)
    Fatal,
    /// Another run holds the lock on the output or state: exit 4 (try again later).
    Locked,
    /// `drift --fail-on-drift`: a period crossed a threshold: exit 5 (raise an alert).
    Drifted,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Complete => 0,
            Outcome::SomeFailed => 3,
            Outcome::Fatal => 1,
            Outcome::Locked => 4,
            Outcome::Drifted => 5,
        })
    }
}

pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Classify(args) => classify::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Review(args) => review::run(args),
        Command::Report(args) => report::run(args),
        Command::Drift(args) => drift::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Model(command) => model::run(command),
    }
}

/// The default pipeline: the encoder with the project's trained heads.
pub const DEFAULT_MODEL: &str = "models/de-legal";
/// The bare default encoder (zero-shot classification, training) and how it is found.
pub use crate::model::bundle::{resolve_default, DEFAULT_ENCODER};

/// `--model`, else $DOCCLASS_MODEL, else the default model in the current directory
/// or in the checkout the binary was built in.
pub fn model_dir(arg: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = arg.or_else(|| std::env::var_os("DOCCLASS_MODEL").map(PathBuf::from)) {
        return dir;
    }
    resolve_default(DEFAULT_MODEL)
}

/// Sets the log format, and the worker threads of rayon (tokenization, assembly) and of
/// candle's matrix products (which read RAYON_NUM_THREADS), once, before any work starts.
pub fn configure_run(run: &RunArgs) -> Result<usize> {
    crate::logging::set_format(run.log_format);
    let threads = run.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    // Safe at this point: no other thread has started yet.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    // After each of its parallel ops, candle's worker threads spin up to 25,000 pauses
    // (about a millisecond) before they sleep. On a machine shared with other work that
    // spinning takes the cores the encoder's own tasks need: 15-20% of `bench`'s
    // throughput with a training run beside it (bench/README.md); 100 pauses are some
    // microseconds.
    const CANDLE_SPIN: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(CANDLE_SPIN).is_none() {
        std::env::set_var(CANDLE_SPIN, "100");
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().context("starting the thread pool")?;
    Ok(threads)
}

/// The run options of `classify` and `eval` from their flags: the same windows and
/// entity aggregation, so that `eval` scores what `classify` runs.
pub fn pipeline_options(
    pipeline: &Pipeline,
    run: &RunArgs,
    windows: &WindowArgs,
    top_k: Option<usize>,
    explain: Option<usize>,
) -> Result<PipelineOptions> {
    Ok(PipelineOptions {
        windows: WindowOptions {
            stride: pipeline.text.stride(windows.stride)?,
            max_windows: windows.max_windows.max(1),
            truncate: windows.truncate,
        },
        batch_tokens: run.batch_tokens,
        aggregation: windows.aggregation,
        top_k,
        explain,
    })
}

/// Peak resident memory of this process in bytes (VmHWM), where the OS tells it.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
