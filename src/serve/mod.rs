//! `docclass serve`: the pipeline behind an HTTP API (axum on tokio), for intake systems
//! that send documents one at a time. The HTTP side reads, checks and tokenizes each
//! request; one inference thread runs the queued requests' documents through the
//! encoder together ([`queue`]), so concurrent requests share batches. Records are the
//! ones `classify` writes, from the same pipeline code.
//!
//! Layers, from the outside in: the connection loop with its timeouts and the drain on
//! SIGTERM ([`server`]); the guard every request passes (key, drain, limits, deadline,
//! log and metrics: [`guard`]); the routes ([`api`]); the queue and its thread
//! ([`queue`], [`worker`]).

mod api;
mod guard;
mod metrics;
mod queue;
mod server;
mod worker;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::infer::{Pipeline, PipelineOptions};
use crate::ingest::ReadLimits;

pub use api::{OPENAPI, ROUTES};
pub use server::run;

/// The server's limits and timeouts, from `docclass serve`'s flags.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Larger request bodies are refused (413).
    pub max_body_bytes: usize,
    /// Documents in one `/v1/classify` request (413 above).
    pub max_documents: usize,
    /// Encoder tokens the queue may hold (429 above, 413 for one request alone above it).
    pub max_queue_tokens: usize,
    /// Encoder tokens the inference thread takes from the queue at once.
    pub chunk_tokens: usize,
    /// Real tokens per encoder batch inside a chunk, as `classify --batch-tokens`.
    pub batch_tokens: NonZeroUsize,
    /// Requests being answered at once (429 above): bounds the bodies held in memory.
    pub max_concurrent_requests: usize,
    /// From the first byte of a request to its answer (503 after).
    pub request_timeout: Duration,
    /// A client must send a request's headers within this time, or the connection is
    /// closed; also how long an idle connection is kept.
    pub header_timeout: Duration,
    /// On SIGTERM or SIGINT, how long accepted requests may take to be answered.
    pub drain_timeout: Duration,
    /// Bounds on extracting an uploaded file's text.
    pub read_limits: ReadLimits,
    /// SHA-256 of the API key, where one is required.
    pub api_key_sha256: Option<[u8; 32]>,
}

impl Settings {
    /// What a key is compared by: its SHA-256, surrounding whitespace ignored.
    pub fn api_key_digest(key: &str) -> [u8; 32] {
        Sha256::digest(key.trim().as_bytes()).into()
    }
}

/// The loaded model, with the options each request starts from.
pub struct Loaded {
    pub pipeline: Pipeline,
    pub options: PipelineOptions,
}

/// What the routes and the inference thread share.
pub struct App {
    loaded: OnceLock<Arc<Loaded>>,
    queue: queue::Queue,
    metrics: metrics::Metrics,
    settings: Settings,
    /// Set on SIGTERM/SIGINT: /ready says no and new requests get 503.
    draining: AtomicBool,
    /// Requests accepted and not yet answered; the drain waits for them.
    in_flight: AtomicUsize,
    next_request: AtomicU64,
}

impl App {
    fn new(settings: Settings) -> Self {
        Self {
            loaded: OnceLock::new(),
            queue: queue::Queue::new(settings.max_queue_tokens),
            metrics: metrics::Metrics::default(),
            settings,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            next_request: AtomicU64::new(0),
        }
    }

    fn is_ready(&self) -> bool {
        self.loaded.get().is_some() && !self.draining.load(Ordering::SeqCst)
    }

    fn gauges(&self) -> metrics::Gauges {
        metrics::Gauges {
            depth: self.queue.depth(),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            ready: self.is_ready(),
        }
    }
}
