//! The AVX2 kernel: activations and weights as 16-bit values, multiplied in pairs with
//! `vpmaddwd` (16 products per instruction), which never saturates. Its block quantizer
//! also serves the VNNI kernel. No closures here: they would not inherit the target
//! features, and every intrinsic would become a call.

// The tiles index several register arrays by row.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::portable::{pack_pairs, PAIR_PANEL_WIDTH};
use super::quantize::{check_sizes, scale_from_max};
use super::{with_tile_rows, Kernel, BLOCK};

pub(super) struct Avx2;

impl Kernel for Avx2 {
    const PANEL_WIDTH: usize = PAIR_PANEL_WIDTH;
    const TILE_ROWS: usize = 6;
    type Activation = i16;
    type Packed = Vec<i16>;

    fn pack(quantized: &[i8], panels: usize, padded_in: usize) -> Vec<i16> {
        pack_pairs(quantized, panels, padded_in)
    }

    unsafe fn quantize_rows(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [i16]) {
        // SAFETY: the caller runs this kernel only on a CPU with AVX2 and FMA.
        unsafe { rows_to_words(xs, in_dim, padded_in, scales, out) }
    }

    unsafe fn tile(
        rows: usize,
        a: &[i16],
        row_scales: &[f32],
        packed: &Vec<i16>,
        panel: usize,
        column_scales: &[f32],
        blocks: usize,
        out: *mut f32,
        out_stride: usize,
    ) {
        let padded_in = blocks * BLOCK;
        let panel = &packed[panel * 16 * padded_in..(panel + 1) * 16 * padded_in];
        // SAFETY: the caller runs this kernel only on a CPU with AVX2 and FMA, and passes
        // `out` as `tile_rows` needs; `tile_rows` checks the input slices' lengths before its
        // unchecked loads.
        unsafe {
            with_tile_rows!(
                rows,
                [1, 2, 3, 4, 5, 6],
                tile_rows(a, row_scales, panel, column_scales, blocks, out, out_stride)
            )
        }
    }
}

/// Rows into 16-bit values, as `quantize::quantize_rows` does.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_to_words(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [i16]) {
    check_sizes(xs, in_dim, padded_in, scales, out.len());
    let mut padded = [0f32; BLOCK];
    for (r, row) in xs.chunks_exact(in_dim).enumerate() {
        for (b, block) in row.chunks(BLOCK).enumerate() {
            let q = quantize_block(block, &mut padded, &mut scales[r * (padded_in / BLOCK) + b]);
            // In bounds: `check_sizes` saw room for every row's `padded_in` values.
            let dst = out.as_mut_ptr().add(r * padded_in + b * BLOCK);
            for pair in 0..BLOCK / 16 {
                let words = _mm256_packs_epi32(q[2 * pair], q[2 * pair + 1]);
                _mm256_storeu_si256(dst.add(16 * pair).cast(), _mm256_permute4x64_epi64::<0b11_01_10_00>(words));
            }
        }
    }
}

/// One block's [`BLOCK`] values (a shorter last block padded with zeros, via `padded`)
/// as vectors of 8 i32; writes the block's scale. Matches `quantize` + `scale_for` bit for bit:
/// the maximum does not depend on the order, and `vcvtps2dq` rounds half to even.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn quantize_block(block: &[f32], padded: &mut [f32; BLOCK], scale: &mut f32) -> [__m256i; BLOCK / 8] {
    let source = if block.len() == BLOCK {
        block.as_ptr()
    } else {
        *padded = [0.0; BLOCK];
        padded[..block.len()].copy_from_slice(block);
        padded.as_ptr()
    };
    let sign = _mm256_set1_ps(-0.0);
    let mut values = [_mm256_setzero_ps(); BLOCK / 8];
    let mut max = _mm256_setzero_ps();
    for i in 0..BLOCK / 8 {
        // In bounds: `source` holds BLOCK values.
        values[i] = _mm256_loadu_ps(source.add(8 * i));
        max = _mm256_max_ps(max, _mm256_andnot_ps(sign, values[i]));
    }
    let max = _mm_max_ps(_mm256_castps256_ps128(max), _mm256_extractf128_ps::<1>(max));
    let max = _mm_max_ps(max, _mm_movehl_ps(max, max));
    let max = _mm_max_ss(max, _mm_movehdup_ps(max));
    let (block_scale, inverse) = scale_from_max(_mm_cvtss_f32(max));
    *scale = block_scale;
    let inverse = _mm256_set1_ps(inverse);
    let high = _mm256_set1_epi32(127);
    let low = _mm256_set1_epi32(-127);
    let mut q = [_mm256_setzero_si256(); BLOCK / 8];
    for i in 0..BLOCK / 8 {
        let rounded = _mm256_cvtps_epi32(_mm256_mul_ps(values[i], inverse));
        q[i] = _mm256_max_epi32(_mm256_min_epi32(rounded, high), low);
    }
    q
}

/// Up to 6 rows × 16 columns: `a` holds the rows' 16-bit values, `panel` the 16 columns'
/// weights in pairs of inputs.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_rows<const MR: usize>(
    a: &[i16],
    row_scales: &[f32],
    panel: &[i16],
    column_scales: &[f32],
    blocks: usize,
    out: *mut f32,
    out_stride: usize,
) {
    let padded_in = blocks * BLOCK;
    // The loads below are unchecked: these bounds make them safe.
    assert!(a.len() >= MR * padded_in && panel.len() >= 16 * padded_in);
    assert!(row_scales.len() >= MR * blocks && column_scales.len() >= 16);
    let a = a.as_ptr();
    let w = panel.as_ptr();
    let mut sums = [[_mm256_setzero_ps(); 2]; MR];
    for b in 0..blocks {
        let mut dots = [[_mm256_setzero_si256(); 2]; MR];
        for g in b * BLOCK / 2..(b + 1) * BLOCK / 2 {
            let w0 = _mm256_loadu_si256(w.add(g * 32).cast());
            let w1 = _mm256_loadu_si256(w.add(g * 32 + 16).cast());
            for m in 0..MR {
                let x = _mm256_set1_epi32(a.add(m * padded_in + 2 * g).cast::<i32>().read_unaligned());
                dots[m][0] = _mm256_add_epi32(dots[m][0], _mm256_madd_epi16(x, w0));
                dots[m][1] = _mm256_add_epi32(dots[m][1], _mm256_madd_epi16(x, w1));
            }
        }
        for m in 0..MR {
            let scale = _mm256_set1_ps(row_scales[m * blocks + b]);
            sums[m][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[m][0]), scale, sums[m][0]);
            sums[m][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[m][1]), scale, sums[m][1]);
        }
    }
    let scale0 = _mm256_loadu_ps(column_scales.as_ptr());
    let scale1 = _mm256_loadu_ps(column_scales.as_ptr().add(8));
    for m in 0..MR {
        _mm256_storeu_ps(out.add(m * out_stride), _mm256_mul_ps(sums[m][0], scale0));
        _mm256_storeu_ps(out.add(m * out_stride + 8), _mm256_mul_ps(sums[m][1], scale1));
    }
}
