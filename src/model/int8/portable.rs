//! The portable kernel, plain Rust: the reference the SIMD kernels match bit for bit, and
//! the kernel of CPUs without AVX2. Weights are 16-bit values in pairs of inputs, as the
//! AVX2 kernel lays them out.

use super::quantize::quantize_rows;
use super::{Kernel, BLOCK};

pub(super) struct Portable;

/// Columns per panel of the pair layout (the AVX2 kernel's too).
pub(super) const PAIR_PANEL_WIDTH: usize = 16;

/// `quantized` (`[panels · 16, padded_in]`) as 16-bit values, panel by panel, each panel
/// input pair by input pair, each pair column by column: the AVX2 and portable layout.
pub(super) fn pack_pairs(quantized: &[i8], panels: usize, padded_in: usize) -> Vec<i16> {
    let width = PAIR_PANEL_WIDTH;
    let at = |n: usize, k: usize| quantized[n * padded_in + k];
    let mut packed = Vec::with_capacity(quantized.len());
    for p in 0..panels {
        for g in 0..padded_in / 2 {
            for c in 0..width {
                packed.extend((0..2).map(|i| at(p * width + c, 2 * g + i) as i16));
            }
        }
    }
    packed
}

impl Kernel for Portable {
    const PANEL_WIDTH: usize = PAIR_PANEL_WIDTH;
    const TILE_ROWS: usize = 6;
    type Activation = i16;
    type Packed = Vec<i16>;

    fn pack(quantized: &[i8], panels: usize, padded_in: usize) -> Vec<i16> {
        pack_pairs(quantized, panels, padded_in)
    }

    unsafe fn quantize_rows(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [i16]) {
        quantize_rows(xs, in_dim, padded_in, scales, out)
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
        const WIDTH: usize = PAIR_PANEL_WIDTH;
        let padded_in = blocks * BLOCK;
        let panel = &packed[panel * WIDTH * padded_in..(panel + 1) * WIDTH * padded_in];
        for m in 0..rows {
            let row = &a[m * padded_in..(m + 1) * padded_in];
            let mut sums = [0f32; WIDTH];
            for b in 0..blocks {
                let mut dots = [0i32; WIDTH];
                for g in b * BLOCK / 2..(b + 1) * BLOCK / 2 {
                    let (x0, x1) = (row[2 * g] as i32, row[2 * g + 1] as i32);
                    let group = &panel[g * 2 * WIDTH..(g + 1) * 2 * WIDTH];
                    for (c, dot) in dots.iter_mut().enumerate() {
                        *dot += x0 * group[2 * c] as i32 + x1 * group[2 * c + 1] as i32;
                    }
                }
                let scale = row_scales[m * blocks + b];
                for (sum, dot) in sums.iter_mut().zip(dots) {
                    *sum = (dot as f32).mul_add(scale, *sum);
                }
            }
            for c in 0..WIDTH {
                // SAFETY: the caller's promise: `rows` rows of WIDTH values, `out_stride` apart.
                unsafe { out.add(m * out_stride + c).write(sums[c] * column_scales[c]) };
            }
        }
    }
}
