//! The AMX kernel: `tdpbusd` multiplies a tile of 16 rows × 64 unsigned bytes by a tile
//! of 64 × 16 signed bytes into 16 × 16 i32 sums, 16,384 products per instruction. One
//! block of 64 inputs is exactly one tile's depth, so each block's dot products come out
//! of the tile unit whole and exact, and are scaled and summed with the same AVX-512
//! instructions, in the same order, as the VNNI kernel's: the outputs are bit for bit
//! the VNNI kernel's. Weights and activations are laid out as for VNNI (a panel's row of
//! 4-input groups is 32 columns × 4 bytes, so a tile of 16 columns is every other 64
//! bytes of it), and quantized by the same code.
//!
//! Rust has no stable AMX intrinsics; the five instructions are written with `asm!`.
//! Linux grants a process the tile state only on request (`arch_prctl`), once.

// The tile takes its operands as plain slices, as the trait's `tile` does.
#![allow(clippy::too_many_arguments)]

use std::arch::asm;
use std::arch::x86_64::*;

use super::vnni::{Vnni, VnniWeights};
use super::{Kernel, BLOCK};

pub(super) struct Amx;

/// Columns per panel: two tiles of 16.
const WIDTH: usize = 32;
/// Rows per tile, the most a tile register holds.
const ROWS: usize = 16;

/// The tile configuration `ldtilecfg` reads (palette 1): bytes per row and rows of each
/// tile register.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// Tile registers: the activations' block, the two weight tiles, the two sums.
impl TileConfig {
    fn for_rows(rows: usize) -> Self {
        let mut config =
            TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row: [0; 16], rows: [0; 16] };
        // tmm0: rows × 64 activation bytes; tmm1, tmm2: 16 groups × (16 columns · 4 bytes);
        // tmm3, tmm4: rows × 16 i32 sums.
        for (t, r) in [(0, rows), (1, BLOCK / 4), (2, BLOCK / 4), (3, rows), (4, rows)] {
            config.bytes_per_row[t] = 64;
            config.rows[t] = r as u8;
        }
        config
    }
}

/// Asks Linux for the tile data state; true where granted (or already granted).
pub(super) fn request_tile_state() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        const SYS_ARCH_PRCTL: i64 = 158;
        let result: i64;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) only changes which
        // register state the kernel saves for this process; it reads and writes no memory.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => result,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        result == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

impl Kernel for Amx {
    const PANEL_WIDTH: usize = WIDTH;
    const TILE_ROWS: usize = ROWS;
    type Activation = u8;
    type Packed = VnniWeights;

    fn pack(quantized: &[i8], panels: usize, padded_in: usize) -> VnniWeights {
        Vnni::pack(quantized, panels, padded_in)
    }

    unsafe fn quantize_rows(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [u8]) {
        // SAFETY: the caller runs this kernel only where `Int8Kernel` found AMX with
        // AVX-512 VNNI, AVX2 and FMA, which the VNNI kernel's quantization needs.
        unsafe { Vnni::quantize_rows(xs, in_dim, padded_in, scales, out) }
    }

    unsafe fn tile(
        rows: usize,
        a: &[u8],
        row_scales: &[f32],
        packed: &VnniWeights,
        panel: usize,
        column_scales: &[f32],
        blocks: usize,
        out: &mut [f32],
    ) {
        let padded_in = blocks * BLOCK;
        let (weights, offsets) = packed.panel(panel, WIDTH, blocks);
        // SAFETY: the caller runs this kernel only on a CPU with AMX-INT8 and AVX-512,
        // whose tile state this process was granted.
        unsafe { tile_rows(rows, a, row_scales, weights, offsets, column_scales, padded_in, out) }
    }
}

/// Up to 16 rows × 32 columns: `a` holds the rows' offset bytes, `panel` the 32 columns'
/// weights in groups of 4 inputs, `offsets` 128 times each block's weight sums.
///
/// # Safety
/// The CPU must have AMX-INT8, AVX-512 F and FMA, and the process the tile state.
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_rows(
    rows: usize,
    a: &[u8],
    row_scales: &[f32],
    panel: &[i8],
    offsets: &[i32],
    column_scales: &[f32],
    padded_in: usize,
    out: &mut [f32],
) {
    let blocks = padded_in / BLOCK;
    // The tile loads and the loads below are unchecked: these bounds make them safe.
    assert!((1..=ROWS).contains(&rows) && padded_in.is_multiple_of(BLOCK));
    assert!(a.len() >= rows * padded_in && panel.len() >= WIDTH * padded_in && out.len() >= rows * WIDTH);
    assert!(row_scales.len() >= rows * blocks && offsets.len() >= WIDTH * blocks && column_scales.len() >= WIDTH);
    let config = TileConfig::for_rows(rows);
    // Each block's i32 sums, row by row: 16 columns from tmm3, then 16 from tmm4.
    let mut dots = [0i32; ROWS * WIDTH];
    let mut sums = [_mm512_setzero_ps(); 2 * ROWS];
    // SAFETY: the configuration is valid for palette 1; every tile load reads `rows` (or
    // 16) rows of 64 bytes at the given stride inside `a` and `panel` (asserted above), and
    // every store writes `rows` rows of 64 bytes inside `dots`.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly));
        for b in 0..blocks {
            let a_block = a.as_ptr().add(b * BLOCK);
            let w_block = panel.as_ptr().add(b * (BLOCK / 4) * WIDTH * 4);
            asm!(
                "tilezero tmm3",
                "tilezero tmm4",
                "tileloadd tmm0, [{a} + {a_stride}]",
                "tileloadd tmm1, [{w} + {w_stride}]",
                "tileloadd tmm2, [{w} + {w_stride} + 64]",
                "tdpbusd tmm3, tmm0, tmm1",
                "tdpbusd tmm4, tmm0, tmm2",
                "tilestored [{d} + {d_stride}], tmm3",
                "tilestored [{d} + {d_stride} + 64], tmm4",
                a = in(reg) a_block,
                a_stride = in(reg) padded_in,
                w = in(reg) w_block,
                w_stride = in(reg) WIDTH * 4,
                d = in(reg) dots.as_mut_ptr(),
                d_stride = in(reg) WIDTH * 4,
                options(nostack),
            );
            // As the VNNI kernel: take the activations' offset back out, then one fused
            // multiply-add per block.
            let offset0 = _mm512_loadu_si512(offsets.as_ptr().add(b * WIDTH).cast());
            let offset1 = _mm512_loadu_si512(offsets.as_ptr().add(b * WIDTH + 16).cast());
            for m in 0..rows {
                let scale = _mm512_set1_ps(row_scales[m * blocks + b]);
                let dot0 = _mm512_loadu_si512(dots.as_ptr().add(m * WIDTH).cast());
                let dot1 = _mm512_loadu_si512(dots.as_ptr().add(m * WIDTH + 16).cast());
                let dot0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot0, offset0));
                let dot1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot1, offset1));
                sums[2 * m] = _mm512_fmadd_ps(dot0, scale, sums[2 * m]);
                sums[2 * m + 1] = _mm512_fmadd_ps(dot1, scale, sums[2 * m + 1]);
            }
        }
        // Back to the initial tile state, so that a context switch saves no tile data.
        asm!("tilerelease", options(nostack, nomem));
        let scale0 = _mm512_loadu_ps(column_scales.as_ptr());
        let scale1 = _mm512_loadu_ps(column_scales.as_ptr().add(16));
        for m in 0..rows {
            _mm512_storeu_ps(out.as_mut_ptr().add(m * WIDTH), _mm512_mul_ps(sums[2 * m], scale0));
            _mm512_storeu_ps(out.as_mut_ptr().add(m * WIDTH + 16), _mm512_mul_ps(sums[2 * m + 1], scale1));
        }
    }
}
