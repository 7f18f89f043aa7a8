//! Reading safetensors tensor by tensor with positioned reads instead of a memory map.
//! A memory-mapped file stays resident while the f32 tensors are built from it, so the
//! peak memory of a run would count every weight twice; reading each tensor straight
//! into its own buffer keeps one copy.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use serde::Deserialize;

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// The tensors of one or more safetensors files (a sharded checkpoint).
pub struct SafetensorFiles {
    files: Vec<(PathBuf, File)>,
    entries: HashMap<String, Entry>,
}

/// An error without a captured backtrace: these are input errors, reported in one line.
macro_rules! fail {
    ($($arg:tt)*) => { return Err(candle_core::Error::Msg(format!($($arg)*))) };
}

/// The largest header a safetensors file may have (the format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

impl SafetensorFiles {
    pub fn open(paths: &[PathBuf]) -> candle_core::Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut len_bytes = [0u8; 8];
            read_at(&file, path, &mut len_bytes, 0)?;
            let header_len = u64::from_le_bytes(len_bytes);
            if header_len > MAX_HEADER_BYTES || 8 + header_len > size {
                fail!("{}: not a safetensors file (header length {header_len})", path.display());
            }
            let mut header = vec![0u8; header_len as usize];
            read_at(&file, path, &mut header, 8)?;
            let parsed: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
                .map_err(|e| candle_core::Error::Msg(format!("{}: bad safetensors header: {e}", path.display())))?;
            for (name, value) in parsed {
                if name == "__metadata__" {
                    continue;
                }
                let info: TensorInfo = serde_json::from_value(value)
                    .map_err(|e| candle_core::Error::Msg(format!("{}: tensor {name}: {e}", path.display())))?;
                let dtype = parse_dtype(&info.dtype).ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "{}: tensor {name}: unsupported dtype {}",
                        path.display(),
                        info.dtype
                    ))
                })?;
                let (start, end) = (8 + header_len + info.data_offsets.0, 8 + header_len + info.data_offsets.1);
                let expected = info.shape.iter().product::<usize>() * dtype.size_in_bytes();
                if end > size {
                    fail!("{}: truncated: tensor {name} ends at byte {end}, the file has {size}", path.display());
                }
                if end < start || (end - start) as usize != expected {
                    fail!("{}: tensor {name}: its data range does not match its shape", path.display());
                }
                entries.insert(name, Entry { file: index, dtype, shape: info.shape, start, end });
            }
            files.push((path.clone(), file));
        }
        Ok(Self { files, entries })
    }

    pub fn is_f32(&self, name: &str) -> bool {
        self.entries.get(name).is_some_and(|entry| entry.dtype == DType::F32)
    }

    /// Calls `visit` with consecutive blocks of whole rows of the 2-d f32 tensor `name`
    /// (`rows_per_read` rows at most), so that a large table can be converted without
    /// holding all of it at f32. Returns the tensor's shape.
    pub fn for_each_f32_rows(
        &self,
        name: &str,
        rows_per_read: usize,
        mut visit: impl FnMut(&[f32]),
    ) -> candle_core::Result<(usize, usize)> {
        let Some(entry) = self.entries.get(name) else { fail!("cannot find tensor {name}") };
        let (path, file) = &self.files[entry.file];
        let &[rows, cols] = entry.shape.as_slice() else {
            fail!("{name}: expected a 2-d tensor, not {:?}", entry.shape)
        };
        if entry.dtype != DType::F32 {
            fail!("{name}: expected f32 values, not {:?}", entry.dtype);
        }
        let mut values = vec![0f32; rows_per_read.max(1) * cols];
        let mut row = 0;
        while row < rows {
            let count = rows_per_read.max(1).min(rows - row);
            let chunk = &mut values[..count * cols];
            // Safety: any bit pattern is a valid f32, and the byte view covers exactly `chunk`.
            let bytes = unsafe { std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast::<u8>(), chunk.len() * 4) };
            read_at(file, path, bytes, entry.start + (row * cols * 4) as u64)?;
            if cfg!(target_endian = "big") {
                chunk.iter_mut().for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
            }
            visit(chunk);
            row += count;
        }
        Ok((rows, cols))
    }

    fn load(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        let Some(entry) = self.entries.get(name) else { fail!("cannot find tensor {name}") };
        let (path, file) = &self.files[entry.file];
        let shape = Shape::from(entry.shape.clone());
        let tensor = if entry.dtype == DType::F32 {
            // Read straight into the f32 buffer the tensor will own.
            let mut values = vec![0f32; shape.elem_count()];
            // Safety: any bit pattern is a valid f32, and the byte view covers exactly `values`.
            let bytes = unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), values.len() * 4) };
            read_at(file, path, bytes, entry.start)?;
            if cfg!(target_endian = "big") {
                values.iter_mut().for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
            }
            Tensor::from_vec(values, shape, device)?
        } else {
            let mut bytes = vec![0u8; (entry.end - entry.start) as usize];
            read_at(file, path, &mut bytes, entry.start)?;
            Tensor::from_raw_buffer(&bytes, entry.dtype, shape.dims(), device)?
        };
        tensor.to_dtype(dtype)
    }
}

fn read_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> candle_core::Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        candle_core::Error::Msg(format!("{}: reading {} bytes at {offset}: {e}", path.display(), buf.len()))
    })
}

fn parse_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "U32" => DType::U32,
        "U8" => DType::U8,
        _ => return None,
    })
}

impl SimpleBackend for SafetensorFiles {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.load(name, dtype, device)?;
        if tensor.shape() != &shape {
            fail!("shape mismatch for {name}: the checkpoint has {:?}, the config needs {:?}", tensor.shape(), shape);
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}
