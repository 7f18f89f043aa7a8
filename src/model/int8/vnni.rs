//! The AVX-512 VNNI kernel: `vpdpbusd` multiplies unsigned by signed bytes, 64 products
//! per instruction. Activations are stored as unsigned bytes `q + 128`; the offset's
//! share of each dot product is taken back out per block with 128 times the block's
//! weight sums, computed when the weights are packed.

// The tiles index several register arrays by row and take their operands as plain slices.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::avx2::quantize_block;
use super::quantize::check_sizes;
use super::{with_tile_rows, Kernel, BLOCK};

pub(super) struct Vnni;

/// Columns per panel.
const WIDTH: usize = 32;

/// Weights in groups of 4 inputs, and per panel, block and column 128 times the sum of
/// the block's weights.
pub(super) struct VnniWeights {
    bytes: Vec<i8>,
    offsets: Vec<i32>,
}

impl VnniWeights {
    /// Panel `panel`'s weights (`width` columns) and its blocks' offsets.
    pub(super) fn panel(&self, panel: usize, width: usize, blocks: usize) -> (&[i8], &[i32]) {
        let padded_in = blocks * BLOCK;
        (
            &self.bytes[panel * width * padded_in..(panel + 1) * width * padded_in],
            &self.offsets[panel * blocks * width..(panel + 1) * blocks * width],
        )
    }
}

impl Kernel for Vnni {
    const PANEL_WIDTH: usize = WIDTH;
    const TILE_ROWS: usize = 8;
    type Activation = u8;
    type Packed = VnniWeights;

    fn pack(quantized: &[i8], panels: usize, padded_in: usize) -> VnniWeights {
        let at = |n: usize, k: usize| quantized[n * padded_in + k];
        let blocks = padded_in / BLOCK;
        let mut bytes = Vec::with_capacity(quantized.len());
        let mut offsets = Vec::with_capacity(panels * blocks * WIDTH);
        for p in 0..panels {
            for g in 0..padded_in / 4 {
                for c in 0..WIDTH {
                    bytes.extend((0..4).map(|i| at(p * WIDTH + c, 4 * g + i)));
                }
            }
            for b in 0..blocks {
                offsets.extend(
                    (0..WIDTH)
                        .map(|c| 128 * (b * BLOCK..(b + 1) * BLOCK).map(|k| at(p * WIDTH + c, k) as i32).sum::<i32>()),
                );
            }
        }
        VnniWeights { bytes, offsets }
    }

    unsafe fn quantize_rows(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [u8]) {
        // SAFETY: the caller runs this kernel only on a CPU with AVX-512 VNNI, which
        // `Int8Kernel` chooses only together with AVX2 and FMA.
        unsafe { rows_to_bytes(xs, in_dim, padded_in, scales, out, ByteCoding::Offset) }
    }

    unsafe fn tile(
        rows: usize,
        a: &[u8],
        row_scales: &[f32],
        packed: &VnniWeights,
        panel: usize,
        column_scales: &[f32],
        blocks: usize,
        out: *mut f32,
        out_stride: usize,
    ) {
        let (weights, offsets) = packed.panel(panel, WIDTH, blocks);
        // SAFETY: the caller runs this kernel only on a CPU with its features, and passes
        // `out` as `tile_rows` needs; `tile_rows` checks the input slices' lengths before its
        // unchecked loads.
        unsafe {
            with_tile_rows!(
                rows,
                [1, 2, 3, 4, 5, 6, 7, 8],
                tile_rows(a, row_scales, weights, offsets, column_scales, blocks, out, out_stride)
            )
        }
    }
}

/// How a quantized value `q` (in ±127) is stored in a byte.
#[derive(Clone, Copy)]
pub(super) enum ByteCoding {
    /// `q + 128`, unsigned, for `vpdpbusd`.
    Offset,
    /// `q` itself, two's complement, for AMX's signed products.
    Signed,
}

/// Rows into bytes, quantized as `quantize::quantize_rows` does.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn rows_to_bytes(
    xs: &[f32],
    in_dim: usize,
    padded_in: usize,
    scales: &mut [f32],
    out: &mut [u8],
    coding: ByteCoding,
) {
    check_sizes(xs, in_dim, padded_in, scales, out.len());
    // Bytes of 4 values from each of q0..q3 per lane; `order` puts them back in sequence.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let offset = _mm256_set1_epi8(match coding {
        ByteCoding::Offset => -128,
        ByteCoding::Signed => 0,
    });
    let mut padded = [0f32; BLOCK];
    for (r, row) in xs.chunks_exact(in_dim).enumerate() {
        for (b, block) in row.chunks(BLOCK).enumerate() {
            let q = quantize_block(block, &mut padded, &mut scales[r * (padded_in / BLOCK) + b]);
            // In bounds: `check_sizes` saw room for every row's `padded_in` values.
            let dst = out.as_mut_ptr().add(r * padded_in + b * BLOCK);
            for part in 0..BLOCK / 32 {
                let words0 = _mm256_packs_epi32(q[4 * part], q[4 * part + 1]);
                let words1 = _mm256_packs_epi32(q[4 * part + 2], q[4 * part + 3]);
                let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words0, words1), order);
                _mm256_storeu_si256(dst.add(32 * part).cast(), _mm256_xor_si256(bytes, offset));
            }
        }
    }
}

/// Up to 8 rows × 32 columns: `a` holds the rows' offset bytes, `panel` the 32 columns'
/// weights in groups of 4 inputs.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VNNI, and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
unsafe fn tile_rows<const MR: usize>(
    a: &[u8],
    row_scales: &[f32],
    panel: &[i8],
    offsets: &[i32],
    column_scales: &[f32],
    blocks: usize,
    out: *mut f32,
    out_stride: usize,
) {
    let padded_in = blocks * BLOCK;
    // The loads below are unchecked: these bounds make them safe.
    assert!(a.len() >= MR * padded_in && panel.len() >= 32 * padded_in);
    assert!(row_scales.len() >= MR * blocks && offsets.len() >= 32 * blocks && column_scales.len() >= 32);
    let a = a.as_ptr();
    let w = panel.as_ptr();
    let mut sums = [[_mm512_setzero_ps(); 2]; MR];
    for b in 0..blocks {
        let mut dots = [[_mm512_setzero_si512(); 2]; MR];
        for g in b * BLOCK / 4..(b + 1) * BLOCK / 4 {
            let w0 = _mm512_loadu_si512(w.add(g * 128).cast());
            let w1 = _mm512_loadu_si512(w.add(g * 128 + 64).cast());
            for m in 0..MR {
                let x = _mm512_set1_epi32(a.add(m * padded_in + 4 * g).cast::<i32>().read_unaligned());
                dots[m][0] = _mm512_dpbusd_epi32(dots[m][0], x, w0);
                dots[m][1] = _mm512_dpbusd_epi32(dots[m][1], x, w1);
            }
        }
        let offset0 = _mm512_loadu_si512(offsets.as_ptr().add(b * 32).cast());
        let offset1 = _mm512_loadu_si512(offsets.as_ptr().add(b * 32 + 16).cast());
        for m in 0..MR {
            let scale = _mm512_set1_ps(row_scales[m * blocks + b]);
            let dot0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dots[m][0], offset0));
            let dot1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dots[m][1], offset1));
            sums[m][0] = _mm512_fmadd_ps(dot0, scale, sums[m][0]);
            sums[m][1] = _mm512_fmadd_ps(dot1, scale, sums[m][1]);
        }
    }
    let scale0 = _mm512_loadu_ps(column_scales.as_ptr());
    let scale1 = _mm512_loadu_ps(column_scales.as_ptr().add(16));
    for m in 0..MR {
        _mm512_storeu_ps(out.add(m * out_stride), _mm512_mul_ps(sums[m][0], scale0));
        _mm512_storeu_ps(out.add(m * out_stride + 16), _mm512_mul_ps(sums[m][1], scale1));
    }
}
