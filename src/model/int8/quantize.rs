//! Scales and rounding shared by every kernel, and the reference quantization of
//! activations that the SIMD versions match bit for bit.

use super::BLOCK;

/// The scale of a group of values and its inverse: the largest magnitude maps to 127.
/// An all-zero group gets scale 0 (its values quantize to 0 and contribute nothing).
pub(super) fn scale_for(values: &[f32]) -> (f32, f32) {
    scale_from_max(values.iter().fold(0f32, |m, v| m.max(v.abs())))
}

pub(super) fn scale_from_max(max: f32) -> (f32, f32) {
    if max > 0.0 && max.is_finite() {
        (max / 127.0, 127.0 / max)
    } else {
        (0.0, 0.0)
    }
}

/// Rounds half to even, as `vcvtps2dq` does; adding and taking away 1.5 · 2^23 rounds without
/// calling `rintf` (which `round_ties_even` is on CPUs below SSE4.1) for |value| < 2^22.
#[inline(always)]
pub(super) fn quantize(value: f32, inverse: f32) -> i32 {
    const ROUND: f32 = 12_582_912.0;
    let scaled = (value * inverse).clamp(-127.0, 127.0);
    ((scaled + ROUND) - ROUND) as i32
}

/// Each row of `xs` (`in_dim` values) block by block into `out` (`[rows, padded_in]`, the
/// padding zero) and `scales` (`[rows, blocks]`): the reference the SIMD versions match bit
/// for bit (`round_ties_even` is the rounding of `vcvtps2dq`).
pub(super) fn quantize_rows(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [i16]) {
    let blocks = padded_in / BLOCK;
    for (r, row) in xs.chunks_exact(in_dim).enumerate() {
        out[r * padded_in..(r + 1) * padded_in].fill(0);
        for (b, block) in row.chunks(BLOCK).enumerate() {
            let (scale, inverse) = scale_for(block);
            scales[r * blocks + b] = scale;
            let first = r * padded_in + b * BLOCK;
            for (i, &x) in block.iter().enumerate() {
                out[first + i] = quantize(x, inverse) as i16;
            }
        }
    }
}

/// Checks that the buffers hold `xs`'s rows, before unchecked SIMD stores into them.
pub(super) fn check_sizes(xs: &[f32], in_dim: usize, padded_in: usize, scales: &[f32], out_len: usize) {
    let rows = xs.len() / in_dim;
    assert!(
        xs.len().is_multiple_of(in_dim) && scales.len() >= rows * (padded_in / BLOCK) && out_len >= rows * padded_in
    );
}
