//! `docclass serve`: the flags become the server's settings and the model loader; the
//! server itself is `crate::serve`.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{configure_run, model_dir, Outcome};
use crate::cli::ServeArgs;
use crate::infer::Pipeline;
use crate::ingest::ReadLimits;
use crate::model::ModelBundle;
use crate::serve::{Loaded, Settings};

pub fn run(args: ServeArgs) -> Result<Outcome> {
    configure_run(&args.run)?;
    let api_key_sha256 = match &args.api_key_file {
        Some(path) => {
            let key = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the API key", path.display()))?;
            if key.trim().is_empty() {
                bail!("{}: the API key file is empty", path.display());
            }
            Some(Settings::api_key_digest(&key))
        }
        None => None,
    };
    let settings = Settings {
        listen: args.listen,
        max_body_bytes: args.max_body_bytes,
        max_documents: args.max_documents.max(1),
        max_queue_tokens: args.max_queue_tokens.max(1),
        chunk_tokens: args.chunk_tokens.max(1),
        batch_tokens: args.run.batch_tokens,
        max_concurrent_requests: args.max_concurrent_requests.max(1),
        request_timeout: Duration::from_secs_f64(args.request_timeout),
        header_timeout: Duration::from_secs_f64(args.header_timeout),
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        read_limits: ReadLimits {
            document_bytes: args.max_body_bytes as u64,
            extract_time: Duration::from_secs_f64(args.max_extract_seconds),
        },
        api_key_sha256,
    };
    let drained = crate::serve::run(settings, move || load(&args))?;
    Ok(if drained { Outcome::Complete } else { Outcome::SomeFailed })
}

/// The model and the options requests start from, as `classify` loads them.
fn load(args: &ServeArgs) -> Result<Loaded> {
    let dir = model_dir(args.model.model.clone());
    let bundle = ModelBundle::load_at(&dir, args.run.inference_precision())
        .with_context(|| format!("loading model {}", dir.display()))?;
    let pipeline = Pipeline::new(bundle, args.run.max_len)?;
    if pipeline.heads.is_empty() {
        bail!("model {} has no task heads: serve a pipeline or a fine-tuned checkpoint", dir.display());
    }
    let options = super::pipeline_options(&pipeline, &args.run, &args.windows, args.top_k, args.explain)?;
    Ok(Loaded { pipeline, options })
}
