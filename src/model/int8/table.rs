//! The word-embedding table at int8: the largest tensor of the encoder, kept in 4-bit
//! blocks where that is exact and as int8 rows otherwise, and dequantized per batch for
//! the tokens it holds.

use candle_core::{bail, Tensor};

use super::quantize::{quantize, scale_for};

/// Values per 4-bit block of the word-embedding table (ggml's Q4_0).
const Q4_BLOCK: usize = 32;

/// The word-embedding table, dequantized per batch for the tokens it holds:
/// - as 4-bit blocks when every block of 32 values is exactly `k · d` with k in −8..=7 and
///   an f16 `d`: what a table dequantized from Q4_0 (the default encoder's source) is. Then
///   the lookup gives back the f32 values bit for bit, at 4.5 bits per value;
/// - otherwise as int8 rows with one scale each.
pub struct QuantizedTable {
    hidden: usize,
    storage: TableStorage,
}

enum TableStorage {
    /// Per block: 16 bytes of `k + 8` (value 2i in the low nibble of byte i, 2i + 1 in the
    /// high one) and its scale `d`.
    Q4 {
        nibbles: Vec<u8>,
        scales: Vec<half::f16>,
    },
    Int8 {
        values: Vec<i8>,
        scales: Vec<f32>,
    },
}

impl QuantizedTable {
    pub fn with_capacity(rows: usize, hidden: usize) -> Self {
        let storage = if hidden.is_multiple_of(Q4_BLOCK) {
            TableStorage::Q4 {
                nibbles: Vec::with_capacity(rows * hidden / 2),
                scales: Vec::with_capacity(rows * hidden / Q4_BLOCK),
            }
        } else {
            TableStorage::Int8 { values: Vec::with_capacity(rows * hidden), scales: Vec::with_capacity(rows) }
        };
        Self { hidden, storage }
    }

    /// Appends rows (`hidden` f32 values each), so that a table can be built from a file
    /// without holding it at f32. The first row that is not exact in 4 bits turns the
    /// table into int8 rows (those already stored are converted: their values are exact).
    pub fn push_rows(&mut self, rows: &[f32]) {
        for row in rows.chunks_exact(self.hidden) {
            if let TableStorage::Q4 { nibbles, scales } = &mut self.storage {
                let blocks: Option<Vec<_>> = row.chunks_exact(Q4_BLOCK).map(exact_q4).collect();
                if let Some(blocks) = blocks {
                    for (scale, packed) in blocks {
                        scales.push(scale);
                        nibbles.extend_from_slice(&packed);
                    }
                    continue;
                }
                self.convert_to_int8_rows();
            }
            let TableStorage::Int8 { values, scales } = &mut self.storage else { unreachable!("converted above") };
            let (scale, inverse) = scale_for(row);
            scales.push(scale);
            values.extend(row.iter().map(|&x| quantize(x, inverse) as i8));
        }
    }

    fn convert_to_int8_rows(&mut self) {
        let mut table = QuantizedTable {
            hidden: self.hidden,
            storage: TableStorage::Int8 { values: Vec::new(), scales: Vec::new() },
        };
        let mut row = vec![0f32; self.hidden];
        for id in 0..self.rows() {
            self.row_into(id, &mut row);
            table.push_rows(&row);
        }
        *self = table;
    }

    pub fn rows(&self) -> usize {
        match &self.storage {
            TableStorage::Q4 { scales, .. } => scales.len() * Q4_BLOCK / self.hidden,
            TableStorage::Int8 { scales, .. } => scales.len(),
        }
    }

    /// Whether the table holds its values exactly (4-bit blocks).
    pub fn is_exact(&self) -> bool {
        matches!(self.storage, TableStorage::Q4 { .. })
    }

    fn row_into(&self, id: usize, out: &mut [f32]) {
        match &self.storage {
            TableStorage::Q4 { nibbles, scales } => {
                let blocks = self.hidden / Q4_BLOCK;
                for (b, out) in out.chunks_exact_mut(Q4_BLOCK).enumerate() {
                    let block = id * blocks + b;
                    let d = scales[block].to_f32();
                    let packed = &nibbles[block * Q4_BLOCK / 2..(block + 1) * Q4_BLOCK / 2];
                    for (pair, &byte) in out.chunks_exact_mut(2).zip(packed) {
                        // The same arithmetic as the import from Q4_0: (nibble − 8) · d.
                        pair[0] = ((byte & 0x0f) as i32 - 8) as f32 * d;
                        pair[1] = ((byte >> 4) as i32 - 8) as f32 * d;
                    }
                }
            }
            TableStorage::Int8 { values, scales } => {
                let scale = scales[id];
                for (out, &q) in out.iter_mut().zip(&values[id * self.hidden..(id + 1) * self.hidden]) {
                    *out = q as f32 * scale;
                }
            }
        }
    }

    /// The dequantized rows of `ids`, `[ids.len(), hidden]`.
    pub fn lookup(&self, ids: &[u32], device: &candle_core::Device) -> candle_core::Result<Tensor> {
        let rows = self.rows();
        let mut out = vec![0f32; ids.len() * self.hidden];
        for (&id, row) in ids.iter().zip(out.chunks_exact_mut(self.hidden)) {
            if id as usize >= rows {
                bail!("token id {id} outside the embedding table of {rows} rows");
            }
            self.row_into(id as usize, row);
        }
        Tensor::from_vec(out, (ids.len(), self.hidden), device)
    }
}

/// A block as 4-bit values if it is exactly `k · d` (k in −8..=7, d an f16): the value of
/// largest magnitude is then −8 · d, as ggml's Q4_0 quantizer makes it (or the block is 0).
fn exact_q4(block: &[f32]) -> Option<(half::f16, [u8; Q4_BLOCK / 2])> {
    let extreme = block.iter().copied().fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = extreme / -8.0;
    let scale = half::f16::from_f32(d);
    if scale.to_f32() != d || !d.is_finite() {
        return None;
    }
    let mut packed = [0u8; Q4_BLOCK / 2];
    for (i, &v) in block.iter().enumerate() {
        let k = if d == 0.0 { 0 } else { (v / d).round() as i32 };
        if !(-8..=7).contains(&k) || (k as f32 * d).to_bits() != v.to_bits() {
            return None;
        }
        packed[i / 2] |= ((k + 8) as u8) << (4 * (i % 2));
    }
    Some((scale, packed))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::int8::tests::random;

    #[test]
    fn embedding_rows_are_close_and_ids_are_checked() {
        let values = random(5 * 64, 6);
        let mut table = QuantizedTable::with_capacity(5, 64);
        table.push_rows(&values);
        assert!(!table.is_exact(), "random values are not 4-bit");
        let rows = table.lookup(&[3, 0], &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        for (got, want) in rows[0].iter().zip(&values[3 * 64..4 * 64]) {
            assert!((got - want).abs() < 1.0 / 254.0 + 1e-6);
        }
        assert!(table.lookup(&[5], &Device::Cpu).is_err());
    }

    /// Rows dequantized from Q4_0 come back bit for bit; a later row that is not 4-bit
    /// turns the table into int8 rows, and the earlier rows stay within int8's step.
    #[test]
    fn tables_from_four_bit_weights_are_exact() {
        let four_bit = |row: usize| -> Vec<f32> {
            let mut rng = crate::rng::Rng::new(row as u64);
            (0..2)
                .flat_map(|_| {
                    let d = half::f16::from_f32(0.01 + rng.next_f32() * 0.1).to_f32();
                    let mut ks: Vec<i32> = (0..32).map(|_| rng.below(16) as i32 - 8).collect();
                    ks[rng.below(32)] = -8;
                    ks.into_iter().map(move |k| k as f32 * d).collect::<Vec<_>>()
                })
                .collect()
        };
        let rows: Vec<f32> = (0..4).flat_map(four_bit).collect();
        let mut table = QuantizedTable::with_capacity(5, 64);
        table.push_rows(&rows);
        assert!(table.is_exact());
        let got = table.lookup(&[2, 0], &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got[0], rows[128..192]);
        assert_eq!(got[1], rows[..64]);
        table.push_rows(&random(64, 9));
        assert!(!table.is_exact());
        let got = table.lookup(&[2], &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let step = rows[128..192].iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        for (got, want) in got[0].iter().zip(&rows[128..192]) {
            assert!((got - want).abs() <= step / 2.0 + 1e-7);
        }
    }
}
