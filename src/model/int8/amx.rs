//! The AMX kernel: `tdpbssd` multiplies a tile of 16 rows × 64 signed bytes by a tile of
//! 64 × 16 signed bytes into 16 × 16 i32 sums, 16,384 products per instruction. One block
//! of 128 inputs is exactly two tiles deep, so each block's dot products come out of the
//! tile unit whole and exact, and are scaled and summed with the same fused multiply-add,
//! in the same order, as the VNNI kernel's: the outputs are bit for bit the VNNI kernel's.
//! Weights are laid out as for VNNI (a panel's row of 4-input groups is 32 columns × 4
//! bytes, so a tile of 16 columns is every other 64 bytes of it); activations are
//! quantized by the same code, stored as signed bytes, so no offset needs taking out.
//!
//! A call covers 32 rows, so that each weight tile loaded serves two activation tiles
//! (loads and stores, not products, are what the tile unit waits on), and the tile unit
//! computes one block while the vector unit scales the one before.
//!
//! Rust has no stable AMX intrinsics; the instructions are written with `asm!`. The tile
//! configuration and the tile state come from `model::amx`.

// The tile takes its operands as plain slices, as the trait's `tile` does.
#![allow(clippy::too_many_arguments)]

use std::arch::asm;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::vnni::{rows_to_bytes, ByteCoding, Vnni, VnniWeights};
use super::{Kernel, BLOCK};
use crate::model::amx::{with_tiles, TILE_BYTES, TILE_ROWS};

pub(super) struct Amx;

/// Columns per panel: two tiles of 16.
const WIDTH: usize = 32;
/// Rows per tile register.
const GROUP: usize = TILE_ROWS;
/// Rows per call: two groups' sums (four tiles) stay in the tile unit for a whole block,
/// and each weight tile loaded serves both.
const ROWS: usize = 2 * GROUP;

impl Kernel for Amx {
    const PANEL_WIDTH: usize = WIDTH;
    const TILE_ROWS: usize = ROWS;
    type Activation = i8;
    type Packed = VnniWeights;

    fn pack(quantized: &[i8], panels: usize, padded_in: usize) -> VnniWeights {
        Vnni::pack(quantized, panels, padded_in)
    }

    unsafe fn quantize_rows(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [i8]) {
        // SAFETY: i8 and u8 have the same size and alignment, and every byte is a valid u8.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), out.len()) };
        // SAFETY: the caller runs this kernel only where `Int8Kernel` found AMX with
        // AVX-512 VNNI, AVX2 and FMA; the quantization needs AVX2 and FMA.
        unsafe { rows_to_bytes(xs, in_dim, padded_in, scales, bytes, ByteCoding::Signed) }
    }

    unsafe fn with_tile_state<R>(multiply: impl FnOnce() -> R) -> R {
        // SAFETY: the caller runs this kernel only on a CPU with AMX whose tile state this
        // process was granted.
        unsafe { with_tiles(multiply) }
    }

    unsafe fn tile(
        rows: usize,
        a: &[i8],
        row_scales: &[f32],
        packed: &VnniWeights,
        panel: usize,
        column_scales: &[f32],
        blocks: usize,
        out: *mut f32,
        out_stride: usize,
    ) {
        let padded_in = blocks * BLOCK;
        // The weight sums are VNNI's correction for its offset bytes; signed bytes need none.
        let (weights, _) = packed.panel(panel, WIDTH, blocks);
        // SAFETY: the caller runs this kernel only on a CPU with AMX-INT8 and AVX-512,
        // whose tile state this process was granted, and passes `out` as `tile_rows` needs.
        unsafe { tile_rows(rows, a, row_scales, weights, column_scales, padded_in, out, out_stride) }
    }
}

/// One block's tile products for 16 or 32 rows: each group of 16 rows' 128 activation
/// bytes (two tiles deep, tmm0 and tmm1) times the block's weights (one 64-deep half at a
/// time, its two 16-column tiles in tmm2 and tmm3) into the group's sums (tmm4/tmm5 and
/// tmm6/tmm7), stored to `$dots` (32 rows × 32 i32). The tile registers are named in the
/// instructions; a second group is a second variant, never a run-time register choice.
macro_rules! block_product {
    (two_groups, $a:expr, $a_stride:expr, $weights:expr, $dots:expr) => {
        asm!(
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            "tileloadd tmm2, [{w} + {w_stride}]",
            "tileloadd tmm3, [{w} + {w_stride} + 64]",
            "tileloadd tmm0, [{a} + {a_stride}]",
            "tdpbssd tmm4, tmm0, tmm2",
            "tdpbssd tmm5, tmm0, tmm3",
            "tileloadd tmm1, [{a1} + {a_stride}]",
            "tdpbssd tmm6, tmm1, tmm2",
            "tdpbssd tmm7, tmm1, tmm3",
            "tileloadd tmm2, [{w} + {w_stride} + 2048]",
            "tileloadd tmm3, [{w} + {w_stride} + 2112]",
            "tileloadd tmm0, [{a} + {a_stride} + 64]",
            "tdpbssd tmm4, tmm0, tmm2",
            "tdpbssd tmm5, tmm0, tmm3",
            "tileloadd tmm1, [{a1} + {a_stride} + 64]",
            "tdpbssd tmm6, tmm1, tmm2",
            "tdpbssd tmm7, tmm1, tmm3",
            "tilestored [{d} + {d_stride}], tmm4",
            "tilestored [{d} + {d_stride} + 64], tmm5",
            "tilestored [{d} + {d_stride} + 2048], tmm6",
            "tilestored [{d} + {d_stride} + 2112], tmm7",
            a = in(reg) $a,
            a1 = in(reg) $a.add(GROUP * $a_stride),
            a_stride = in(reg) $a_stride,
            w = in(reg) $weights,
            w_stride = in(reg) WIDTH * 4,
            d = in(reg) $dots,
            d_stride = in(reg) WIDTH * 4,
            options(nostack),
        )
    };
    (one_group, $a:expr, $a_stride:expr, $weights:expr, $dots:expr) => {
        asm!(
            "tilezero tmm4",
            "tilezero tmm5",
            "tileloadd tmm2, [{w} + {w_stride}]",
            "tileloadd tmm3, [{w} + {w_stride} + 64]",
            "tileloadd tmm0, [{a} + {a_stride}]",
            "tdpbssd tmm4, tmm0, tmm2",
            "tdpbssd tmm5, tmm0, tmm3",
            "tileloadd tmm2, [{w} + {w_stride} + 2048]",
            "tileloadd tmm3, [{w} + {w_stride} + 2112]",
            "tileloadd tmm0, [{a} + {a_stride} + 64]",
            "tdpbssd tmm4, tmm0, tmm2",
            "tdpbssd tmm5, tmm0, tmm3",
            "tilestored [{d} + {d_stride}], tmm4",
            "tilestored [{d} + {d_stride} + 64], tmm5",
            a = in(reg) $a,
            a_stride = in(reg) $a_stride,
            w = in(reg) $weights,
            w_stride = in(reg) WIDTH * 4,
            d = in(reg) $dots,
            d_stride = in(reg) WIDTH * 4,
            options(nostack),
        )
    };
}

/// Up to two groups of 16 rows × 32 columns: `a` holds room for 32 rows of signed bytes
/// (the rows past `rows` are read into the tiles but their sums never used), `panel` the
/// 32 columns' weights in groups of 4 inputs.
///
/// Each block's sums stay in the tile unit for its whole depth (128 inputs, two tiles) and
/// leave it once. The tile unit and the vector unit work side by side: while the vector
/// unit scales one block's sums (in one of two buffers), the tile unit already computes the
/// next block's into the other. `out` holds the rows' running sums, so nothing needs zeroing.
///
/// # Safety
/// The CPU must have AMX-INT8, AVX-512 F and FMA, the process the tile state, and the tiles
/// must be configured as `model::amx` says.
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_rows(
    rows: usize,
    a: &[i8],
    row_scales: &[f32],
    panel: &[i8],
    column_scales: &[f32],
    padded_in: usize,
    out: *mut f32,
    out_stride: usize,
) {
    // A block is two tiles deep; the weights' second half starts 16 groups of 4 inputs
    // (2,048 bytes) after the first, as the macro's offsets say.
    const _: () = assert!(BLOCK == 2 * TILE_BYTES && (BLOCK / 2 / 4) * WIDTH * 4 == 2048);
    let blocks = padded_in / BLOCK;
    let groups = rows.div_ceil(GROUP);
    // The tile loads and the loads below are unchecked: these bounds make them safe.
    assert!((1..=ROWS).contains(&rows) && padded_in.is_multiple_of(BLOCK) && blocks > 0);
    assert!(a.len() >= groups * GROUP * padded_in && panel.len() >= WIDTH * padded_in);
    assert!(row_scales.len() >= rows * blocks && column_scales.len() >= WIDTH);
    // Two blocks' i32 sums, 32 rows of 32 columns (16 from each sum tile); the rows a block
    // uses are written whole by the tile stores before they are read.
    let mut dots = [MaybeUninit::<[i32; ROWS * WIDTH]>::uninit(); 2];
    // SAFETY: the tiles are configured (the caller runs this inside `with_tile_state`);
    // every tile load reads 16 rows of 64 bytes at the given stride inside `a` and `panel`
    // (asserted above), and every store writes 16 rows of 128 bytes inside one buffer of
    // `dots`.
    unsafe {
        let product = |block: usize, dots: *mut i32| {
            let weights = panel.as_ptr().add(block * (BLOCK / 4) * WIDTH * 4);
            let activations = a.as_ptr().add(block * BLOCK);
            if groups == 2 {
                block_product!(two_groups, activations, padded_in, weights, dots);
            } else {
                block_product!(one_group, activations, padded_in, weights, dots);
            }
        };
        product(0, dots[0].as_mut_ptr().cast());
        for block in 0..blocks {
            if block + 1 < blocks {
                product(block + 1, dots[(block + 1) % 2].as_mut_ptr().cast());
            }
            // As the VNNI kernel, one fused multiply-add per block, from zero (the signed
            // product is exactly VNNI's offset product less its offset).
            let block_dots: *const i32 = dots[block % 2].as_ptr().cast();
            for m in 0..rows {
                let scale = _mm512_set1_ps(row_scales[m * blocks + block]);
                let row_dots = block_dots.add(m * WIDTH);
                let sums = out.add(m * out_stride);
                for half in 0..2 {
                    let dot = _mm512_cvtepi32_ps(_mm512_loadu_si512(row_dots.add(16 * half).cast()));
                    let sum = if block == 0 { _mm512_setzero_ps() } else { _mm512_loadu_ps(sums.add(16 * half)) };
                    _mm512_storeu_ps(sums.add(16 * half), _mm512_fmadd_ps(dot, scale, sum));
                }
            }
        }
        for half in 0..2 {
            let scale = _mm512_loadu_ps(column_scales.as_ptr().add(16 * half));
            for m in 0..rows {
                let sums = out.add(m * out_stride + 16 * half);
                _mm512_storeu_ps(sums, _mm512_mul_ps(_mm512_loadu_ps(sums), scale));
            }
        }
    }
}
