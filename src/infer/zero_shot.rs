//! Zero-shot heads from a label file: TSV lines `label<TAB>description`. A label may have
//! several description lines (a label that covers several topics); the best-matching one
//! counts. Blank lines and lines starting with `#` are skipped, as is a
//! `label<TAB>description` header.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::pipeline::{Pipeline, PipelineOptions};
use crate::model::heads::zero_shot::{unit_length, Description, ZeroShotHead};

/// e5 was trained with a contrastive temperature of 0.01; cosine similarities of e5
/// embeddings sit in a narrow band, so the softmax needs a small temperature to spread.
pub const DEFAULT_TEMPERATURE: f32 = 0.01;

pub fn read_label_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read label file", path.display()))?;
    let mut entries = Vec::new();
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let is_header = !seen_content && line == "label\tdescription";
        seen_content = true;
        if is_header {
            continue;
        }
        let Some((label, description)) = line.split_once('\t') else {
            bail!("{}:{}: expected `label<TAB>description`", path.display(), i + 1);
        };
        let (label, description) = (label.trim(), description.trim());
        if label.is_empty() || description.is_empty() {
            bail!("{}:{}: empty label or description", path.display(), i + 1);
        }
        entries.push((label.to_string(), description.to_string()));
    }
    let labels: std::collections::BTreeSet<&str> = entries.iter().map(|(l, _)| l.as_str()).collect();
    if labels.len() < 2 {
        bail!("{}: a zero-shot label file needs at least two labels", path.display());
    }
    Ok(entries)
}

impl Pipeline {
    /// Adds a zero-shot head whose labels are described in `path`.
    pub fn add_zero_shot(&mut self, path: &Path, temperature: f32, options: &PipelineOptions) -> Result<()> {
        if temperature.is_nan() || temperature <= 0.0 {
            bail!("the zero-shot temperature must be positive, got {temperature}");
        }
        let entries = read_label_file(path)?;
        let descriptions: Vec<&str> = entries.iter().map(|(_, d)| d.as_str()).collect();
        let (embeddings, _) = self.embed_texts(&descriptions, options).context("embedding the label descriptions")?;
        let mut labels: Vec<String> = Vec::new();
        let mut unit_descriptions = Vec::with_capacity(entries.len());
        for ((label, text), embedding) in entries.iter().zip(embeddings) {
            let index = labels.iter().position(|l| l == label).unwrap_or_else(|| {
                labels.push(label.clone());
                labels.len() - 1
            });
            unit_descriptions.push(Description {
                label: index,
                text: text.clone(),
                embedding: unit_length(&embedding),
            });
        }
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "zero-shot".into());
        self.heads.push(Box::new(ZeroShotHead { name, labels, descriptions: unit_descriptions, temperature }));
        Ok(())
    }
}
