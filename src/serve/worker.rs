//! The inference thread: loads the model, then runs the queue's jobs through the
//! pipeline chunk by chunk until the queue is closed and empty.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use super::queue::Job;
use super::{App, Loaded};
use crate::logging;
use crate::output::record::Record;

/// Loads the model with `load` (telling `loaded` how that went), then answers jobs.
pub fn run(app: Arc<App>, load: impl FnOnce() -> Result<Loaded>, loaded: tokio::sync::oneshot::Sender<Result<()>>) {
    let model = match load() {
        Ok(model) => Arc::new(model),
        Err(e) => {
            loaded.send(Err(e)).ok();
            return;
        }
    };
    app.loaded.set(model.clone()).ok();
    loaded.send(Ok(())).ok();
    while let Some((jobs, abandoned)) = app.queue.take(app.settings.chunk_tokens) {
        app.metrics.abandoned(abandoned);
        if !jobs.is_empty() {
            answer(&app, &model, jobs);
        }
    }
}

/// Runs the jobs' documents as one chunk and sends each job its records. If the chunk
/// fails (a defect in the model code, not a bad document: those are error records),
/// each job of several is run again alone, so that one request's failure is its own.
fn answer(app: &App, model: &Loaded, jobs: Vec<Job>) {
    let retry_alone = (jobs.len() > 1).then(|| jobs.iter().map(|j| j.documents.clone()).collect::<Vec<_>>());
    let sizes: Vec<usize> = jobs.iter().map(|j| j.documents.len()).collect();
    let (mut documents, mut replies) = (Vec::new(), Vec::new());
    for job in jobs {
        documents.extend(job.documents);
        replies.push((job.reply, job.tokens));
    }
    let started = Instant::now();
    let batch_tokens = app.settings.batch_tokens;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| model.pipeline.process_ready(documents, batch_tokens)));
    let failure = match outcome {
        Ok(Ok((records, stats))) => {
            let records: Vec<Record> = records.into_iter().map(Record::checked).collect();
            app.metrics.chunk(&records, stats.tokens, started.elapsed());
            let mut records = records.into_iter();
            for ((reply, _), size) in replies.into_iter().zip(sizes) {
                reply.send(Ok(records.by_ref().take(size).collect())).ok();
            }
            return;
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into()),
    };
    match retry_alone {
        Some(alone) => {
            for ((reply, tokens), documents) in replies.into_iter().zip(alone) {
                answer(app, model, vec![Job { documents, tokens, reply }]);
            }
        }
        None => {
            logging::warning(
                "chunk_failed",
                &format!("the model failed on a request's documents: {failure}"),
                json!({"failure": failure}),
            );
            for (reply, _) in replies {
                reply.send(Err(failure.clone())).ok();
            }
        }
    }
}
