//! The encoder at int8: dense layers multiply 8-bit integers, everything else (attention,
//! softmax, layer norm, GELU, the heads) stays f32.
//!
//! - **Weights** are quantized once per output channel: `w ≈ q · scale[n]`, q in ±127.
//! - **Activations** are quantized per row in blocks of [`BLOCK`] inputs: `x ≈ q · s[row, block]`.
//!   Blocks keep one large value from coarsening a whole row: on the bench corpora whole-row
//!   scales gave a mean cosine of 0.99909 to f32, blocks of 64 give 0.99975 (see bench/README.md).
//! - Each block's dot product is exact in i32; blocks are summed in f32 with one fused
//!   multiply-add each, in the same order in every kernel. So a row's output depends only on
//!   that row: it is the same at any thread count and batch size, and the same for every
//!   kernel below on the same input.
//!
//! Kernels, chosen at run time ([`Int8Kernel::detect`]):
//! - AVX-512 VNNI (`vpdpbusd`, 64 products per instruction): activations as unsigned bytes
//!   `q + 128`, whose offset is taken back out per block with the block's weight sums;
//! - AVX2 (`vpmaddwd` on 16-bit values, 16 products per instruction), which never saturates;
//! - portable Rust on the AVX2 layout, for other CPUs and as the reference in tests.
//!
//! The word-embedding table (the largest tensor) is stored in 4 bits where that is exact,
//! else as int8 rows, and dequantized for the tokens of a batch only ([`QuantizedTable`]).

use std::fmt;
use std::mem::MaybeUninit;
use std::str::FromStr;
use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::config::Activation;
use super::kernels::{bias_activation_in_place, contiguous_f32};

/// Inputs per activation scale. Inputs are padded with zeros to a multiple of it.
pub const BLOCK: usize = 64;

/// The arithmetic the encoder's dense layers run in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout: the encoder as trained, transformers parity.
    #[default]
    F32,
    /// int8 dense layers, word embeddings in 4 or 8 bits (this module).
    Int8,
}

impl Precision {
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            _ => Err(format!("unknown precision {s:?}: expected f32 or int8")),
        }
    }
}

/// The int8 matrix kernel this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    Avx512Vnni,
    Avx2,
    Portable,
}

/// Set to `avx2` or `portable` to run a slower kernel than the CPU allows (to measure what a
/// machine without AVX-512 gets, or to compare kernels); it can never choose a faster one.
pub const KERNEL_ENV: &str = "DOCCLASS_INT8_KERNEL";

impl Int8Kernel {
    /// The fastest kernel the CPU supports, capped by `$DOCCLASS_INT8_KERNEL`; asked once.
    pub fn detect() -> Self {
        static KERNEL: OnceLock<Int8Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| {
            let best = Self::best_supported();
            match std::env::var(KERNEL_ENV).as_deref() {
                Ok("portable") => Int8Kernel::Portable,
                Ok("avx2") if best != Int8Kernel::Portable => Int8Kernel::Avx2,
                _ => best,
            }
        })
    }

    fn best_supported() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // The VNNI kernel quantizes its activations with AVX2.
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
            {
                return Int8Kernel::Avx512Vnni;
            }
            return Int8Kernel::Avx2;
        }
        Int8Kernel::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Avx512Vnni => "avx512-vnni",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::Portable => "portable",
        }
    }

    /// Output columns per packed panel.
    fn panel_width(self) -> usize {
        match self {
            Int8Kernel::Avx512Vnni => 32,
            Int8Kernel::Avx2 | Int8Kernel::Portable => 16,
        }
    }

    /// Rows per register tile.
    fn tile_rows(self) -> usize {
        match self {
            Int8Kernel::Avx512Vnni => 8,
            Int8Kernel::Avx2 | Int8Kernel::Portable => 6,
        }
    }
}

/// Weights packed for one kernel: bytes in groups of 4 inputs (VNNI), or 16-bit values in
/// pairs of inputs (AVX2, portable); panel by panel, each panel's inputs in order.
enum PackedWeights {
    Bytes(Vec<i8>),
    Words(Vec<i16>),
}

/// A dense layer `xs · Wᵀ + b` with int8 weights.
pub struct QuantizedLinear {
    in_dim: usize,
    out_dim: usize,
    /// `in_dim` rounded up to a multiple of [`BLOCK`].
    padded_in: usize,
    kernel: Int8Kernel,
    weights: PackedWeights,
    /// Per output column (padded to whole panels): the weights' scale.
    scales: Vec<f32>,
    /// VNNI only, per panel, block and column: 128 times the sum of the block's weights,
    /// the part of a dot product that the unsigned offset of the activations adds.
    offsets: Vec<i32>,
    bias: Vec<f32>,
}

/// One use of a layer: the product, bias and activation in one pass over the output.
struct Product<'a> {
    layer: &'a QuantizedLinear,
    activation: Option<Activation>,
}

impl QuantizedLinear {
    /// Quantizes `weight` (`[out, in]`, as `nn.Linear` stores it) for this CPU's kernel.
    pub fn new(weight: &Tensor, bias: Tensor) -> candle_core::Result<Self> {
        Self::with_kernel(weight, bias, Int8Kernel::detect())
    }

    /// For `kernel`, which the CPU must support (`detect` or below).
    fn with_kernel(weight: &Tensor, bias: Tensor, kernel: Int8Kernel) -> candle_core::Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let values = weight.flatten_all()?.to_vec1::<f32>()?;
        let padded_in = in_dim.div_ceil(BLOCK) * BLOCK;
        let width = kernel.panel_width();
        let panels = out_dim.div_ceil(width);
        let mut quantized = vec![0i8; panels * width * padded_in];
        let mut scales = vec![0f32; panels * width];
        for (n, row) in values.chunks_exact(in_dim).enumerate() {
            let (scale, inverse) = scale_for(row);
            scales[n] = scale;
            let dst = &mut quantized[n * padded_in..n * padded_in + in_dim];
            for (q, &w) in dst.iter_mut().zip(row) {
                *q = quantize(w, inverse) as i8;
            }
        }
        // `quantized` is row-major [padded columns, padded_in]; lay it out in panels.
        let at = |n: usize, k: usize| quantized[n * padded_in + k];
        let blocks = padded_in / BLOCK;
        let (weights, offsets) = match kernel {
            Int8Kernel::Avx512Vnni => {
                let mut packed = Vec::with_capacity(quantized.len());
                let mut offsets = Vec::with_capacity(panels * blocks * width);
                for p in 0..panels {
                    for g in 0..padded_in / 4 {
                        for c in 0..width {
                            packed.extend((0..4).map(|i| at(p * width + c, 4 * g + i)));
                        }
                    }
                    for b in 0..blocks {
                        offsets.extend((0..width).map(|c| {
                            128 * (b * BLOCK..(b + 1) * BLOCK).map(|k| at(p * width + c, k) as i32).sum::<i32>()
                        }));
                    }
                }
                (PackedWeights::Bytes(packed), offsets)
            }
            Int8Kernel::Avx2 | Int8Kernel::Portable => {
                let mut packed = Vec::with_capacity(quantized.len());
                for p in 0..panels {
                    for g in 0..padded_in / 2 {
                        for c in 0..width {
                            packed.extend((0..2).map(|i| at(p * width + c, 2 * g + i) as i16));
                        }
                    }
                }
                (PackedWeights::Words(packed), Vec::new())
            }
        };
        let bias = bias.to_vec1::<f32>()?;
        if bias.len() != out_dim {
            bail!("a bias of {} values for {out_dim} outputs", bias.len());
        }
        Ok(Self { in_dim, out_dim, padded_in, kernel, weights, scales, offsets, bias })
    }

    /// `activation(xs · Wᵀ + b)` for `xs` of shape `[rows, in]`.
    pub fn forward_activated(&self, xs: &Tensor, activation: Option<Activation>) -> candle_core::Result<Tensor> {
        xs.apply_op1_no_bwd(&Product { layer: self, activation })
    }

    fn blocks(&self) -> usize {
        self.padded_in / BLOCK
    }

    /// `activation(xs · Wᵀ + b)` for the rows of one task: quantizes them, runs the kernel
    /// panel by panel, then adds the bias and applies the activation while the rows are in cache.
    /// Every element of `out` is written.
    fn multiply_rows(&self, xs: &[f32], out: &mut [MaybeUninit<f32>], activation: Option<Activation>) {
        let rows = xs.len() / self.in_dim;
        let blocks = self.blocks();
        let width = self.kernel.panel_width();
        let tile = self.kernel.tile_rows();
        ACTIVATIONS.with_borrow_mut(|buffers| {
            let QuantizedRows { bytes, words, scales } = buffers;
            // Every entry is written below: the buffers only ever grow.
            grow(scales, rows * blocks, 0.0);
            match self.kernel {
                #[cfg(target_arch = "x86_64")]
                Int8Kernel::Avx512Vnni => {
                    grow(bytes, rows * self.padded_in, 0);
                    // Safety: `detect` chose VNNI on a CPU with AVX2 and FMA.
                    unsafe { simd_quantize::rows_to_bytes(xs, self.in_dim, self.padded_in, scales, bytes) }
                }
                #[cfg(target_arch = "x86_64")]
                Int8Kernel::Avx2 => {
                    grow(words, rows * self.padded_in, 0);
                    // Safety: `detect` chose AVX2 because the CPU has it.
                    unsafe { simd_quantize::rows_to_words(xs, self.in_dim, self.padded_in, scales, words) }
                }
                _ => {
                    grow(words, rows * self.padded_in, 0);
                    quantize_rows(xs, self.in_dim, self.padded_in, scales, words);
                }
            }
            let mut staging = [0f32; 32 * 8];
            for p in 0..self.out_dim.div_ceil(width) {
                let first_column = p * width;
                let columns = width.min(self.out_dim - first_column);
                let column_scales = &self.scales[first_column..first_column + width];
                for r0 in (0..rows).step_by(tile) {
                    let mr = tile.min(rows - r0);
                    let row_scales = &scales[r0 * blocks..(r0 + mr) * blocks];
                    let tile_out = &mut staging[..mr * width];
                    match (&self.weights, self.kernel) {
                        #[cfg(target_arch = "x86_64")]
                        (PackedWeights::Bytes(packed), Int8Kernel::Avx512Vnni) => {
                            let panel = &packed[p * width * self.padded_in..(p + 1) * width * self.padded_in];
                            let offsets = &self.offsets[p * blocks * width..(p + 1) * blocks * width];
                            let a = &bytes[r0 * self.padded_in..(r0 + mr) * self.padded_in];
                            // Safety: `detect` chose this kernel because the CPU has the features.
                            unsafe { vnni::tile(mr, a, row_scales, panel, offsets, column_scales, blocks, tile_out) }
                        }
                        #[cfg(target_arch = "x86_64")]
                        (PackedWeights::Words(packed), Int8Kernel::Avx2) => {
                            let panel = &packed[p * width * self.padded_in..(p + 1) * width * self.padded_in];
                            let a = &words[r0 * self.padded_in..(r0 + mr) * self.padded_in];
                            // Safety: as above.
                            unsafe { avx2::tile(mr, a, row_scales, panel, column_scales, blocks, tile_out) }
                        }
                        (PackedWeights::Words(packed), _) => {
                            let panel = &packed[p * width * self.padded_in..(p + 1) * width * self.padded_in];
                            let a = &words[r0 * self.padded_in..(r0 + mr) * self.padded_in];
                            portable_tile(mr, a, row_scales, panel, column_scales, blocks, tile_out)
                        }
                        _ => unreachable!("weights are packed for the kernel that runs them"),
                    }
                    for (m, tile_row) in tile_out.chunks_exact(width).enumerate() {
                        let dst = (r0 + m) * self.out_dim + first_column;
                        for (out, &value) in out[dst..dst + columns].iter_mut().zip(&tile_row[..columns]) {
                            out.write(value);
                        }
                    }
                }
            }
        });
        // Safety: the tiles above cover every row and column: all of `out` is written.
        let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
        bias_activation_in_place(out, &self.bias, activation);
    }
}

/// `second(activation(first(xs)))`, a transformer's feed-forward block, 48 rows at a time:
/// each task keeps its rows' inner activations (48 × 1,536 for e5) to itself, so the
/// batch's inner matrix, the largest of a layer, is never allocated. The same values as
/// the two layers one after the other.
pub fn feed_forward(
    first: &QuantizedLinear,
    second: &QuantizedLinear,
    xs: &Tensor,
    activation: Option<Activation>,
) -> candle_core::Result<Tensor> {
    if first.out_dim != second.in_dim {
        bail!("feed-forward: {} outputs into {} inputs", first.out_dim, second.in_dim);
    }
    xs.apply_op1_no_bwd(&FeedForward { first, second, activation })
}

struct FeedForward<'a> {
    first: &'a QuantizedLinear,
    second: &'a QuantizedLinear,
    activation: Option<Activation>,
}

impl CustomOp1 for FeedForward<'_> {
    fn name(&self) -> &'static str {
        "int8-feed-forward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (first, second) = (self.first, self.second);
        let xs = contiguous_input(storage, layout, first.in_dim)?;
        let rows = xs.len() / first.in_dim;
        let out = fill_rows(rows, second.out_dim, xs, first.in_dim, |xs, out| {
            INNER.with_borrow_mut(|inner| {
                let len = xs.len() / first.in_dim * first.out_dim;
                grow(inner, len, MaybeUninit::uninit());
                first.multiply_rows(xs, &mut inner[..len], self.activation);
                // Safety: `multiply_rows` wrote all of `inner[..len]`.
                let inner = unsafe { &*(&inner[..len] as *const [MaybeUninit<f32>] as *const [f32]) };
                second.multiply_rows(inner, out, None);
            })
        });
        Ok((CpuStorage::F32(out), Shape::from((rows, second.out_dim))))
    }
}

/// The `[rows, in_dim]` f32 values of a contiguous input.
fn contiguous_input<'a>(storage: &'a CpuStorage, layout: &Layout, in_dim: usize) -> candle_core::Result<&'a [f32]> {
    let (_, columns) = layout.shape().dims2()?;
    if columns != in_dim {
        bail!("int8 layer: input of {columns} columns for a layer of {in_dim} inputs");
    }
    contiguous_f32(storage, layout, "int8 layer input")
}

/// A `[rows, out_dim]` matrix whose blocks of [`ROWS_PER_TASK`] rows `task(xs, out)`
/// writes in parallel from the matching rows of `xs`. Not zeroed first (that was 4% of
/// the encoder's time): `task` must write every element of its `out`.
fn fill_rows(
    rows: usize,
    out_dim: usize,
    xs: &[f32],
    in_dim: usize,
    task: impl Fn(&[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let len = rows * out_dim;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(ROWS_PER_TASK * out_dim)
        .zip(xs.par_chunks(ROWS_PER_TASK * in_dim))
        .for_each(|(out, xs)| task(xs, out));
    // Safety: every task wrote all of its block, and the blocks cover the first `len`.
    unsafe { out.set_len(len) };
    out
}

/// Calls `f::<R>(args)` for the `R` among the listed row counts that equals `rows`: the
/// SIMD tiles take their row count as a constant, so that their accumulators stay in
/// registers.
macro_rules! with_tile_rows {
    ($rows:expr, [$($r:literal),+], $f:ident $args:tt) => {
        match $rows {
            $($r => $f::<$r> $args,)+
            rows => unreachable!("a tile of {rows} rows"),
        }
    };
}

/// Rows handed to one rayon task: a multiple of both kernels' tile rows.
const ROWS_PER_TASK: usize = 48;

/// A task's quantized activations, reused so that no task allocates.
#[derive(Default)]
struct QuantizedRows {
    bytes: Vec<u8>,
    words: Vec<i16>,
    scales: Vec<f32>,
}

thread_local! {
    static ACTIVATIONS: std::cell::RefCell<QuantizedRows> = std::cell::RefCell::new(QuantizedRows::default());
    /// A feed-forward task's inner activations.
    static INNER: std::cell::RefCell<Vec<MaybeUninit<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl CustomOp1 for Product<'_> {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let layer = self.layer;
        let xs = contiguous_input(storage, layout, layer.in_dim)?;
        let rows = xs.len() / layer.in_dim;
        let out =
            fill_rows(rows, layer.out_dim, xs, layer.in_dim, |xs, out| layer.multiply_rows(xs, out, self.activation));
        Ok((CpuStorage::F32(out), Shape::from((rows, layer.out_dim))))
    }
}

/// The scale of a group of values and its inverse: the largest magnitude maps to 127.
/// An all-zero group gets scale 0 (its values quantize to 0 and contribute nothing).
fn scale_for(values: &[f32]) -> (f32, f32) {
    scale_from_max(values.iter().fold(0f32, |m, v| m.max(v.abs())))
}

fn scale_from_max(max: f32) -> (f32, f32) {
    if max > 0.0 && max.is_finite() {
        (max / 127.0, 127.0 / max)
    } else {
        (0.0, 0.0)
    }
}

/// Rounds half to even, as `vcvtps2dq` does; adding and taking away 1.5 · 2^23 rounds without
/// calling `rintf` (which `round_ties_even` is on CPUs below SSE4.1) for |value| < 2^22.
#[inline(always)]
fn quantize(value: f32, inverse: f32) -> i32 {
    const ROUND: f32 = 12_582_912.0;
    let scaled = (value * inverse).clamp(-127.0, 127.0);
    ((scaled + ROUND) - ROUND) as i32
}

/// Lengthens a reused buffer to `len` with `fill`; never shortens it.
fn grow<T: Clone>(buffer: &mut Vec<T>, len: usize, fill: T) {
    if buffer.len() < len {
        buffer.resize(len, fill);
    }
}

/// Each row of `xs` (`in_dim` values) block by block into `out` (`[rows, padded_in]`, the
/// padding zero) and `scales` (`[rows, blocks]`): the reference the SIMD versions match bit
/// for bit (`round_ties_even` is the rounding of `vcvtps2dq`).
fn quantize_rows(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [i16]) {
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

/// Activation quantization with AVX2, for both SIMD kernels. No closures here: they would
/// not inherit the target features, and every intrinsic would become a call.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod simd_quantize {
    use std::arch::x86_64::*;

    use super::{scale_from_max, BLOCK};

    /// Rows into offset bytes (`q + 128`) for the VNNI kernel.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rows_to_bytes(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [u8]) {
        check_sizes(xs, in_dim, padded_in, scales, out.len());
        // Bytes of 4 values from each of q0..q3 per lane; `order` puts them back in sequence.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let offset = _mm256_set1_epi8(-128);
        let mut padded = [0f32; BLOCK];
        for (r, row) in xs.chunks_exact(in_dim).enumerate() {
            for (b, block) in row.chunks(BLOCK).enumerate() {
                let q = quantize_block(block, &mut padded, &mut scales[r * (padded_in / BLOCK) + b]);
                let dst = out.as_mut_ptr().add(r * padded_in + b * BLOCK);
                for half in 0..2 {
                    let words0 = _mm256_packs_epi32(q[4 * half], q[4 * half + 1]);
                    let words1 = _mm256_packs_epi32(q[4 * half + 2], q[4 * half + 3]);
                    let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words0, words1), order);
                    _mm256_storeu_si256(dst.add(32 * half).cast(), _mm256_xor_si256(bytes, offset));
                }
            }
        }
    }

    /// Rows into 16-bit values for the AVX2 kernel.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rows_to_words(xs: &[f32], in_dim: usize, padded_in: usize, scales: &mut [f32], out: &mut [i16]) {
        check_sizes(xs, in_dim, padded_in, scales, out.len());
        let mut padded = [0f32; BLOCK];
        for (r, row) in xs.chunks_exact(in_dim).enumerate() {
            for (b, block) in row.chunks(BLOCK).enumerate() {
                let q = quantize_block(block, &mut padded, &mut scales[r * (padded_in / BLOCK) + b]);
                let dst = out.as_mut_ptr().add(r * padded_in + b * BLOCK);
                for pair in 0..4 {
                    let words = _mm256_packs_epi32(q[2 * pair], q[2 * pair + 1]);
                    _mm256_storeu_si256(dst.add(16 * pair).cast(), _mm256_permute4x64_epi64::<0b11_01_10_00>(words));
                }
            }
        }
    }

    fn check_sizes(xs: &[f32], in_dim: usize, padded_in: usize, scales: &[f32], out_len: usize) {
        let rows = xs.len() / in_dim;
        assert!(
            xs.len().is_multiple_of(in_dim)
                && scales.len() >= rows * (padded_in / BLOCK)
                && out_len >= rows * padded_in
        );
    }

    /// One block's 64 values (a shorter last block padded with zeros, via `padded`) as eight
    /// vectors of i32; writes the block's scale. Matches `quantize` + `scale_for` bit for bit:
    /// the maximum does not depend on the order, and `vcvtps2dq` rounds half to even.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn quantize_block(block: &[f32], padded: &mut [f32; BLOCK], scale: &mut f32) -> [__m256i; 8] {
        let source = if block.len() == BLOCK {
            block.as_ptr()
        } else {
            *padded = [0.0; BLOCK];
            padded[..block.len()].copy_from_slice(block);
            padded.as_ptr()
        };
        let sign = _mm256_set1_ps(-0.0);
        let mut values = [_mm256_setzero_ps(); 8];
        let mut max = _mm256_setzero_ps();
        for i in 0..8 {
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
        let mut q = [_mm256_setzero_si256(); 8];
        for i in 0..8 {
            let rounded = _mm256_cvtps_epi32(_mm256_mul_ps(values[i], inverse));
            q[i] = _mm256_max_epi32(_mm256_min_epi32(rounded, high), low);
        }
        q
    }
}

/// The reference kernel: `out[m][c] = (Σ_b dot_b · s[m][b]) · scale[c]`, each block's dot in
/// integers and the blocks summed with a fused multiply-add, exactly as the SIMD kernels do.
fn portable_tile(
    rows: usize,
    a: &[i16],
    row_scales: &[f32],
    panel: &[i16],
    column_scales: &[f32],
    blocks: usize,
    out: &mut [f32],
) {
    const WIDTH: usize = 16;
    let padded_in = blocks * BLOCK;
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
            out[m * WIDTH + c] = sums[c] * column_scales[c];
        }
    }
}

// The tiles index several register arrays by row and take their operands as plain slices.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
mod vnni {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// Up to 8 rows × 32 columns: `a` holds the rows' offset bytes, `panel` the 32 columns'
    /// weights in groups of 4 inputs.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
    pub unsafe fn tile(
        rows: usize,
        a: &[u8],
        row_scales: &[f32],
        panel: &[i8],
        offsets: &[i32],
        column_scales: &[f32],
        blocks: usize,
        out: &mut [f32],
    ) {
        with_tile_rows!(
            rows,
            [1, 2, 3, 4, 5, 6, 7, 8],
            tile_rows(a, row_scales, panel, offsets, column_scales, blocks, out)
        )
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
    unsafe fn tile_rows<const MR: usize>(
        a: &[u8],
        row_scales: &[f32],
        panel: &[i8],
        offsets: &[i32],
        column_scales: &[f32],
        blocks: usize,
        out: &mut [f32],
    ) {
        let padded_in = blocks * BLOCK;
        // The loads below are unchecked: these bounds make them safe.
        assert!(a.len() >= MR * padded_in && panel.len() >= 32 * padded_in && out.len() >= MR * 32);
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
            _mm512_storeu_ps(out.as_mut_ptr().add(m * 32), _mm512_mul_ps(sums[m][0], scale0));
            _mm512_storeu_ps(out.as_mut_ptr().add(m * 32 + 16), _mm512_mul_ps(sums[m][1], scale1));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// Up to 6 rows × 16 columns: `a` holds the rows' 16-bit values, `panel` the 16 columns'
    /// weights in pairs of inputs.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile(
        rows: usize,
        a: &[i16],
        row_scales: &[f32],
        panel: &[i16],
        column_scales: &[f32],
        blocks: usize,
        out: &mut [f32],
    ) {
        with_tile_rows!(rows, [1, 2, 3, 4, 5, 6], tile_rows(a, row_scales, panel, column_scales, blocks, out))
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_rows<const MR: usize>(
        a: &[i16],
        row_scales: &[f32],
        panel: &[i16],
        column_scales: &[f32],
        blocks: usize,
        out: &mut [f32],
    ) {
        let padded_in = blocks * BLOCK;
        // The loads below are unchecked: these bounds make them safe.
        assert!(a.len() >= MR * padded_in && panel.len() >= 16 * padded_in && out.len() >= MR * 16);
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
            _mm256_storeu_ps(out.as_mut_ptr().add(m * 16), _mm256_mul_ps(sums[m][0], scale0));
            _mm256_storeu_ps(out.as_mut_ptr().add(m * 16 + 8), _mm256_mul_ps(sums[m][1], scale1));
        }
    }
}

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
    use super::*;
    use candle_core::Device;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
    }

    fn kernels() -> Vec<Int8Kernel> {
        let best = Int8Kernel::best_supported();
        [Int8Kernel::Avx512Vnni, Int8Kernel::Avx2, Int8Kernel::Portable]
            .into_iter()
            .filter(|k| match best {
                Int8Kernel::Avx512Vnni => true,
                Int8Kernel::Avx2 => *k != Int8Kernel::Avx512Vnni,
                Int8Kernel::Portable => *k == Int8Kernel::Portable,
            })
            .collect()
    }

    /// Sizes that exercise partial blocks, panels and tiles.
    const SHAPES: [(usize, usize, usize); 4] = [(1, 32, 37), (13, 100, 16), (50, 384, 70), (7, 200, 33)];

    #[test]
    fn every_kernel_gives_the_same_bits_as_the_reference() {
        for (rows, in_dim, out_dim) in SHAPES {
            let x = Tensor::from_vec(random(rows * in_dim, 1), (rows, in_dim), &Device::Cpu).unwrap();
            let w = Tensor::from_vec(random(out_dim * in_dim, 2), (out_dim, in_dim), &Device::Cpu).unwrap();
            let b = Tensor::from_vec(random(out_dim, 3), out_dim, &Device::Cpu).unwrap();
            let reference = QuantizedLinear::with_kernel(&w, b.clone(), Int8Kernel::Portable)
                .unwrap()
                .forward_activated(&x, None)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for kernel in kernels() {
                let got = QuantizedLinear::with_kernel(&w, b.clone(), kernel)
                    .unwrap()
                    .forward_activated(&x, None)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
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

    #[test]
    fn precision_parses_and_prints() {
        for p in [Precision::F32, Precision::Int8] {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert!("q4".parse::<Precision>().is_err());
    }

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
