//! Encoder features on disk, per text. Encoding a training set takes most of an hour on
//! two cores, fitting a head on its features seconds; so each text is encoded once per
//! encoder, layer choice and window length, and read back by every later run that
//! holds it: another subset, a cross-validation fold, relabelled data.
//!
//! The store for one (encoder fingerprint, layers, window length) is a folder named by
//! their SHA-256. A text's key is the SHA-256 of the text and its word spans (labels do
//! not enter it). The folder holds segments of up to 1,024 texts, each named by the
//! SHA-256 of its keys, written as `.NAME.partial` and renamed when complete, so a
//! killed run leaves no half file that looks valid and keeps the segments it finished.
//! A request reads the keys of every segment, takes what is there, and encodes only the
//! rest into new segments.
//! Features of every encoder layer, once stored, serve any choice of layers.
//!
//! Segment layout (little-endian): `DCFEAT02`, u64 header length, a JSON header
//! `{dim, texts, words}`, `texts × 32` key bytes, `texts × dim` f16 text means, `texts
//! × dim` f16 window maxima, `texts + 1` u64 word offsets, `words × dim` f16 word rows.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use half::f16;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::infer::{Pipeline, PipelineOptions};
use crate::logging;

const MAGIC: &[u8; 8] = b"DCFEAT02";
/// Texts encoded together; bounds the f32 features held before conversion to f16.
const CHUNK_TEXTS: usize = 256;
/// Texts per stored segment: what a killed run loses at most.
const SEGMENT_TEXTS: usize = 4 * CHUNK_TEXTS;

type TextKey = [u8; 32];

/// Features of a list of texts, as f16.
pub struct FeatureSet {
    pub dim: usize,
    means: Vec<f16>,
    /// Per text, the element-wise maximum of its windows' mean features (equal to the
    /// mean for a text of one window).
    maxes: Vec<f16>,
    word_offsets: Vec<u64>,
    words: Vec<f16>,
}

impl FeatureSet {
    fn empty(dim: usize) -> Self {
        Self { dim, means: Vec::new(), maxes: Vec::new(), word_offsets: vec![0], words: Vec::new() }
    }

    pub fn texts(&self) -> usize {
        self.word_offsets.len() - 1
    }

    pub fn mean(&self, text: usize) -> &[f16] {
        &self.means[text * self.dim..(text + 1) * self.dim]
    }

    pub fn max(&self, text: usize) -> &[f16] {
        &self.maxes[text * self.dim..(text + 1) * self.dim]
    }

    /// Rows of the words of `text`, flattened `words × dim`.
    pub fn words(&self, text: usize) -> &[f16] {
        let (a, b) = (self.word_offsets[text] as usize, self.word_offsets[text + 1] as usize);
        &self.words[a * self.dim..b * self.dim]
    }
}

/// Which columns of a stored row a request wants: all of them, or the chosen layers
/// out of rows that hold every encoder layer (each layer's `width` values in order).
enum Columns {
    All,
    Layers { width: usize, layers: Vec<usize> },
}

impl Columns {
    /// Values per row kept out of stored rows of `dim` values.
    fn width(&self, dim: usize) -> usize {
        match self {
            Columns::All => dim,
            Columns::Layers { width, layers } => width * layers.len(),
        }
    }

    fn extend(&self, out: &mut Vec<f16>, rows: &[f16], dim: usize) {
        match self {
            Columns::All => out.extend_from_slice(rows),
            Columns::Layers { width, layers } => {
                for row in rows.chunks_exact(dim) {
                    for &l in layers {
                        out.extend_from_slice(&row[(l - 1) * width..l * width]);
                    }
                }
            }
        }
    }
}

/// What to encode: texts and, for token heads, their word spans.
pub struct FeatureRequest<'a> {
    /// For messages: which data this is.
    pub label: &'a str,
    pub texts: &'a [String],
    pub word_spans: &'a [Vec<(usize, usize)>],
}

impl FeatureRequest<'_> {
    fn spans(&self, i: usize) -> &[(usize, usize)] {
        self.word_spans.get(i).map_or(&[][..], |s| &s[..])
    }

    fn key(&self, i: usize) -> TextKey {
        let mut hash = Sha256::new();
        let text = &self.texts[i];
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
        let spans = self.spans(i);
        hash.update((spans.len() as u64).to_le_bytes());
        for &(a, b) in spans {
            hash.update((a as u64).to_le_bytes());
            hash.update((b as u64).to_le_bytes());
        }
        hash.finalize().into()
    }
}

/// The stored segments of one encoder, layer choice and window length.
struct Store {
    dir: PathBuf,
    segments: Vec<PathBuf>,
    /// Where each stored text is: segment and row.
    index: HashMap<TextKey, (usize, usize)>,
}

impl Store {
    fn open(cache_dir: &Path, pipeline: &Pipeline, layers: &[usize]) -> Result<Self> {
        let mut hash = Sha256::new();
        hash.update(b"docclass features v2\n");
        hash.update(pipeline.identity.encoder_fingerprint.as_bytes());
        hash.update(format!("\nlayers {layers:?} window {}\n", pipeline.text.capacity()).as_bytes());
        let precision = pipeline.identity.precision;
        if !precision.is_f32() {
            // f32 stores keep the names they had before precisions existed.
            hash.update(format!("precision {precision}\n").as_bytes());
        }
        let dir = cache_dir.join(format!("{:x}", hash.finalize()));
        let mut store = Store { dir, segments: Vec::new(), index: HashMap::new() };
        if !store.dir.is_dir() {
            return Ok(store);
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&store.dir)
            .with_context(|| format!("reading {}", store.dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        paths.retain(|p| p.extension().is_some_and(|e| e == "feat"));
        paths.sort();
        for path in paths {
            let keys = read_keys(&path).with_context(|| format!("reading cached features {}", path.display()))?;
            let segment = store.segments.len();
            for (row, key) in keys.into_iter().enumerate() {
                store.index.entry(key).or_insert((segment, row));
            }
            store.segments.push(path);
        }
        Ok(store)
    }

    fn write_segment(&self, keys: &[TextKey], set: &FeatureSet) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let mut hash = Sha256::new();
        keys.iter().for_each(|k| hash.update(k));
        let path = self.dir.join(format!("{:x}.feat", hash.finalize()));
        write(&path, keys, set).with_context(|| format!("writing cached features {}", path.display()))
    }
}

/// The cache folder: the one given, else $DOCCLASS_CACHE, else `.cache/features`.
pub fn cache_dir(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("DOCCLASS_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".cache/features"))
}

/// The features of `request`: each text from the store of `layers`, else from the store
/// of every layer, else encoded (and stored for the next run).
pub fn features(
    pipeline: &Pipeline,
    layers: &[usize],
    encoder_layers: usize,
    options: &PipelineOptions,
    cache_dir: &Path,
    request: &FeatureRequest,
) -> Result<FeatureSet> {
    let keys: Vec<TextKey> = (0..request.texts.len()).map(|i| request.key(i)).collect();
    let mut stores = vec![(Store::open(cache_dir, pipeline, layers)?, Columns::All)];
    let every_layer: Vec<usize> = (1..=encoder_layers).collect();
    if layers != every_layer {
        let width = pipeline.hidden_size();
        let all = Store::open(cache_dir, pipeline, &every_layer)?;
        stores.push((all, Columns::Layers { width, layers: layers.to_vec() }));
    }
    // Texts that no store holds, each once.
    let mut missing: Vec<usize> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        if !stores.iter().any(|(s, _)| s.index.contains_key(key)) && seen.insert(*key) {
            missing.push(i);
        }
    }
    let cached = request.texts.len() - missing.len();
    if cached > 0 {
        logging::info(
            "features_cached",
            &format!("{}: encoder features of {cached} of {} texts from the cache", request.label, request.texts.len()),
            json!({"data": request.label, "cached": cached, "texts": request.texts.len(), "dir": stores[0].0.dir.display().to_string()}),
        );
    }
    if !missing.is_empty() {
        encode_into(&stores[0].0, pipeline, layers, options, request, &missing, &keys)?;
        // Read back through the store like every other text.
        stores[0].0 = Store::open(cache_dir, pipeline, layers)?;
    }
    assemble(&stores, &keys)
}

/// The rows of `keys`, in order, from the segments that hold them. Segments are read
/// one at a time and each once: the segments of a store of every layer can together
/// exceed memory, the rows a request keeps from them cannot.
fn assemble(stores: &[(Store, Columns)], keys: &[TextKey]) -> Result<FeatureSet> {
    // Where each text is: store, segment and row.
    let places: Vec<(usize, usize, usize)> = keys
        .iter()
        .map(|key| {
            stores
                .iter()
                .enumerate()
                .find_map(|(s, (store, _))| store.index.get(key).map(|&(segment, row)| (s, segment, row)))
                .context("a text's features vanished from the cache while it was read")
        })
        .collect::<Result<_>>()?;
    let segment_path = |s: usize, segment: usize| &stores[s].0.segments[segment];
    // Each segment's row width and its texts' word counts, to lay out the result before
    // filling it.
    let mut shapes: HashMap<(usize, usize), (usize, Vec<u64>)> = HashMap::new();
    for &(s, segment, _) in &places {
        if let std::collections::hash_map::Entry::Vacant(entry) = shapes.entry((s, segment)) {
            let path = segment_path(s, segment);
            let ((stored_dim, ..), offsets) =
                read_shape(path).with_context(|| format!("reading cached features {}", path.display()))?;
            entry.insert((stores[s].1.width(stored_dim), offsets.windows(2).map(|w| w[1] - w[0]).collect()));
        }
    }
    let Some(&(s, segment, _)) = places.first() else {
        return Ok(FeatureSet::empty(0));
    };
    let dim = shapes[&(s, segment)].0;
    if let Some((width, _)) = shapes.values().find(|(width, _)| *width != dim) {
        bail!("cached features of {width} values per row beside rows of {dim}");
    }
    let mut out = FeatureSet::empty(dim);
    for &(s, segment, row) in &places {
        let words = out.word_offsets.last().copied().unwrap_or(0) + shapes[&(s, segment)].1[row];
        out.word_offsets.push(words);
    }
    out.means = vec![f16::ZERO; keys.len() * dim];
    out.maxes = vec![f16::ZERO; keys.len() * dim];
    out.words = vec![f16::ZERO; *out.word_offsets.last().unwrap_or(&0) as usize * dim];

    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| places[i]);
    let mut loaded: Option<((usize, usize), FeatureSet)> = None;
    let mut row_values = Vec::new();
    for i in order {
        let (s, segment, row) = places[i];
        if loaded.as_ref().is_none_or(|(at, _)| *at != (s, segment)) {
            drop(loaded.take()); // the previous segment is freed before the next one is read
            let path = segment_path(s, segment);
            let set = read(path).with_context(|| format!("reading cached features {}", path.display()))?;
            loaded = Some(((s, segment), set));
        }
        let from = &loaded.as_ref().expect("loaded above").1;
        let columns = &stores[s].1;
        let mut fill = |to: &mut [f16], rows: &[f16]| {
            row_values.clear();
            columns.extend(&mut row_values, rows, from.dim);
            to.copy_from_slice(&row_values);
        };
        fill(&mut out.means[i * dim..(i + 1) * dim], from.mean(row));
        fill(&mut out.maxes[i * dim..(i + 1) * dim], from.max(row));
        let (a, b) = (out.word_offsets[i] as usize, out.word_offsets[i + 1] as usize);
        fill(&mut out.words[a * dim..b * dim], from.words(row));
    }
    Ok(out)
}

/// Encodes the texts `which` of `request` (whose keys are `keys`) into segments of
/// `store`, one per [`SEGMENT_TEXTS`] texts, so that a run killed while encoding keeps
/// what it had encoded.
fn encode_into(
    store: &Store,
    pipeline: &Pipeline,
    layers: &[usize],
    options: &PipelineOptions,
    request: &FeatureRequest,
    which: &[usize],
    keys: &[TextKey],
) -> Result<()> {
    let started = Instant::now();
    let bar = logging::progress_bar(
        which.len() as u64,
        "encoding {prefix}: {bar:30} {pos}/{len} texts · {elapsed} elapsed, ETA {eta}",
        false,
    );
    bar.set_prefix(request.label.to_string());
    for segment in which.chunks(SEGMENT_TEXTS) {
        let mut set = FeatureSet::empty(0);
        for chunk in segment.chunks(CHUNK_TEXTS) {
            let refs: Vec<&str> = chunk.iter().map(|&i| request.texts[i].as_str()).collect();
            let spans: Vec<Vec<(usize, usize)>> = chunk.iter().map(|&i| request.spans(i).to_vec()).collect();
            let features = pipeline.text_features(&refs, &spans, layers, options).with_context(|| {
                format!("{}: encoding texts {} to {}", request.label, chunk[0] + 1, chunk[chunk.len() - 1] + 1)
            })?;
            for f in features {
                set.dim = f.mean.len();
                set.means.extend(f.mean.iter().map(|&x| f16::from_f32(x)));
                set.maxes.extend(f.max.iter().map(|&x| f16::from_f32(x)));
                set.words.extend(f.words.iter().map(|&x| f16::from_f32(x)));
                set.word_offsets.push((set.words.len() / set.dim) as u64);
            }
            bar.inc(chunk.len() as u64);
        }
        let segment_keys: Vec<TextKey> = segment.iter().map(|&i| keys[i]).collect();
        store.write_segment(&segment_keys, &set)?;
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    logging::info(
        "features_encoded",
        &format!("{}: encoded {} texts in {seconds:.0} s", request.label, which.len()),
        json!({"data": request.label, "texts": which.len(), "seconds": seconds}),
    );
    Ok(())
}

fn f16_bytes(values: &[f16]) -> &[u8] {
    // f16 is a plain 16-bit value; the file is little-endian like every target docclass builds for.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn write(path: &Path, keys: &[TextKey], set: &FeatureSet) -> Result<()> {
    let partial = crate::fsutil::partial_path(path);
    {
        let mut out = BufWriter::new(File::create(&partial)?);
        let header =
            serde_json::json!({"dim": set.dim, "texts": set.texts(), "words": set.words.len() / set.dim.max(1)})
                .to_string();
        out.write_all(MAGIC)?;
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        keys.iter().try_for_each(|k| out.write_all(k))?;
        out.write_all(f16_bytes(&set.means))?;
        out.write_all(f16_bytes(&set.maxes))?;
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

/// The header's `(dim, texts, words)` and the keys.
fn read_head(file: &mut impl Read) -> Result<((usize, usize, usize), Vec<TextKey>)> {
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
    let mut keys = vec![[0u8; 32]; texts];
    for key in &mut keys {
        file.read_exact(key).context("the file is truncated")?;
    }
    Ok(((dim, texts, words), keys))
}

fn read_keys(path: &Path) -> Result<Vec<TextKey>> {
    Ok(read_head(&mut BufReader::new(File::open(path)?))?.1)
}

/// A segment's `(dim, texts, words)` and word offsets, without reading its rows.
fn read_shape(path: &Path) -> Result<((usize, usize, usize), Vec<u64>)> {
    let mut file = BufReader::new(File::open(path)?);
    let ((dim, texts, words), _) = read_head(&mut file)?;
    file.seek_relative((2 * texts * dim * std::mem::size_of::<f16>()) as i64)?;
    Ok(((dim, texts, words), read_offsets(&mut file, texts)?))
}

fn read_offsets(file: &mut impl Read, texts: usize) -> Result<Vec<u64>> {
    let mut word_offsets = Vec::with_capacity(texts + 1);
    for _ in 0..=texts {
        let mut v = [0u8; 8];
        file.read_exact(&mut v).context("the file is truncated")?;
        word_offsets.push(u64::from_le_bytes(v));
    }
    Ok(word_offsets)
}

fn read(path: &Path) -> Result<FeatureSet> {
    let mut file = BufReader::new(File::open(path)?);
    let ((dim, texts, words), _) = read_head(&mut file)?;
    let means = read_f16(&mut file, texts * dim)?;
    let maxes = read_f16(&mut file, texts * dim)?;
    let word_offsets = read_offsets(&mut file, texts)?;
    let words = read_f16(&mut file, words * dim)?;
    Ok(FeatureSet { dim, means, maxes, word_offsets, words })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_layers_are_cut_from_features_of_every_layer_across_segments() {
        // 3 layers of width 2; two segments of one and two texts, asked for out of order.
        let dir = tempfile::tempdir().unwrap();
        let value = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        let row = |x: f32| value(&[x, x + 0.5, x + 1., x + 1.5, x + 2., x + 2.5]);
        let first = FeatureSet {
            dim: 6,
            means: row(1.),
            maxes: row(7.),
            word_offsets: vec![0, 2],
            words: [row(11.), row(21.)].concat(),
        };
        let second = FeatureSet {
            dim: 6,
            means: [row(2.), row(3.)].concat(),
            maxes: [row(8.), row(9.)].concat(),
            word_offsets: vec![0, 0, 1],
            words: row(31.),
        };
        let keys = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let paths = [dir.path().join("a.feat"), dir.path().join("b.feat")];
        write(&paths[0], &keys[..1], &first).unwrap();
        write(&paths[1], &keys[1..], &second).unwrap();
        let index = HashMap::from([(keys[0], (0, 0)), (keys[1], (1, 0)), (keys[2], (1, 1))]);
        let store = Store { dir: dir.path().to_path_buf(), segments: paths.to_vec(), index };
        let columns = Columns::Layers { width: 2, layers: vec![1, 3] };
        let chosen = assemble(&[(store, columns)], &[keys[2], keys[0], keys[1]]).unwrap();
        let cut = |x: f32| value(&[x, x + 0.5, x + 2., x + 2.5]);
        assert_eq!((chosen.dim, chosen.texts()), (4, 3));
        assert_eq!((chosen.mean(0), chosen.mean(1), chosen.mean(2)), (&cut(3.)[..], &cut(1.)[..], &cut(2.)[..]));
        assert_eq!(chosen.max(1), &cut(7.)[..]);
        assert_eq!(chosen.words(0), &cut(31.)[..]);
        assert_eq!(chosen.words(1), &[cut(11.), cut(21.)].concat()[..]);
        assert_eq!(chosen.words(2), &[][..]);
    }

    #[test]
    fn segments_round_trip_with_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.feat");
        let value = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        let set = FeatureSet {
            dim: 2,
            means: value(&[1., 2., 3., 4.]),
            maxes: value(&[5., 6., 7., 8.]),
            word_offsets: vec![0, 1, 1],
            words: value(&[9., 10.]),
        };
        let keys = [[1u8; 32], [2u8; 32]];
        write(&path, &keys, &set).unwrap();
        assert_eq!(read_keys(&path).unwrap(), keys);
        let back = read(&path).unwrap();
        assert_eq!(
            (back.texts(), back.max(1), back.words(0), back.words(1)),
            (2, &value(&[7., 8.])[..], &value(&[9., 10.])[..], &[][..])
        );
    }
}
