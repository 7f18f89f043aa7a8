//! The one driver of the int8 product, for every kernel: a layer's weights quantized and
//! packed into panels, rows handed to tasks, each task's activations quantized, the
//! kernel's tiles run panel by panel, then bias and activation while the rows are in cache.

use std::mem::MaybeUninit;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::portable::Portable;
use super::quantize::{quantize, scale_for};
#[cfg(target_arch = "x86_64")]
use super::{amx::Amx, avx2::Avx2, vnni::Vnni};
use super::{Int8Kernel, Kernel, BLOCK};
use crate::model::config::Activation;
use crate::model::kernels::{bias_activation_in_place, contiguous_f32};

/// A layer's weights, packed for the kernel that runs them.
enum PackedWeights {
    #[cfg(target_arch = "x86_64")]
    Amx(<Amx as Kernel>::Packed),
    #[cfg(target_arch = "x86_64")]
    Vnni(<Vnni as Kernel>::Packed),
    #[cfg(target_arch = "x86_64")]
    Avx2(<Avx2 as Kernel>::Packed),
    Portable(<Portable as Kernel>::Packed),
}

/// A dense layer `xs · Wᵀ + b` with int8 weights.
pub struct QuantizedLinear {
    in_dim: usize,
    out_dim: usize,
    /// `in_dim` rounded up to a multiple of [`BLOCK`].
    padded_in: usize,
    weights: PackedWeights,
    /// Per output column (padded to whole panels): the weights' scale.
    scales: Vec<f32>,
    bias: Vec<f32>,
}

impl QuantizedLinear {
    /// Quantizes `weight` (`[out, in]`, as `nn.Linear` stores it) for this CPU's kernel.
    pub fn new(weight: &Tensor, bias: Tensor) -> candle_core::Result<Self> {
        // SAFETY: `detect` chooses a kernel the CPU supports.
        unsafe { Self::with_kernel(weight, bias, Int8Kernel::detect()) }
    }

    /// Quantizes `weight` for `kernel`.
    ///
    /// # Safety
    /// The CPU must support `kernel` ([`Int8Kernel::is_supported`]): the layer runs it
    /// without asking again.
    pub(super) unsafe fn with_kernel(weight: &Tensor, bias: Tensor, kernel: Int8Kernel) -> candle_core::Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let values = weight.flatten_all()?.to_vec1::<f32>()?;
        let padded_in = in_dim.div_ceil(BLOCK) * BLOCK;
        let width = match kernel {
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Amx => Amx::PANEL_WIDTH,
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni => Vnni::PANEL_WIDTH,
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => Avx2::PANEL_WIDTH,
            _ => Portable::PANEL_WIDTH,
        };
        let panels = out_dim.div_ceil(width);
        // Row-major [padded columns, padded_in], zero where the layer has no weight.
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
        let weights = match kernel {
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Amx => PackedWeights::Amx(Amx::pack(&quantized, panels, padded_in)),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni => PackedWeights::Vnni(Vnni::pack(&quantized, panels, padded_in)),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => PackedWeights::Avx2(Avx2::pack(&quantized, panels, padded_in)),
            _ => PackedWeights::Portable(Portable::pack(&quantized, panels, padded_in)),
        };
        let bias = bias.to_vec1::<f32>()?;
        if bias.len() != out_dim {
            bail!("a bias of {} values for {out_dim} outputs", bias.len());
        }
        Ok(Self { in_dim, out_dim, padded_in, weights, scales, bias })
    }

    /// `activation(xs · Wᵀ + b)` for `xs` of shape `[rows, in]`.
    pub fn forward_activated(&self, xs: &Tensor, activation: Option<Activation>) -> candle_core::Result<Tensor> {
        xs.apply_op1_no_bwd(&Product { layer: self, activation })
    }

    /// `activation(xs · Wᵀ + b)` for the rows of one task. Every element of `out` is written.
    fn multiply_rows(&self, xs: &[f32], out: &mut [MaybeUninit<f32>], activation: Option<Activation>) {
        // SAFETY (each arm): the weights were packed for a kernel the CPU supports (the
        // precondition of `with_kernel`).
        match &self.weights {
            #[cfg(target_arch = "x86_64")]
            PackedWeights::Amx(packed) => unsafe { self.multiply_rows_with::<Amx>(packed, xs, out) },
            #[cfg(target_arch = "x86_64")]
            PackedWeights::Vnni(packed) => unsafe { self.multiply_rows_with::<Vnni>(packed, xs, out) },
            #[cfg(target_arch = "x86_64")]
            PackedWeights::Avx2(packed) => unsafe { self.multiply_rows_with::<Avx2>(packed, xs, out) },
            PackedWeights::Portable(packed) => unsafe { self.multiply_rows_with::<Portable>(packed, xs, out) },
        }
        // SAFETY: `multiply_rows_with` wrote every element of `out`.
        let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
        bias_activation_in_place(out, &self.bias, activation);
    }

    /// `xs · Wᵀ` with kernel `K`: quantizes the rows, then runs the tiles panel by panel.
    /// Writes every element of `out`.
    ///
    /// # Safety
    /// The CPU must support `K`.
    unsafe fn multiply_rows_with<K: Kernel>(&self, packed: &K::Packed, xs: &[f32], out: &mut [MaybeUninit<f32>])
    where
        QuantizedRows: Buffer<K::Activation>,
    {
        let rows = xs.len() / self.in_dim;
        // The tiles write whole panels through raw pointers: `out` must hold every row.
        assert_eq!(out.len(), rows * self.out_dim, "int8 layer output");
        let blocks = self.padded_in / BLOCK;
        let (width, tile) = (K::PANEL_WIDTH, K::TILE_ROWS);
        ACTIVATIONS.with_borrow_mut(|buffers| {
            // Every entry is written below: the buffers only ever grow.
            grow(&mut buffers.scales, rows * blocks, 0.0);
            // Room for whole tiles: a kernel may read a tile's rows past `rows` (AMX loads
            // 16 rows at a time), though never use them.
            let (values, scales) = buffers.values_and_scales(rows.next_multiple_of(tile) * self.padded_in);
            // SAFETY: the caller guarantees the CPU supports `K`.
            unsafe { K::quantize_rows(xs, self.in_dim, self.padded_in, scales, values) };
            // A last, narrower panel's tile (at most the widest panel, 32 columns, by the
            // tallest tile, 32 rows, AMX); whole panels go straight into `out`.
            let mut staging = [0f32; 32 * 32];
            assert!(width * tile <= staging.len());
            let multiply_panels = || {
                for p in 0..self.out_dim.div_ceil(width) {
                    let first_column = p * width;
                    let columns = width.min(self.out_dim - first_column);
                    let column_scales = &self.scales[first_column..first_column + width];
                    for r0 in (0..rows).step_by(tile) {
                        let mr = tile.min(rows - r0);
                        let row_scales = &scales[r0 * blocks..(r0 + mr) * blocks];
                        let a = &values[r0 * self.padded_in..(r0 + tile) * self.padded_in];
                        let first = r0 * self.out_dim + first_column;
                        let whole = columns == width;
                        let (tile_out, stride) = if whole {
                            (out[first..].as_mut_ptr().cast::<f32>(), self.out_dim)
                        } else {
                            (staging.as_mut_ptr(), width)
                        };
                        // SAFETY: as above; the tile checks its input slices' lengths itself.
                        // A whole panel's rows r0..r0 + mr lie inside `out` (`rows` rows of
                        // `out_dim`, columns first_column..first_column + width); a narrower
                        // one's inside `staging` (asserted above).
                        unsafe { K::tile(mr, a, row_scales, packed, p, column_scales, blocks, tile_out, stride) };
                        if !whole {
                            for (m, tile_row) in staging[..mr * width].chunks_exact(width).enumerate() {
                                let dst = first + m * self.out_dim;
                                for (out, &value) in out[dst..dst + columns].iter_mut().zip(&tile_row[..columns]) {
                                    out.write(value);
                                }
                            }
                        }
                    }
                }
            };
            // SAFETY: the caller guarantees the CPU supports `K`; every tile runs inside.
            unsafe { K::with_tile_state(multiply_panels) };
        });
    }
}

/// One use of a layer: the product, bias and activation in one pass over the output.
struct Product<'a> {
    layer: &'a QuantizedLinear,
    activation: Option<Activation>,
}

impl CustomOp1 for Product<'_> {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let layer = self.layer;
        let xs = contiguous_input(storage, layout, layer.in_dim)?;
        let rows = xs.len() / layer.in_dim;
        // SAFETY: `multiply_rows` writes every element of its `out`.
        let out = unsafe {
            fill_rows(rows, layer.out_dim, xs, layer.in_dim, |xs, out| layer.multiply_rows(xs, out, self.activation))
        };
        Ok((CpuStorage::F32(out), Shape::from((rows, layer.out_dim))))
    }
}

/// `second(activation(first(xs)))`, a transformer's feed-forward block, 96 rows at a time:
/// each task keeps its rows' inner activations (96 × 1,536 for e5) to itself, so the
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
        let task = |xs: &[f32], out: &mut [MaybeUninit<f32>]| {
            INNER.with_borrow_mut(|inner| {
                let len = xs.len() / first.in_dim * first.out_dim;
                grow(inner, len, MaybeUninit::uninit());
                first.multiply_rows(xs, &mut inner[..len], self.activation);
                // SAFETY: `multiply_rows` wrote all of `inner[..len]`.
                let inner = unsafe { &*(&inner[..len] as *const [MaybeUninit<f32>] as *const [f32]) };
                second.multiply_rows(inner, out, None);
            })
        };
        // SAFETY: the task's second `multiply_rows` writes every element of its `out`.
        let out = unsafe { fill_rows(rows, second.out_dim, xs, first.in_dim, task) };
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

/// Rows handed to one rayon task: a multiple of every kernel's tile rows (6, 8 and 32),
/// so that each weight panel, once in cache, serves three AMX tiles.
const ROWS_PER_TASK: usize = 96;

/// A `[rows, out_dim]` matrix whose blocks of [`ROWS_PER_TASK`] rows `task(xs, out)`
/// writes in parallel from the matching rows of `xs`. Not zeroed first (that was 4% of
/// the encoder's time).
///
/// # Safety
/// `task` must write every element of the `out` it is given.
unsafe fn fill_rows(
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
    // SAFETY: every task wrote all of its block (the caller's promise), and the blocks
    // cover the first `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// Lengthens a reused buffer to `len` with `fill`; never shortens it.
fn grow<T: Clone>(buffer: &mut Vec<T>, len: usize, fill: T) {
    if buffer.len() < len {
        buffer.resize(len, fill);
    }
}

/// A task's quantized activations, reused so that no task allocates.
#[derive(Default)]
struct QuantizedRows {
    bytes: Vec<u8>,
    signed_bytes: Vec<i8>,
    words: Vec<i16>,
    scales: Vec<f32>,
}

/// The buffer of a kernel's activation type.
trait Buffer<T> {
    /// At least `len` activation values, and the scales.
    fn values_and_scales(&mut self, len: usize) -> (&mut [T], &mut [f32]);
}

impl Buffer<u8> for QuantizedRows {
    fn values_and_scales(&mut self, len: usize) -> (&mut [u8], &mut [f32]) {
        grow(&mut self.bytes, len, 0);
        (&mut self.bytes, &mut self.scales)
    }
}

impl Buffer<i8> for QuantizedRows {
    fn values_and_scales(&mut self, len: usize) -> (&mut [i8], &mut [f32]) {
        grow(&mut self.signed_bytes, len, 0);
        (&mut self.signed_bytes, &mut self.scales)
    }
}

impl Buffer<i16> for QuantizedRows {
    fn values_and_scales(&mut self, len: usize) -> (&mut [i16], &mut [f32]) {
        grow(&mut self.words, len, 0);
        (&mut self.words, &mut self.scales)
    }
}

thread_local! {
    static ACTIVATIONS: std::cell::RefCell<QuantizedRows> = std::cell::RefCell::new(QuantizedRows::default());
    /// A feed-forward task's inner activations.
    static INNER: std::cell::RefCell<Vec<MaybeUninit<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}
