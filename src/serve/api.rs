//! The routes: JSON in and out, records exactly as `classify` writes them, and every
//! refusal a JSON body `{"error": CODE, "detail": WHY}`. `docs/openapi.json` describes
//! them (a test holds it to [`ROUTES`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::queue::{Job, Refused};
use super::{App, Loaded};
use crate::infer::PipelineOptions;
use crate::ingest::extract::Kind;
use crate::ingest::{read_bytes, Document, Item, Source};
use crate::model::heads::Task;
use crate::output::record::Record;

/// Every route with its method, as the router serves them and the OpenAPI file lists them.
pub const ROUTES: [(&str, &str); 8] = [
    ("POST", "/v1/classify"),
    ("POST", "/v1/classify/file"),
    ("GET", "/v1/model"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
];

/// The OpenAPI description, kept in the repository and served as it is.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// The routes, for the server to wrap in the guard every request passes and give the state.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/classify", post(classify))
        .route("/v1/classify/file", post(classify_file))
        .route("/v1/model", get(model))
        .route("/health", get(|| async { Json(json!({"status": "up"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/", get(|| async { Json(json!({"service": "docclass", "openapi": "/openapi.json"})) }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route: see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "see /openapi.json for each route's method",
            )
        })
}

/// A refusal: its status, a short code and a sentence for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self { status, error, detail: detail.into(), retry_after_seconds: None }
    }

    fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({"error": self.error, "detail": self.detail}))).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// How many documents a response answered, for the request's log line.
#[derive(Clone, Copy)]
pub struct AnsweredDocuments(pub usize);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    documents: Vec<RequestDocument>,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    explain: Option<usize>,
}

#[derive(Serialize)]
struct ClassifyResponse {
    results: Vec<Record>,
}

#[derive(Deserialize)]
struct RequestDocument {
    #[serde(default)]
    id: Option<DocumentId>,
    text: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DocumentId {
    Text(String),
    Number(serde_json::Number),
}

async fn classify(State(app): State<Arc<App>>, request: Request) -> Result<Response, ApiError> {
    let loaded = loaded(&app)?;
    let body = read_body(request.into_body(), app.settings.max_body_bytes).await?;
    let mut json = serde_json::Deserializer::from_slice(&body);
    let parsed: ClassifyRequest = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!("{path}: ") };
        ApiError::bad_request(format!("{at}{}", e.inner()))
    })?;
    if parsed.documents.is_empty() {
        return Err(ApiError::bad_request("documents: the list is empty"));
    }
    let max = app.settings.max_documents;
    if parsed.documents.len() > max {
        let detail = format!("{} documents in one request; at most {max} (--max-documents)", parsed.documents.len());
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_documents", detail));
    }
    let items: Vec<Item> = parsed.documents.into_iter().enumerate().map(|(n, d)| request_document(n, d)).collect();
    let options = options_for(&loaded, parsed.top_k, parsed.explain);
    let records = run(&app, &loaded, items, options).await?;
    let answered = AnsweredDocuments(records.len());
    // Serialized from the records themselves (not through a JSON value, which would
    // widen f32 scores to f64 digits), so that they read exactly as in `classify`'s output.
    let mut response = Json(ClassifyResponse { results: records }).into_response();
    response.extensions_mut().insert(answered);
    Ok(response)
}

/// A request's document as an input item: position `n` (from 0) gives the default id
/// and the `line` of its source, as a JSONL line's; empty text fails alone, as there.
fn request_document(n: usize, document: RequestDocument) -> Item {
    let source = Source { path: "request".into(), line: Some(n as u64 + 1) };
    let id = match document.id {
        Some(DocumentId::Text(id)) => id,
        Some(DocumentId::Number(id)) => id.to_string(),
        None => (n + 1).to_string(),
    };
    if document.text.trim().is_empty() {
        return Err(crate::ingest::Failed { id, source, error: "empty document (no text)".into() });
    }
    Ok(Document { id, source, text: document.text, encoding: "UTF-8", extractor: "json", fields: Default::default() })
}

#[derive(Deserialize)]
struct FileQuery {
    name: Option<String>,
    id: Option<String>,
    top_k: Option<usize>,
    explain: Option<usize>,
}

async fn classify_file(
    State(app): State<Arc<App>>,
    query: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let loaded = loaded(&app)?;
    let name = query.name.clone().or_else(|| attachment_name(&headers));
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let kind = name.as_deref().and_then(Kind::of).or_else(|| content_type.and_then(Kind::of_media_type));
    let Some(kind) = kind else {
        let detail = format!(
            "cannot tell the format of {} with Content-Type {}: name the file (?name=letter.pdf); docclass reads .txt, .md, .html, .pdf, .docx, .odt, .rtf, .eml",
            name.as_deref().map_or("an unnamed file".into(), |n| format!("{n:?}")),
            content_type.unwrap_or("(none)")
        );
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format", detail));
    };
    let bytes = read_body(body, app.settings.max_body_bytes).await?;
    let name = name.unwrap_or_else(|| "upload".into());
    let limits = app.settings.read_limits;
    let read_name = name.clone();
    let mut items = tokio::task::spawn_blocking(move || read_bytes(bytes.to_vec(), read_name, kind, limits))
        .await
        .map_err(|e| ApiError::internal(format!("reading the file: {e}")))?
        .into_iter();
    // An e-mail's attachments would be records of their own: this route answers the mail.
    let unclassified_attachments = items.len().saturating_sub(1);
    let mut document = match items.next() {
        Some(Ok(document)) => document,
        Some(Err(failed)) => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unreadable_document", failed.error))
        }
        None => return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unreadable_document", "no text")),
    };
    if let Some(id) = query.id {
        document.id = id;
    }
    let options = options_for(&loaded, query.top_k, query.explain);
    let mut records = run(&app, &loaded, vec![Ok(document)], options).await?;
    let record = records.pop().ok_or_else(|| ApiError::internal("no record for the document"))?;
    let mut response = Json(record).into_response();
    if unclassified_attachments > 0 {
        response.headers_mut().insert("docclass-unclassified-attachments", HeaderValue::from(unclassified_attachments));
    }
    response.extensions_mut().insert(AnsweredDocuments(1));
    Ok(response)
}

/// The file name of a `Content-Disposition: attachment; filename="…"` header.
fn attachment_name(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_DISPOSITION)?.to_str().ok()?;
    let (_, rest) = value.split_once("filename=")?;
    let name = rest.split(';').next()?.trim().trim_matches('"');
    (!name.is_empty()).then(|| name.to_string())
}

async fn model(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let loaded = loaded(&app)?;
    let pipeline = &loaded.pipeline;
    let heads: Vec<Value> = pipeline
        .heads
        .iter()
        .map(|head| {
            let task = match head.task() {
                Task::ClassifyDocuments => "classify_documents",
                Task::TagTokens => "tag_tokens",
                Task::TagWords => "tag_words",
            };
            json!({"name": head.name(), "task": task, "labels": head.labels()})
        })
        .collect();
    let identity = &pipeline.identity;
    let windows = &loaded.options.windows;
    Ok(Json(json!({
        "name": identity.record_name,
        "docclass_version": env!("CARGO_PKG_VERSION"),
        "precision": identity.precision.to_string(),
        "encoder_fingerprint": identity.encoder_fingerprint,
        "fingerprint": identity.fingerprint,
        "heads": heads,
        "entity_types": pipeline.tagger_types(),
        "windows": {
            "max_tokens": pipeline.text.capacity() + pipeline.text.leading_len() + pipeline.text.trailing_len(),
            "stride": windows.stride,
            "max_windows": windows.max_windows,
            "truncate": windows.truncate,
        },
    })))
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let loading = app.loaded.get().is_none();
    let draining = app.draining.load(std::sync::atomic::Ordering::SeqCst);
    let body = json!({"ready": !loading && !draining, "loading": loading, "draining": draining});
    let status = if loading || draining { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(&app.gauges());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn loaded(app: &App) -> Result<Arc<Loaded>, ApiError> {
    app.loaded
        .get()
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "loading", "the model is still loading"))
}

/// The server's options with a request's `top_k` and `explain`.
fn options_for(loaded: &Loaded, top_k: Option<usize>, explain: Option<usize>) -> PipelineOptions {
    PipelineOptions {
        top_k: top_k.or(loaded.options.top_k),
        explain: explain.or(loaded.options.explain),
        ..loaded.options
    }
}

/// The body, refused past `max` bytes.
async fn read_body(body: Body, max: usize) -> Result<Bytes, ApiError> {
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {max} bytes (--max-body-bytes)"),
        )),
        Err(e) => Err(ApiError::bad_request(format!("cannot read the request body: {e}"))),
    }
}

/// Tokenizes the items (off the async threads), queues them as one job and waits for
/// their records. The request's deadline (see `guard`) drops this future, and with it
/// the job's reply: a job still queued is then dropped unprocessed.
async fn run(
    app: &App,
    loaded: &Arc<Loaded>,
    items: Vec<Item>,
    options: PipelineOptions,
) -> Result<Vec<Record>, ApiError> {
    let model = loaded.clone();
    let (documents, tokens) = tokio::task::spawn_blocking(move || {
        let documents = model.pipeline.ready(items, &options);
        let tokens = documents.iter().map(|d| model.pipeline.encoder_tokens(d)).sum::<usize>();
        (documents, tokens)
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))?;
    let (reply, answer) = oneshot::channel();
    app.queue.push(Job { documents, tokens, reply }).map_err(|refused| match refused {
        Refused::Full { queued_tokens } => {
            // The queue's work at the encoder's rate so far: when a retry may find room.
            let rate = app.metrics.tokens_per_second().max(1.0);
            let seconds = (queued_tokens as f64 / rate).ceil().clamp(1.0, 60.0) as u64;
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!("{queued_tokens} tokens are waiting (--max-queue-tokens); retry after {seconds} s"),
            );
            error.retry_after_seconds = Some(seconds);
            error
        }
        Refused::TooLarge { max_tokens } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("the request's documents are {tokens} tokens, more than the queue holds ({max_tokens}, --max-queue-tokens)"),
        ),
        Refused::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", "the server is shutting down"),
    })?;
    match answer.await {
        Ok(Ok(records)) => Ok(records),
        Ok(Err(failure)) => Err(ApiError::internal(format!("the model failed on this request: {failure}"))),
        Err(_) => Err(ApiError::internal("the inference thread stopped")),
    }
}
