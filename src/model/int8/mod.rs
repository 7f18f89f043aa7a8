//! The encoder at int8: dense layers multiply 8-bit integers, everything else (softmax,
//! layer norm, GELU, the heads) stays f32, and attention too except on CPUs with AMX-BF16
//! (`model::attention`).
//!
//! - **Weights** are quantized once per output channel: `w ≈ q · scale[n]`, q in ±127.
//! - **Activations** are quantized per row in blocks of [`BLOCK`] inputs: `x ≈ q · s[row, block]`.
//!   Blocks keep one large value from coarsening a whole row: on the bench corpora whole-row
//!   scales gave a mean cosine of 0.99909 to f32, blocks of 128 give 0.99960 (see
//!   bench/README.md). Blocks of 64 gave 0.99975, but every block's sums must leave AMX's
//!   tile unit, and its loads and stores, not its products, set the pace.
//! - Each block's dot product is exact in i32; blocks are summed in f32 with one fused
//!   multiply-add each, in the same order in every kernel. So a row's output depends only on
//!   that row: it is the same at any thread count and batch size, and the same for every
//!   kernel on the same input.
//!
//! The files: `linear.rs` is the one driver (a layer, its packing into panels, the tasks,
//! bias and activation); each instruction set is a [`Kernel`] in a file of its own that
//! only packs weights, quantizes activations and multiplies one register tile:
//! - `amx.rs`, AMX-INT8 (`tdpbssd`, a 16 × 64 by 64 × 16 tile product, 16,384 products
//!   per instruction) on the VNNI kernel's weight layout, each block two tiles deep, 32 rows
//!   per call; the same bits as VNNI;
//! - `vnni.rs`, AVX-512 VNNI (`vpdpbusd`, 64 products per instruction): activations as
//!   unsigned bytes `q + 128`, whose offset is taken back out per block with the block's
//!   weight sums;
//! - `avx2.rs`, AVX2 (`vpmaddwd` on 16-bit values, 16 products per instruction), which
//!   never saturates;
//! - `portable.rs`, plain Rust on the AVX2 layout, for other CPUs and as the reference in
//!   tests.
//!
//! The kernel is chosen at run time ([`Int8Kernel::detect`], from `model::cpu`). The
//! word-embedding table (the largest tensor) is stored in 4 bits where that is exact, else
//! as int8 rows, and dequantized for the tokens of a batch only (`table.rs`).

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod linear;
mod portable;
mod quantize;
mod table;
#[cfg(target_arch = "x86_64")]
mod vnni;

use std::sync::OnceLock;

pub use linear::{feed_forward, QuantizedLinear};
pub use table::QuantizedTable;

use super::cpu::CpuFeatures;

/// Inputs per activation scale. Inputs are padded with zeros to a multiple of it.
pub const BLOCK: usize = 128;

/// The int8 matrix kernel this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    Amx,
    Avx512Vnni,
    Avx2,
    Portable,
}

/// Set to `avx512-vnni`, `avx2` or `portable` to run a slower kernel than the CPU allows
/// (to measure what a machine without AMX or AVX-512 gets, or to compare kernels); it can
/// never choose a faster one.
pub const KERNEL_ENV: &str = "DOCCLASS_INT8_KERNEL";

impl Int8Kernel {
    /// The fastest kernel the CPU supports, capped by `$DOCCLASS_INT8_KERNEL`; asked once.
    pub fn detect() -> Self {
        static KERNEL: OnceLock<Int8Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| {
            let best = Self::best_supported();
            let wanted = match std::env::var(KERNEL_ENV).as_deref() {
                Ok("portable") => Int8Kernel::Portable,
                Ok("avx2") => Int8Kernel::Avx2,
                Ok("avx512-vnni") => Int8Kernel::Avx512Vnni,
                _ => best,
            };
            if wanted.is_supported() {
                wanted
            } else {
                best
            }
        })
    }

    fn best_supported() -> Self {
        static BEST: OnceLock<Int8Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            let cpu = CpuFeatures::get();
            // The VNNI and AMX kernels quantize their activations with AVX2; AMX scales its
            // tiles' sums with AVX-512. Linux grants the tile state only on request.
            let vnni = cpu.avx2_fma && cpu.avx512f && cpu.avx512bw && cpu.avx512_vnni;
            #[cfg(target_arch = "x86_64")]
            if vnni && cpu.amx_int8 && crate::model::amx::tile_state_granted() {
                return Int8Kernel::Amx;
            }
            match (cpu.avx2_fma, vnni) {
                (true, true) => Int8Kernel::Avx512Vnni,
                (true, false) => Int8Kernel::Avx2,
                (false, _) => Int8Kernel::Portable,
            }
        })
    }

    /// Whether this CPU can run the kernel (`detect` or a slower one).
    pub fn is_supported(self) -> bool {
        // Each kernel can run where a faster one can: from the fastest down.
        let speed = |k: Int8Kernel| match k {
            Int8Kernel::Amx => 3,
            Int8Kernel::Avx512Vnni => 2,
            Int8Kernel::Avx2 => 1,
            Int8Kernel::Portable => 0,
        };
        speed(self) <= speed(Self::best_supported())
    }

    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Amx => "amx",
            Int8Kernel::Avx512Vnni => "avx512-vnni",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::Portable => "portable",
        }
    }
}

/// One instruction set's part of the int8 product: how it lays out weights and
/// activations, and its register tile. The driver in `linear.rs` does the rest, the same
/// for every kernel.
trait Kernel {
    /// Output columns per packed panel.
    const PANEL_WIDTH: usize;
    /// Rows per register tile.
    const TILE_ROWS: usize;
    /// One activation value as the tile reads it.
    type Activation: Copy + Default;
    /// The layer's weights as the tile reads them.
    type Packed: Send + Sync;

    /// Packs `quantized`: row-major `[panels · PANEL_WIDTH, padded_in]` int8 weights (the
    /// columns past the layer's outputs and the inputs past its inputs are 0).
    fn pack(quantized: &[i8], panels: usize, padded_in: usize) -> Self::Packed;

    /// Quantizes each row of `xs` (`in_dim` values) block by block into `out`
    /// (`[rows, padded_in]`, the padding zero) and `scales` (`[rows, blocks]`), bit for bit
    /// as `quantize::quantize_rows` does.
    ///
    /// # Safety
    /// The CPU must have the kernel's instruction set (see [`Int8Kernel::is_supported`]).
    unsafe fn quantize_rows(
        xs: &[f32],
        in_dim: usize,
        padded_in: usize,
        scales: &mut [f32],
        out: &mut [Self::Activation],
    );

    /// Runs `multiply`, which calls [`Kernel::tile`] any number of times, with whatever
    /// state the tiles share set up once (AMX's tile configuration); most kernels have none.
    ///
    /// # Safety
    /// The CPU must have the kernel's instruction set.
    unsafe fn with_tile_state<R>(multiply: impl FnOnce() -> R) -> R {
        multiply()
    }

    /// `out[m][c] = (Σ_b dot_b · row_scales[m][b]) · column_scales[c]` for `rows` (at most
    /// `TILE_ROWS`) rows of `a` and the columns of `panel`, each block's dot product exact in
    /// i32 and the blocks summed with one fused multiply-add each. `a` has room for
    /// `TILE_ROWS` rows (`[TILE_ROWS, padded_in]`), whatever the rows past `rows` hold.
    /// Input slices that are too short make it panic, never read outside. The output goes
    /// straight into its place in the layer's output: `rows` rows of `PANEL_WIDTH` values,
    /// `out_stride` apart, from `out`.
    ///
    /// # Safety
    /// The CPU must have the kernel's instruction set, and the call must be made inside
    /// [`Kernel::with_tile_state`]. `out` must point at `rows` rows of `PANEL_WIDTH`
    /// writable values, `out_stride` apart (they may be uninitialized).
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        rows: usize,
        a: &[Self::Activation],
        row_scales: &[f32],
        packed: &Self::Packed,
        panel: usize,
        column_scales: &[f32],
        blocks: usize,
        out: *mut f32,
        out_stride: usize,
    );
}

/// Calls `f::<R>(args)` for the `R` among the listed row counts that equals `rows`: the
/// SIMD tiles take their row count as a constant, so that their accumulators stay in
/// registers.
#[cfg(target_arch = "x86_64")]
macro_rules! with_tile_rows {
    ($rows:expr, [$($r:literal),+], $f:ident $args:tt) => {
        match $rows {
            $($r => $f::<$r> $args,)+
            rows => unreachable!("a tile of {rows} rows"),
        }
    };
}
#[cfg(target_arch = "x86_64")]
use with_tile_rows;

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::model::config::Activation;

    pub(super) fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
    }

    fn kernels() -> Vec<Int8Kernel> {
        [Int8Kernel::Amx, Int8Kernel::Avx512Vnni, Int8Kernel::Avx2, Int8Kernel::Portable]
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    fn layer(weight: &Tensor, bias: &Tensor, kernel: Int8Kernel) -> QuantizedLinear {
        assert!(kernel.is_supported());
        // SAFETY: the kernel is one this CPU supports (checked above).
        unsafe { QuantizedLinear::with_kernel(weight, bias.clone(), kernel) }.unwrap()
    }

    /// Sizes that exercise partial blocks, panels and tiles: tiles of 6 and 8 rows, and
    /// AMX's of 32 rows in groups of 16 (17 rows end in a group of one, 40 in a tile of 8);
    /// tasks of 96 rows (97 end in a task of one row, 200 in one of 8); inputs of one
    /// block, of several, and with a partial last block.
    const SHAPES: [(usize, usize, usize); 11] = [
        (1, 32, 37),
        (13, 100, 16),
        (50, 384, 70),
        (7, 200, 33),
        (16, 64, 32),
        (17, 130, 65),
        (48, 1536, 384),
        (40, 200, 97),
        (97, 64, 33),
        (200, 300, 64),
        (32, 128, 32),
    ];

    #[test]
    fn every_kernel_gives_the_same_bits_as_the_reference() {
        for (rows, in_dim, out_dim) in SHAPES {
            let x = Tensor::from_vec(random(rows * in_dim, 1), (rows, in_dim), &Device::Cpu).unwrap();
            let w = Tensor::from_vec(random(out_dim * in_dim, 2), (out_dim, in_dim), &Device::Cpu).unwrap();
            let b = Tensor::from_vec(random(out_dim, 3), out_dim, &Device::Cpu).unwrap();
            let reference =
                layer(&w, &b, Int8Kernel::Portable).forward_activated(&x, None).unwrap().to_vec2::<f32>().unwrap();
            for kernel in kernels() {
                let got = layer(&w, &b, kernel).forward_activated(&x, None).unwrap().to_vec2::<f32>().unwrap();
                assert_eq!(got, reference, "{kernel:?} on {rows}x{in_dim} -> {out_dim}");
            }
        }
    }

    #[test]
    fn close_to_f32_and_each_row_independent_of_the_others() {
        let (rows, in_dim, out_dim) = (50, 384, 70);
        let xs = random(rows * in_dim, 4);
        let x = Tensor::from_vec(xs.clone(), (rows, in_dim), &Device::Cpu).unwrap();
        let w = Tensor::from_vec(random(out_dim * in_dim, 5), (out_dim, in_dim), &Device::Cpu).unwrap();
        let b = Tensor::zeros(out_dim, candle_core::DType::F32, &Device::Cpu).unwrap();
        let layer = QuantizedLinear::new(&w, b).unwrap();
        let quantized = layer.forward_activated(&x, None).unwrap().to_vec2::<f32>().unwrap();
        let exact = x.matmul(&w.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        // Uniform values in ±1 are the hardest case for 8 bits: about 1% error in norm.
        let error: f32 = quantized.iter().flatten().zip(exact.iter().flatten()).map(|(q, e)| (q - e).powi(2)).sum();
        let norm: f32 = exact.iter().flatten().map(|e| e * e).sum();
        assert!((error / norm).sqrt() < 0.02, "relative error {}", (error / norm).sqrt());
        // Row 17 alone gives the same bits as row 17 among 50.
        let alone = Tensor::from_vec(xs[17 * in_dim..18 * in_dim].to_vec(), (1, in_dim), &Device::Cpu).unwrap();
        assert_eq!(layer.forward_activated(&alone, None).unwrap().to_vec2::<f32>().unwrap()[0], quantized[17]);
    }

    #[test]
    fn feed_forward_is_the_two_layers_in_turn() {
        let (rows, in_dim, inner_dim) = (100, 96, 150);
        let tensor =
            |n: usize, shape: (usize, usize), seed| Tensor::from_vec(random(n, seed), shape, &Device::Cpu).unwrap();
        let x = tensor(rows * in_dim, (rows, in_dim), 10);
        let bias = |n: usize, seed| Tensor::from_vec(random(n, seed), n, &Device::Cpu).unwrap();
        let first =
            QuantizedLinear::new(&tensor(inner_dim * in_dim, (inner_dim, in_dim), 11), bias(inner_dim, 12)).unwrap();
        let second =
            QuantizedLinear::new(&tensor(in_dim * inner_dim, (in_dim, inner_dim), 13), bias(in_dim, 14)).unwrap();
        let gelu = Some(Activation::GeluErf);
        let fused = feed_forward(&first, &second, &x, gelu).unwrap().to_vec2::<f32>().unwrap();
        let in_turn = second.forward_activated(&first.forward_activated(&x, gelu).unwrap(), None).unwrap();
        assert_eq!(fused, in_turn.to_vec2::<f32>().unwrap());
        assert!(feed_forward(&second, &second, &x, gelu).is_err(), "96 outputs cannot feed 150 inputs");
    }
}
