//! Attention for one window and head in bf16 on the AMX tile unit. `tdpbf16ps` multiplies
//! a tile of 16 rows × 32 bf16 by a tile of 32 × 16 bf16 into 16 × 16 f32 sums. A head of
//! 32 is exactly one tile deep, so the scores of 16 queries against 16 keys are one
//! instruction, and the context takes one per 32 keys and 16 columns.
//!
//! Per block of 32 queries (two tiles that share each key and value tile):
//! 1. scores `S = (scale · Q) Kᵀ` in f32, from the tile unit;
//! 2. weights `e = exp(S − max)` and their sum in f32, the weights then rounded to bf16
//!    (the exponential a cubic, accurate far beyond bf16);
//! 3. context `(e V) / sum`.
//!
//! `tdpbf16ps`'s second operand holds pairs of consecutive inputs side by side, so:
//! - queries are bf16 rows of 32 (64 bytes, one tile row);
//! - keys are one tile per 16 keys: row p holds, key by key, the key's inputs 2p and 2p+1;
//! - values are one tile per 32 tokens and 16 columns: row r holds, column by column,
//!   tokens 2r and 2r+1.
//!
//! Windows are padded with zero rows to a multiple of 32 tokens; the padded keys get no
//! weight and the padded queries' rows are never written out.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;

use super::{HeadTask, BF16_HEAD_DIM};
use crate::model::amx::{with_tiles, TILE_BYTES, TILE_ROWS};

const DIM: usize = BF16_HEAD_DIM;
/// Queries per block: two tile registers.
const QUERY_BLOCK: usize = 2 * TILE_ROWS;
/// Keys per tile of the context product: one tile's depth.
const KEY_CHUNK: usize = 32;
/// bf16 values per tile register.
const TILE_VALUES: usize = TILE_ROWS * TILE_BYTES / 2;

/// A worker's buffers, reused so that no task allocates.
#[derive(Default)]
struct Scratch {
    queries: Vec<u16>,
    keys: Vec<u16>,
    values: Vec<u16>,
    scores: Vec<f32>,
    weights: Vec<u16>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// # Safety
/// The CPU must have AMX-BF16, AVX-512 F, BW and BF16, and this process the tile state;
/// `task.out` must point at `task.len` rows of 32 writable values, `task.out_stride`
/// apart, that nothing else reads or writes meanwhile.
pub(super) unsafe fn head(task: &HeadTask) {
    // SAFETY: the caller's promises.
    SCRATCH.with_borrow_mut(|scratch| unsafe { with_tiles(|| head_on_tiles(task, scratch)) })
}

/// Word indices that interleave columns `first..first + 16` of two bf16 rows.
const fn interleave(first: u16) -> [u16; 32] {
    let mut indices = [0u16; 32];
    let mut n = 0;
    while n < 16 {
        indices[2 * n] = first + n as u16;
        indices[2 * n + 1] = 32 + first + n as u16;
        n += 1;
    }
    indices
}
static INTERLEAVE_LOW: [u16; 32] = interleave(0);
static INTERLEAVE_HIGH: [u16; 32] = interleave(16);

/// 32 f32 at `row` times `scale` as bf16, rounded to nearest even.
///
/// # Safety
/// AVX-512 F and BF16; `row` must point at 32 readable values.
#[inline(always)]
unsafe fn row_to_bf16(row: *const f32, scale: f32) -> __m512i {
    // SAFETY: the caller's promises.
    unsafe {
        let scale = _mm512_set1_ps(scale);
        let low = _mm512_mul_ps(_mm512_loadu_ps(row), scale);
        let high = _mm512_mul_ps(_mm512_loadu_ps(row.add(16)), scale);
        // The second operand fills the lower half.
        std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low))
    }
}

/// # Safety
/// As for [`head`], and the tiles configured as `model::amx` says.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma")]
unsafe fn head_on_tiles(task: &HeadTask, scratch: &mut Scratch) {
    let len = task.len;
    let padded = len.next_multiple_of(KEY_CHUNK);
    assert!(task.head_dim == DIM && task.rows.len() >= len * task.width);
    assert!(task.query.max(task.key).max(task.value) + DIM <= task.width);
    let Scratch { queries, keys, values, scores, weights } = scratch;
    for buffer in [&mut *queries, &mut *keys, &mut *values] {
        if buffer.len() < padded * DIM {
            buffer.resize(padded * DIM, 0);
        }
    }
    if scores.len() < QUERY_BLOCK * padded {
        scores.resize(QUERY_BLOCK * padded, 0.0);
        weights.resize(QUERY_BLOCK * padded, 0);
    }

    // SAFETY: every load reads 32 values of a row inside the window (asserted above),
    // every store writes inside the buffers sized above for `padded` tokens.
    unsafe {
        let row = |t: usize| task.rows.as_ptr().add(t * task.width);
        let zero = _mm512_setzero_si512();
        let mut pair_of_values = [zero; 2];
        for t in 0..padded {
            let real = t < len;
            let query =
                if real { row_to_bf16(row(t).add(task.query), task.scale * std::f32::consts::LOG2_E) } else { zero };
            _mm512_storeu_si512(queries.as_mut_ptr().add(t * DIM).cast(), query);
            // Key t's 16 input pairs go down column t % 16 of its tile.
            let key = if real { row_to_bf16(row(t).add(task.key), 1.0) } else { zero };
            let mut pairs = [0u32; DIM / 2];
            _mm512_storeu_si512(pairs.as_mut_ptr().cast(), key);
            let tile = keys.as_mut_ptr().cast::<u32>().add(t / TILE_ROWS * TILE_VALUES / 2);
            for (p, &pair) in pairs.iter().enumerate() {
                *tile.add(p * TILE_ROWS + t % TILE_ROWS) = pair;
            }
            pair_of_values[t % 2] = if real { row_to_bf16(row(t).add(task.value), 1.0) } else { zero };
            if t % 2 == 1 {
                // Tokens t − 1 and t, side by side per column, as row (t % 32) / 2 of the
                // chunk's two tiles (columns 0–15 and 16–31).
                let chunk = values.as_mut_ptr().add(t / KEY_CHUNK * 2 * TILE_VALUES + (t % KEY_CHUNK) / 2 * 32);
                for (half, indices) in [&INTERLEAVE_LOW, &INTERLEAVE_HIGH].into_iter().enumerate() {
                    let interleaved = _mm512_permutex2var_epi16(
                        pair_of_values[0],
                        _mm512_loadu_si512(indices.as_ptr().cast()),
                        pair_of_values[1],
                    );
                    _mm512_storeu_si512(chunk.add(half * TILE_VALUES).cast(), interleaved);
                }
            }
        }
    }

    let mut context = [0f32; QUERY_BLOCK * DIM];
    let mut inverse_sums = [0f32; QUERY_BLOCK];
    for block in (0..len).step_by(QUERY_BLOCK) {
        // SAFETY: the tiles read 16 rows of 64 bytes inside `queries` and `keys` (rows
        // below `padded`) and write 16 rows of 64 bytes inside `scores` (32 × padded).
        unsafe {
            let score_stride = padded * 4;
            asm!(
                "tileloadd tmm0, [{q} + {stride}]",
                "tileloadd tmm1, [{q} + {stride} + 1024]",
                q = in(reg) queries.as_ptr().add(block * DIM),
                stride = in(reg) TILE_BYTES,
                options(nostack, readonly),
            );
            // Two key tiles per step, into two pairs of sums, so that the tile unit
            // computes one pair while the other is stored.
            for pair in 0..padded / (2 * TILE_ROWS) {
                let out = scores.as_mut_ptr().add(pair * 2 * TILE_ROWS);
                asm!(
                    "tilezero tmm4",
                    "tilezero tmm5",
                    "tilezero tmm6",
                    "tilezero tmm7",
                    "tileloadd tmm2, [{k} + {k_stride}]",
                    "tileloadd tmm3, [{k} + {k_stride} + 1024]",
                    "tdpbf16ps tmm4, tmm0, tmm2",
                    "tdpbf16ps tmm5, tmm1, tmm2",
                    "tdpbf16ps tmm6, tmm0, tmm3",
                    "tdpbf16ps tmm7, tmm1, tmm3",
                    "tilestored [{s} + {s_stride}], tmm4",
                    "tilestored [{s_low} + {s_stride}], tmm5",
                    "tilestored [{s} + {s_stride} + 64], tmm6",
                    "tilestored [{s_low} + {s_stride} + 64], tmm7",
                    k = in(reg) keys.as_ptr().add(pair * 2 * TILE_VALUES),
                    k_stride = in(reg) TILE_BYTES,
                    s = in(reg) out,
                    s_low = in(reg) out.add(TILE_ROWS * padded),
                    s_stride = in(reg) score_stride,
                    options(nostack),
                );
            }
        }
        let rows = (len - block).min(QUERY_BLOCK);
        for (m, inverse_sum) in inverse_sums[..rows].iter_mut().enumerate() {
            // SAFETY: row m of the scores and of the weights, `padded` values each.
            *inverse_sum = 1.0
                / unsafe {
                    weights_row(scores.as_ptr().add(m * padded), len, weights.as_mut_ptr().add(m * padded), padded)
                };
        }
        // SAFETY: the tiles read 16 rows of 64 bytes inside `weights` (32 × padded) and
        // `values` (padded tokens), and write 16 rows of 64 bytes inside `context`.
        unsafe {
            asm!("tilezero tmm4", "tilezero tmm5", "tilezero tmm6", "tilezero tmm7", options(nostack, nomem));
            let weight_stride = padded * 2;
            for chunk in 0..padded / KEY_CHUNK {
                asm!(
                    "tileloadd tmm0, [{w} + {w_stride}]",
                    "tileloadd tmm1, [{w_low} + {w_stride}]",
                    "tileloadd tmm2, [{v} + {v_stride}]",
                    "tileloadd tmm3, [{v} + {v_stride} + 1024]",
                    "tdpbf16ps tmm4, tmm0, tmm2",
                    "tdpbf16ps tmm5, tmm0, tmm3",
                    "tdpbf16ps tmm6, tmm1, tmm2",
                    "tdpbf16ps tmm7, tmm1, tmm3",
                    w = in(reg) weights.as_ptr().add(chunk * KEY_CHUNK),
                    w_low = in(reg) weights.as_ptr().add(TILE_ROWS * padded + chunk * KEY_CHUNK),
                    w_stride = in(reg) weight_stride,
                    v = in(reg) values.as_ptr().add(chunk * 2 * TILE_VALUES),
                    v_stride = in(reg) TILE_BYTES,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{c} + {stride}], tmm4",
                "tilestored [{c} + {stride} + 64], tmm5",
                "tilestored [{c} + {stride} + 2048], tmm6",
                "tilestored [{c} + {stride} + 2112], tmm7",
                c = in(reg) context.as_mut_ptr(),
                stride = in(reg) DIM * 4,
                options(nostack),
            );
        }
        // SAFETY: rows block..block + rows of the head's 32 output columns: the caller's
        // promise for `task.out`.
        unsafe {
            for (m, &inverse) in inverse_sums[..rows].iter().enumerate() {
                let out = task.out.add((block + m) * task.out_stride);
                let scale = _mm512_set1_ps(inverse);
                for half in 0..2 {
                    let sums = _mm512_loadu_ps(context.as_ptr().add(m * DIM + 16 * half));
                    _mm512_storeu_ps(out.add(16 * half), _mm512_mul_ps(sums, scale));
                }
            }
        }
    }
}

/// Writes `2^(score − max)` of a row's `len` scores as bf16 to `weights`, zeros up to
/// `padded`, and returns the sum of the weights before rounding. The scores are in units
/// of log₂ (the queries carry log₂ e), so this is the softmax's `e^(s − max)`.
///
/// # Safety
/// AVX-512 F and BF16; `scores` must point at `padded` readable values (those past `len`
/// are not used) and `weights` at `padded` writable ones; `padded` a multiple of 32.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn weights_row(scores: *const f32, len: usize, weights: *mut u16, padded: usize) -> f32 {
    // SAFETY: the caller's promises; the masks keep loads past `len` from being used.
    unsafe {
        let mask = |i: usize| -> __mmask16 { ((1u32 << len.saturating_sub(i).min(16)) - 1) as __mmask16 };
        let lowest = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut max = lowest;
        for i in (0..len).step_by(16) {
            max = _mm512_max_ps(max, _mm512_mask_loadu_ps(lowest, mask(i), scores.add(i)));
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = _mm512_setzero_ps();
        for i in (0..padded).step_by(32) {
            let (low_valid, high_valid) = (mask(i), mask(i + 16));
            let low = _mm512_sub_ps(_mm512_maskz_loadu_ps(low_valid, scores.add(i)), max);
            let high = _mm512_sub_ps(_mm512_maskz_loadu_ps(high_valid, scores.add(i + 16)), max);
            let low = _mm512_maskz_mov_ps(low_valid, exp2(low));
            let high = _mm512_maskz_mov_ps(high_valid, exp2(high));
            sum = _mm512_add_ps(sum, _mm512_add_ps(low, high));
            let rounded = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low));
            _mm512_storeu_si512(weights.add(i).cast(), rounded);
        }
        _mm512_reduce_add_ps(sum)
    }
}

/// 2^t for t ≤ 0: 2^round(t) times a cubic for 2^f, |f| ≤ ½, fitted for relative error
/// (at most 7.5e-5, far below bf16's rounding of 2e-3). Inputs below −120 give 2^−120, so
/// that nothing becomes denormal (whose arithmetic is many times slower).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp2(t: __m512) -> __m512 {
    const CUBIC: [f32; 4] = [0.999_928_06, 0.693_260_97, 0.242_611_14, 0.055_171_67];
    let t = _mm512_max_ps(t, _mm512_set1_ps(-120.0));
    let whole = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    let fraction = _mm512_sub_ps(t, whole);
    let mut power = _mm512_set1_ps(CUBIC[3]);
    for &c in CUBIC[..3].iter().rev() {
        power = _mm512_fmadd_ps(power, fraction, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(power, whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_is_accurate_far_beyond_bf16() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let inputs: Vec<f32> = (0..=1600).map(|i| -(i as f32) / 10.0).collect();
        for chunk in inputs.chunks(16).filter(|c| c.len() == 16) {
            let mut got = [0f32; 16];
            // SAFETY: AVX-512 F was detected above; `chunk` and `got` hold 16 values.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp2(_mm512_loadu_ps(chunk.as_ptr()))) };
            for (&t, &got) in chunk.iter().zip(&got) {
                let want = (t.max(-120.0) as f64).exp2();
                let relative = (got as f64 - want).abs() / want;
                assert!(relative < 8e-5 && got.is_normal(), "2^{t} = {got}, not {want}");
            }
        }
    }
}
