//! The AMX kernel: `tdpbssd` multiplies a tile of 16 rows × 64 signed bytes by a tile of
//! 64 × 16 signed bytes into 16 × 16 i32 sums, 16,384 products per instruction. One block
//! of 64 inputs is exactly one tile's depth, so each block's dot products come out of the
//! tile unit whole and exact, and are scaled and summed with the same fused multiply-add,
//! in the same order, as the VNNI kernel's: the outputs are bit for bit the VNNI kernel's.
//! Weights are laid out as for VNNI (a panel's row of 4-input groups is 32 columns × 4
//! bytes, so a tile of 16 columns is every other 64 bytes of it); activations are
//! quantized by the same code, stored as signed bytes, so no offset needs taking out.
//!
//! A call covers 48 rows, so that each weight tile loaded serves three activation tiles
//! (loads, not products, are what a tile step waits on), and the tile unit computes one
//! step while the vector unit scales the one before.
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
use crate::model::amx::{with_tiles, TILE_ROWS};

pub(super) struct Amx;

/// Columns per panel: two tiles of 16.
const WIDTH: usize = 32;
/// Rows per tile register.
const GROUP: usize = TILE_ROWS;
/// Rows per call: three tile registers' worth share each weight tile.
const ROWS: usize = 3 * GROUP;

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

/// One step's tile products: 16 rows' 64 activation bytes (loaded into tmm0) times the
/// block's two 16-column weight tiles (already in tmm1, tmm2) into the sums `$c0` and
/// `$c1`, stored to `$dots` (16 × 32 i32). Written once per pair of sum tiles: tile
/// registers are named in the instruction, never chosen at run time.
macro_rules! block_product {
    ($c0:literal, $c1:literal, $a:expr, $a_stride:expr, $dots:expr) => {
        asm!(
            concat!("tilezero ", $c0),
            concat!("tilezero ", $c1),
            "tileloadd tmm0, [{a} + {a_stride}]",
            concat!("tdpbssd ", $c0, ", tmm0, tmm1"),
            concat!("tdpbssd ", $c1, ", tmm0, tmm2"),
            concat!("tilestored [{d} + {d_stride}], ", $c0),
            concat!("tilestored [{d} + {d_stride} + 64], ", $c1),
            a = in(reg) $a,
            a_stride = in(reg) $a_stride,
            d = in(reg) $dots,
            d_stride = in(reg) WIDTH * 4,
            options(nostack),
        )
    };
}

/// Up to three groups of 16 rows × 32 columns: `a` holds room for 48 rows of signed
/// bytes (the rows past `rows` are read into the tiles but their sums never used), `panel`
/// the 32 columns' weights in groups of 4 inputs.
///
/// The steps go block by block and, within a block, group by group, so a block's two
/// weight tiles are loaded once for all 48 rows. The tile unit and the vector unit work
/// side by side: while the vector unit scales one step's sums (stored from tmm4/tmm5 or
/// tmm6/tmm7 to one of two buffers), the tile unit already computes the next step's into
/// the other pair. `out` holds the rows' running sums, so nothing needs zeroing.
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
    let blocks = padded_in / BLOCK;
    let groups = rows.div_ceil(GROUP);
    // The tile loads and the loads below are unchecked: these bounds make them safe.
    assert!((1..=ROWS).contains(&rows) && padded_in.is_multiple_of(BLOCK) && blocks > 0);
    assert!(a.len() >= groups * GROUP * padded_in && panel.len() >= WIDTH * padded_in);
    assert!(row_scales.len() >= rows * blocks && column_scales.len() >= WIDTH);
    // Two steps' i32 sums, 16 rows of 32 columns (16 from each sum tile); each is written
    // whole by the tile stores before it is read.
    let mut dots = [MaybeUninit::<[i32; GROUP * WIDTH]>::uninit(); 2];
    let steps = blocks * groups;
    // SAFETY: the tiles are configured (the caller runs this inside `with_tile_state`);
    // every tile load reads 16 rows of 64 bytes at the given stride inside `a` and `panel`
    // (asserted above), and every store writes 16 rows of 128 bytes inside one buffer of
    // `dots`.
    unsafe {
        let product = |step: usize, dots: *mut i32| {
            let (block, group) = (step / groups, step % groups);
            if group == 0 {
                let weights = panel.as_ptr().add(block * (BLOCK / 4) * WIDTH * 4);
                asm!(
                    "tileloadd tmm1, [{w} + {stride}]",
                    "tileloadd tmm2, [{w} + {stride} + 64]",
                    w = in(reg) weights,
                    stride = in(reg) WIDTH * 4,
                    options(nostack, readonly),
                );
            }
            let activations = a.as_ptr().add(group * GROUP * padded_in + block * BLOCK);
            if step.is_multiple_of(2) {
                block_product!("tmm4", "tmm5", activations, padded_in, dots);
            } else {
                block_product!("tmm6", "tmm7", activations, padded_in, dots);
            }
        };
        product(0, dots[0].as_mut_ptr().cast());
        for step in 0..steps {
            if step + 1 < steps {
                product(step + 1, dots[(step + 1) % 2].as_mut_ptr().cast());
            }
            // As the VNNI kernel, one fused multiply-add per block, from zero (the signed
            // product is exactly VNNI's offset product less its offset).
            let (block, group) = (step / groups, step % groups);
            let step_dots: *const i32 = dots[step % 2].as_ptr().cast();
            for m in group * GROUP..rows.min((group + 1) * GROUP) {
                let scale = _mm512_set1_ps(row_scales[m * blocks + block]);
                let row_dots = step_dots.add((m - group * GROUP) * WIDTH);
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
