//! What a classifier's two models read: each document's pooled encoder features and
//! lexical term counts, turned into rows by inputs fitted on a fold's training part.

use half::f16;

use super::super::logistic::{Row, Shape};
use super::super::optim::Standardizer;
use crate::model::head_file::DocumentPooling;
use crate::text::lexical::LexicalScheme;

/// One document's inputs before a fold's fitting: its pooled encoder features, its
/// lexical term counts and its labels.
pub(super) struct Document<'e> {
    pub(super) mean: &'e [f16],
    pub(super) max: &'e [f16],
    pub(super) counts: Vec<(u32, f32)>,
    pub(super) labels: Vec<usize>,
}

impl Document<'_> {
    /// The mean, followed by the maximum for [`DocumentPooling::MeanMax`], as cached.
    pub(super) fn pooled(&self, pooling: DocumentPooling) -> Vec<f16> {
        let mut out = self.mean.to_vec();
        if pooling == DocumentPooling::MeanMax {
            out.extend_from_slice(self.max);
        }
        out
    }
}

/// What a model's inputs are computed with, fitted on its training documents: the
/// standardisation of the pooled features, or the IDF of the terms and the columns
/// the terms that pass the minimum document frequency get.
pub(super) enum Inputs {
    Dense { pooling: DocumentPooling, standardizer: Standardizer },
    Lexical { idf: Vec<f32>, columns: Vec<u32>, buckets_of_columns: Vec<u32> },
}

pub(super) const NO_COLUMN: u32 = u32::MAX;

impl Inputs {
    pub(super) fn dense(documents: &[&Document], pooling: DocumentPooling) -> Self {
        let rows: Vec<Vec<f16>> = documents.iter().map(|d| d.pooled(pooling)).collect();
        let dim = rows.first().map_or(0, Vec::len);
        Inputs::Dense { pooling, standardizer: Standardizer::fit(rows.iter().map(|r| &r[..]), dim) }
    }

    pub(super) fn lexical(documents: &[&Document], buckets: usize) -> Self {
        let idf = SCHEME.inverse_document_frequency(documents.iter().map(|d| &d.counts[..]), buckets);
        let mut columns = vec![NO_COLUMN; buckets];
        let mut buckets_of_columns = Vec::new();
        for (b, &v) in idf.iter().enumerate() {
            if v > 0.0 {
                columns[b] = buckets_of_columns.len() as u32;
                buckets_of_columns.push(b as u32);
            }
        }
        Inputs::Lexical { idf, columns, buckets_of_columns }
    }

    pub(super) fn shape(&self, labels: usize, multi_label: bool) -> Shape {
        match self {
            Inputs::Dense { standardizer, .. } => {
                Shape { labels, dense: standardizer.mean.len(), sparse: 0, multi_label }
            }
            Inputs::Lexical { buckets_of_columns, .. } => {
                Shape { labels, dense: 0, sparse: buckets_of_columns.len(), multi_label }
            }
        }
    }

    pub(super) fn row(&self, document: &Document) -> Row {
        let labels = document.labels.clone();
        match self {
            Inputs::Dense { pooling, standardizer } => {
                let pooled = document.pooled(*pooling);
                let mut dense = vec![0.0; standardizer.mean.len()];
                standardizer.apply(&pooled, &mut dense);
                Row { dense, sparse: Vec::new(), labels }
            }
            Inputs::Lexical { idf, columns, .. } => {
                let sparse = SCHEME
                    .tf_idf(&document.counts, idf)
                    .into_iter()
                    .map(|(b, v)| (columns[b as usize], v))
                    .filter(|&(c, _)| c != NO_COLUMN)
                    .collect();
                Row { dense: Vec::new(), sparse, labels }
            }
        }
    }
}

/// The lexical features every head `train` writes reads.
pub(super) const SCHEME: LexicalScheme = LexicalScheme::WORDS_AND_CHARS;
