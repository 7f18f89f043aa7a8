//! The service's counters, rendered in Prometheus' text format (version 0.0.4) at
//! `/metrics`. Routes are the API's own paths (any other path counts as `other`), and
//! labels the model's, so that no series grows with what clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::queue::Depth;
use crate::output::record::Record;

/// Request latency buckets in seconds: a short sentence at int8 takes a few ms, a
/// long passage under load several seconds.
const LATENCY_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const BATCH_DOCUMENT_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
const BATCH_TOKEN_BUCKETS: [f64; 9] = [64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];

#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

struct Counters {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batch_documents: Histogram,
    batch_tokens: Histogram,
    tokens: u64,
    encoder_seconds: f64,
    documents_by_label: BTreeMap<String, u64>,
    document_errors: u64,
    abandoned_jobs: u64,
}

pub struct Metrics {
    counters: Mutex<Counters>,
}

/// Gauges read when `/metrics` is asked.
pub struct Gauges {
    pub depth: Depth,
    pub in_flight: usize,
    pub ready: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            counters: Mutex::new(Counters {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                batch_documents: Histogram::new(&BATCH_DOCUMENT_BUCKETS),
                batch_tokens: Histogram::new(&BATCH_TOKEN_BUCKETS),
                tokens: 0,
                encoder_seconds: 0.0,
                documents_by_label: BTreeMap::new(),
                document_errors: 0,
                abandoned_jobs: 0,
            }),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let mut c = self.lock();
        *c.requests.entry((route.to_string(), status)).or_default() += 1;
        c.latency
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// One chunk through the encoder: its tokens and time, and its records (counted by
    /// the first classification head's label, or as errors; a tagger-only pipeline's
    /// records have no label).
    pub fn chunk(&self, records: &[Record], tokens: usize, elapsed: Duration) {
        let mut c = self.lock();
        c.batch_documents.observe(records.len() as f64);
        c.batch_tokens.observe(tokens as f64);
        c.tokens += tokens as u64;
        c.encoder_seconds += elapsed.as_secs_f64();
        for record in records {
            match (&record.error, &record.classification) {
                (Some(_), _) => c.document_errors += 1,
                (None, Some(classification)) => {
                    *c.documents_by_label.entry(classification.label.clone()).or_default() += 1
                }
                (None, None) => {}
            }
        }
    }

    pub fn abandoned(&self, jobs: usize) {
        self.lock().abandoned_jobs += jobs as u64;
    }

    /// Encoder tokens per second of encoder time so far (0 before the first chunk).
    pub fn tokens_per_second(&self) -> f64 {
        let c = self.lock();
        if c.encoder_seconds > 0.0 {
            c.tokens as f64 / c.encoder_seconds
        } else {
            0.0
        }
    }

    pub fn render(&self, gauges: &Gauges) -> String {
        let c = self.lock();
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "docclass_requests_total", "counter", "HTTP requests answered, by route and status.");
        for ((route, status), n) in &c.requests {
            let _ = writeln!(out, "docclass_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        head(&mut out, "docclass_request_duration_seconds", "histogram", "Time from request to response, by route.");
        for (route, histogram) in &c.latency {
            histogram.render(&mut out, "docclass_request_duration_seconds", &format!("route=\"{route}\""));
        }
        head(&mut out, "docclass_queue_documents", "gauge", "Documents waiting for the encoder.");
        let _ = writeln!(out, "docclass_queue_documents {}", gauges.depth.documents);
        head(&mut out, "docclass_queue_tokens", "gauge", "Encoder tokens waiting (bounded by --max-queue-tokens).");
        let _ = writeln!(out, "docclass_queue_tokens {}", gauges.depth.tokens);
        head(&mut out, "docclass_requests_in_flight", "gauge", "Accepted requests not yet answered.");
        let _ = writeln!(out, "docclass_requests_in_flight {}", gauges.in_flight);
        head(&mut out, "docclass_ready", "gauge", "1 while the model is loaded and the server not draining.");
        let _ = writeln!(out, "docclass_ready {}", u8::from(gauges.ready));
        head(&mut out, "docclass_batch_documents", "histogram", "Documents per encoder chunk.");
        c.batch_documents.render(&mut out, "docclass_batch_documents", "");
        head(&mut out, "docclass_batch_tokens", "histogram", "Encoder tokens per encoder chunk.");
        c.batch_tokens.render(&mut out, "docclass_batch_tokens", "");
        head(&mut out, "docclass_encoded_tokens_total", "counter", "Tokens through the encoder.");
        let _ = writeln!(out, "docclass_encoded_tokens_total {}", c.tokens);
        head(
            &mut out,
            "docclass_encoder_seconds_total",
            "counter",
            "Time the encoder worked; tokens/s = encoded_tokens_total / encoder_seconds_total.",
        );
        let _ = writeln!(out, "docclass_encoder_seconds_total {}", c.encoder_seconds);
        head(&mut out, "docclass_documents_total", "counter", "Documents classified, by label of the first head.");
        for (label, n) in &c.documents_by_label {
            let _ = writeln!(out, "docclass_documents_total{{label=\"{}\"}} {n}", escape(label));
        }
        head(&mut out, "docclass_document_errors_total", "counter", "Documents answered with an error record.");
        let _ = writeln!(out, "docclass_document_errors_total {}", c.document_errors);
        head(
            &mut out,
            "docclass_abandoned_jobs_total",
            "counter",
            "Queued requests dropped unprocessed because their client left or their deadline passed.",
        );
        let _ = writeln!(out, "docclass_abandoned_jobs_total {}", c.abandoned_jobs);
        out
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_series_carry_their_labels() {
        let metrics = Metrics::default();
        metrics.request("/v1/classify", 200, Duration::from_millis(3));
        metrics.request("/v1/classify", 200, Duration::from_millis(300));
        metrics.request("/v1/classify", 429, Duration::from_millis(1));
        let record = |label: Option<&str>| {
            let source = crate::ingest::Source { path: "request".into(), line: None };
            let mut record = Record::failed("1".into(), source, "m", "empty document (no text)".into());
            if let Some(label) = label {
                record.error = None;
                record.classification = Some(crate::output::record::Classification {
                    label: label.into(),
                    score: 0.9,
                    scores: Vec::new(),
                    labels: None,
                    evidence: None,
                });
            }
            record
        };
        metrics.chunk(&[record(Some("bag")), record(Some("bag")), record(None)], 700, Duration::from_millis(100));
        let text = metrics.render(&Gauges { depth: Depth { documents: 2, tokens: 90 }, in_flight: 1, ready: true });
        for line in [
            "docclass_requests_total{route=\"/v1/classify\",status=\"200\"} 2",
            "docclass_requests_total{route=\"/v1/classify\",status=\"429\"} 1",
            "docclass_request_duration_seconds_bucket{route=\"/v1/classify\",le=\"0.005\"} 2",
            "docclass_request_duration_seconds_bucket{route=\"/v1/classify\",le=\"0.25\"} 2",
            "docclass_request_duration_seconds_bucket{route=\"/v1/classify\",le=\"0.5\"} 3",
            "docclass_request_duration_seconds_count{route=\"/v1/classify\"} 3",
            "docclass_queue_tokens 90",
            "docclass_batch_tokens_bucket{le=\"1024\"} 1",
            "docclass_documents_total{label=\"bag\"} 2",
            "docclass_document_errors_total 1",
            "docclass_encoded_tokens_total 700",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!((metrics.tokens_per_second() - 7000.0).abs() < 1e-6);
    }
}
