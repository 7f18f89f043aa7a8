//! Encoder features on disk. Encoding a training set takes most of an hour on two cores,
//! fitting a head on its features minutes; so features are computed once per encoder,
//! layer choice and data, and read back on every later run.
//!
//! The key is a SHA-256 of the encoder's fingerprint (all its files), the layers, the
//! window length and the texts with their word spans: labels do not enter it, so
//! relabelled data reuses the features. A file is written as `.NAME.partial` and
//! renamed when complete, so a killed run leaves no half file that looks valid.
//!
//! File layout (little-endian): `DCFEAT01`, u64 header length, a JSON header
//! `{dim, texts, words}`, then `texts × dim` f16 text means, `texts + 1` u64 word
//! offsets, `words × dim` f16 word rows.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use half::f16;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::infer::{Pipeline, PipelineOptions};
use crate::logging;

const MAGIC: &[u8; 8] = b"DCFEAT01";
/// Texts encoded together; bounds the f32 features held before conversion to f16.
const CHUNK_TEXTS: usize = 256;

/// Features of a list of texts, as f16.
pub struct FeatureSet {
    pub dim: usize,
    means: Vec<f16>,
    word_offsets: Vec<u64>,
    words: Vec<f16>,
}

impl FeatureSet {
    pub fn texts(&self) -> usize {
        self.word_offsets.len() - 1
    }

    pub fn mean(&self, text: usize) -> &[f16] {
        &self.means[text * self.dim..(text + 1) * self.dim]
    }

    /// The columns of `layers` (1-based) from features of all `encoder_layers` layers,
    /// which hold each layer's `dim / encoder_layers` values in layer order.
    fn select_layers(&self, encoder_layers: usize, layers: &[usize]) -> FeatureSet {
        let width = self.dim / encoder_layers;
        let select = |rows: &[f16]| -> Vec<f16> {
            rows.chunks_exact(self.dim)
                .flat_map(|row| layers.iter().flat_map(move |&l| &row[(l - 1) * width..l * width]))
                .copied()
                .collect()
        };
        FeatureSet {
            dim: width * layers.len(),
            means: select(&self.means),
            word_offsets: self.word_offsets.clone(),
            words: select(&self.words),
        }
    }

    /// Rows of the words of `text`, flattened `words × dim`.
    pub fn words(&self, text: usize) -> &[f16] {
        let (a, b) = (self.word_offsets[text] as usize, self.word_offsets[text + 1] as usize);
        &self.words[a * self.dim..b * self.dim]
    }
}

/// What to encode: texts and, for token heads, their word spans.
pub struct FeatureRequest<'a> {
    /// For messages: which data this is.
    pub label: &'a str,
    pub texts: &'a [String],
    pub word_spans: &'a [Vec<(usize, usize)>],
}

/// The cached features of `request`, computing and storing them on a miss. Features
/// of every one of the encoder's `encoder_layers` layers, once cached, serve any choice
/// of layers, so that trying other layers does not mean encoding again.
pub fn features(
    pipeline: &Pipeline,
    encoder_fingerprint: &str,
    layers: &[usize],
    encoder_layers: usize,
    options: &PipelineOptions,
    cache_dir: &Path,
    request: &FeatureRequest,
) -> Result<FeatureSet> {
    let path_of = |layers: &[usize]| {
        cache_dir.join(format!("{}.feat", cache_key(pipeline, encoder_fingerprint, layers, request)))
    };
    let cached = |path: &Path| -> Result<Option<FeatureSet>> {
        if !path.exists() {
            return Ok(None);
        }
        let set = read(path).with_context(|| format!("reading cached features {}", path.display()))?;
        if set.texts() != request.texts.len() {
            return Ok(None);
        }
        logging::info(
            "features_cached",
            &format!("{}: encoder features from the cache ({})", request.label, path.display()),
            json!({"data": request.label, "path": path.display().to_string()}),
        );
        Ok(Some(set))
    };
    let path = path_of(layers);
    if let Some(set) = cached(&path)? {
        return Ok(set);
    }
    let every_layer: Vec<usize> = (1..=encoder_layers).collect();
    if layers != every_layer {
        if let Some(set) = cached(&path_of(&every_layer))? {
            return Ok(set.select_layers(encoder_layers, layers));
        }
    }
    let set = compute(pipeline, layers, options, request)?;
    std::fs::create_dir_all(cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
    write(&path, &set).with_context(|| format!("writing cached features {}", path.display()))?;
    Ok(set)
}

fn cache_key(pipeline: &Pipeline, encoder_fingerprint: &str, layers: &[usize], request: &FeatureRequest) -> String {
    let mut hash = Sha256::new();
    hash.update(b"docclass features v1\n");
    hash.update(encoder_fingerprint.as_bytes());
    hash.update(format!("\nlayers {layers:?} window {}\n", pipeline.text.capacity()).as_bytes());
    for (i, text) in request.texts.iter().enumerate() {
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
        let spans = request.word_spans.get(i).map_or(&[][..], |s| &s[..]);
        hash.update((spans.len() as u64).to_le_bytes());
        for &(a, b) in spans {
            hash.update((a as u64).to_le_bytes());
            hash.update((b as u64).to_le_bytes());
        }
    }
    format!("{:x}", hash.finalize())
}

fn compute(
    pipeline: &Pipeline,
    layers: &[usize],
    options: &PipelineOptions,
    request: &FeatureRequest,
) -> Result<FeatureSet> {
    let started = Instant::now();
    let bar = logging::progress_bar(
        request.texts.len() as u64,
        "encoding {prefix}: {bar:30} {pos}/{len} texts · {elapsed} elapsed, ETA {eta}",
        false,
    );
    bar.set_prefix(request.label.to_string());
    let mut set = FeatureSet { dim: 0, means: Vec::new(), word_offsets: vec![0], words: Vec::new() };
    for (chunk_index, texts) in request.texts.chunks(CHUNK_TEXTS).enumerate() {
        let first = chunk_index * CHUNK_TEXTS;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let spans = request.word_spans.get(first..(first + texts.len()).min(request.word_spans.len())).unwrap_or(&[]);
        let features = pipeline
            .text_features(&refs, spans, layers, options)
            .with_context(|| format!("{}: encoding texts {} to {}", request.label, first + 1, first + texts.len()))?;
        for f in features {
            set.dim = f.mean.len();
            set.means.extend(f.mean.iter().map(|&x| f16::from_f32(x)));
            set.words.extend(f.words.iter().map(|&x| f16::from_f32(x)));
            let words = (set.words.len() / set.dim) as u64;
            set.word_offsets.push(words);
        }
        bar.inc(texts.len() as u64);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    logging::info(
        "features_encoded",
        &format!("{}: encoded {} texts in {seconds:.0} s", request.label, request.texts.len()),
        json!({"data": request.label, "texts": request.texts.len(), "seconds": seconds}),
    );
    Ok(set)
}

fn f16_bytes(values: &[f16]) -> &[u8] {
    // f16 is a plain 16-bit value; the file is little-endian like every target docclass builds for.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn write(path: &Path, set: &FeatureSet) -> Result<()> {
    let partial = partial_path(path);
    {
        let mut out = BufWriter::new(File::create(&partial)?);
        let header =
            serde_json::json!({"dim": set.dim, "texts": set.texts(), "words": set.words.len() / set.dim.max(1)})
                .to_string();
        out.write_all(MAGIC)?;
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        out.write_all(f16_bytes(&set.means))?;
        for offset in &set.word_offsets {
            out.write_all(&offset.to_le_bytes())?;
        }
        out.write_all(f16_bytes(&set.words))?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&partial, path)?;
    Ok(())
}

fn read_f16(file: &mut impl Read, count: usize) -> Result<Vec<f16>> {
    let mut values = vec![f16::ZERO; count];
    // Safe: any bit pattern is a valid f16.
    let bytes = unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), count * 2) };
    file.read_exact(bytes).context("the file is truncated")?;
    Ok(values)
}

fn read(path: &Path) -> Result<FeatureSet> {
    let mut file = std::io::BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)?;
    if &magic != MAGIC {
        bail!("not a docclass feature file");
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let mut header = vec![0u8; u64::from_le_bytes(len).min(1 << 20) as usize];
    file.read_exact(&mut header)?;
    let header: serde_json::Value = serde_json::from_slice(&header)?;
    let field = |name: &str| header[name].as_u64().map(|v| v as usize).context("malformed header");
    let (dim, texts, words) = (field("dim")?, field("texts")?, field("words")?);
    let means = read_f16(&mut file, texts * dim)?;
    let mut word_offsets = Vec::with_capacity(texts + 1);
    for _ in 0..=texts {
        let mut v = [0u8; 8];
        file.read_exact(&mut v).context("the file is truncated")?;
        word_offsets.push(u64::from_le_bytes(v));
    }
    let words = read_f16(&mut file, words * dim)?;
    Ok(FeatureSet { dim, means, word_offsets, words })
}

fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_layers_are_cut_from_features_of_every_layer() {
        // 3 layers of width 2; one text mean and two word rows.
        let value = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        let all = FeatureSet {
            dim: 6,
            means: value(&[1., 2., 3., 4., 5., 6.]),
            word_offsets: vec![0, 2],
            words: value(&[11., 12., 13., 14., 15., 16., 21., 22., 23., 24., 25., 26.]),
        };
        let chosen = all.select_layers(3, &[1, 3]);
        assert_eq!(chosen.dim, 4);
        assert_eq!(chosen.mean(0), &value(&[1., 2., 5., 6.])[..]);
        assert_eq!(chosen.words(0), &value(&[11., 12., 15., 16., 21., 22., 25., 26.])[..]);
    }
}
