//! Scaled dot-product attention of each window over its own tokens, read straight from
//! the fused query/key/value rows, one task per (window, head) in parallel. No permuted
//! copies, and a window's result depends on nothing but the window.
//!
//! Two ways to compute it ([`AttentionArithmetic`]):
//! - **f32**: each task two single-threaded gemms around a softmax. The reference, and
//!   what runs at f32 and on CPUs without AMX-BF16.
//! - **bf16 on AMX** (`amx_bf16.rs`), at int8 where the CPU has AMX-BF16: queries, keys,
//!   softmax weights and values rounded to bf16, products summed in f32 by the tile unit.
//!   On 380-token passages QKᵀ and PV were a fifth of `classify`'s time in f32 gemms.

#[cfg(target_arch = "x86_64")]
mod amx_bf16;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::config::Precision;
use super::cpu::CpuFeatures;
use super::int8::Int8Kernel;
use super::kernels::{contiguous_f32, exp, widest_build};

/// Set to `f32` to keep attention in f32 at int8 on a CPU with AMX-BF16 (to compare the
/// two, or to rule bf16 out when chasing a difference).
pub const ATTENTION_ENV: &str = "DOCCLASS_INT8_ATTENTION";

/// How attention's two products are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionArithmetic {
    F32,
    /// bf16 inputs, f32 sums, on the AMX tile unit; heads of [`BF16_HEAD_DIM`] only.
    AmxBf16,
}

/// The head width the bf16 kernel is written for: one bf16 tile deep (e5-small's heads).
pub const BF16_HEAD_DIM: usize = 32;

impl AttentionArithmetic {
    /// bf16 on AMX at int8 where the int8 products run on AMX (so capping the int8 kernel
    /// below AMX measures a CPU without it) and the CPU has AMX-BF16; f32 otherwise.
    pub fn for_precision(precision: Precision, head_dim: usize) -> Self {
        let bf16 = precision == Precision::Int8
            && head_dim == BF16_HEAD_DIM
            && Int8Kernel::detect() == Int8Kernel::Amx
            && CpuFeatures::get().amx_bf16
            && CpuFeatures::get().avx512_bf16
            && std::env::var(ATTENTION_ENV).as_deref() != Ok("f32");
        if bf16 {
            AttentionArithmetic::AmxBf16
        } else {
            AttentionArithmetic::F32
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AttentionArithmetic::F32 => "f32",
            AttentionArithmetic::AmxBf16 => "amx-bf16",
        }
    }
}

/// Attention per window on packed rows. Input: `[tokens, 3 * hidden]` (queries, keys,
/// values side by side, heads contiguous within each); output: `[tokens, hidden]`.
pub struct WindowAttention {
    pub lens: Vec<usize>,
    pub heads: usize,
    pub arithmetic: AttentionArithmetic,
}

/// A pointer that rayon tasks may share because each writes its own disjoint block.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the tasks that share it write disjoint blocks of the output (one window's rows
// and one head's columns each), and the output outlives them.
unsafe impl Send for SharedOut {}
// SAFETY: as for Send.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method, so that closures capture the whole (Send) wrapper, not the raw pointer.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// One task's share: a window's rows of the fused input and one head.
struct HeadTask<'a> {
    /// The window's rows of the fused input, `width` values each.
    rows: &'a [f32],
    width: usize,
    len: usize,
    /// Columns of the head's queries, keys and values within a row.
    query: usize,
    key: usize,
    value: usize,
    head_dim: usize,
    scale: f32,
    /// The head's first output value of the window's first row; rows `out_stride` apart.
    out: *mut f32,
    out_stride: usize,
}

impl CustomOp1 for WindowAttention {
    fn name(&self) -> &'static str {
        "window-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (tokens, width) = layout.shape().dims2()?;
        let qkv = contiguous_f32(storage, layout, "attention input")?;
        if width % 3 != 0 || (width / 3) % self.heads != 0 || self.lens.iter().sum::<usize>() != tokens {
            bail!("attention: {tokens}x{width} input does not fit {} heads and windows {:?}", self.heads, self.lens);
        }
        let hidden = width / 3;
        let head_dim = hidden / self.heads;
        if self.arithmetic == AttentionArithmetic::AmxBf16 && head_dim != BF16_HEAD_DIM {
            bail!("attention: the bf16 kernel needs heads of {BF16_HEAD_DIM}, not {head_dim}");
        }
        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut out = vec![0f32; tokens * hidden];
        let shared = SharedOut(out.as_mut_ptr());

        let mut tasks = Vec::with_capacity(self.lens.len() * self.heads);
        let mut start = 0;
        for &len in &self.lens {
            // An empty window has nothing to attend to (and no rows to slice).
            if len > 0 {
                tasks.extend((0..self.heads).map(|h| (start, len, h)));
            }
            start += len;
        }
        tasks.into_par_iter().for_each(|(start, len, h)| {
            let task = HeadTask {
                rows: &qkv[start * width..(start + len) * width],
                width,
                len,
                query: h * head_dim,
                key: hidden + h * head_dim,
                value: 2 * hidden + h * head_dim,
                head_dim,
                scale,
                // SAFETY: inside `out`: row `start` of `tokens`, column h · head_dim of `hidden`.
                out: unsafe { shared.ptr().add(start * hidden + h * head_dim) },
                out_stride: hidden,
            };
            match self.arithmetic {
                // SAFETY: the task's output block (rows start..start+len, the head's
                // columns) lies inside `out`, and no other task writes it.
                AttentionArithmetic::F32 => unsafe { head_f32(&task) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; `for_precision` chose AMX-BF16 only where the int8
                // kernel is AMX (so AVX-512 F and BW, and the tile state granted) and the
                // CPU has AMX-BF16 and AVX-512 BF16.
                AttentionArithmetic::AmxBf16 => unsafe { amx_bf16::head(&task) },
                #[cfg(not(target_arch = "x86_64"))]
                AttentionArithmetic::AmxBf16 => unreachable!("AMX is x86-64 only"),
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

thread_local! {
    /// Each worker's attention score matrix, reused so that no task allocates.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One window and head in f32: scores = scale · Q Kᵀ, a softmax per row, context = P V.
///
/// # Safety
/// `task.out` must point at `task.len` rows of `task.head_dim` writable values,
/// `task.out_stride` apart, that nothing else reads or writes meanwhile.
unsafe fn head_f32(task: &HeadTask) {
    let len = task.len;
    let w = task.width as isize;
    SCORES.with_borrow_mut(|scores| {
        // gemm overwrites the scores (it does not read them): grow, never clear.
        if scores.len() < len * len {
            scores.resize(len * len, 0.0);
        }
        // SAFETY: the reads stay inside the window's rows (len rows of `width`, columns
        // below `width`), the writes inside `scores` (len × len).
        unsafe {
            // Q is len x head_dim (rows `width` apart), Kᵀ is head_dim x len (column j =
            // key row j).
            gemm::gemm(
                len,
                len,
                task.head_dim,
                scores.as_mut_ptr(),
                1,
                len as isize,
                false,
                task.rows[task.query..].as_ptr(),
                1,
                w,
                task.rows[task.key..].as_ptr(),
                w,
                1,
                0.0,
                task.scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        softmax_rows(&mut scores[..len * len], len);
        // SAFETY: the caller's promise for `out`; the reads as above.
        unsafe {
            // P is len x len, V is len x head_dim (rows `width` apart).
            gemm::gemm(
                len,
                task.head_dim,
                len,
                task.out,
                1,
                task.out_stride as isize,
                false,
                scores.as_ptr(),
                1,
                len as isize,
                task.rows[task.value..].as_ptr(),
                1,
                w,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    })
}
widest_build! {
    /// Softmax of each row (`len` values) of `scores`, the loops built for the widest
    /// vectors this CPU has. Every build gives the same bits: the sum and maximum run in a
    /// fixed order, and `exp` is element by element.
    fn softmax_rows(scores: &mut [f32], len: usize) {
        for row in scores.chunks_exact_mut(len) {
            softmax_row(row)
        }
    }
}

#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let inv = 1.0 / exponentials_in_place(row);
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Replaces each value `x` of `row` by `exp(x − max)` and returns their sum: a softmax
/// before its division.
#[inline(always)]
fn exponentials_in_place(row: &mut [f32]) -> f32 {
    // Maximum and sum over 16 lanes, combined in a fixed order: the loops vectorise (a
    // single running sum would wait on each add) and give the same bits at every width.
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in chunks.by_ref() {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            // Not `f32::max`, whose NaN rule costs a compare and a blend per vector.
            *lane = if x > *lane { x } else { *lane };
        }
    }
    let max = chunks.remainder().iter().copied().fold(lanes.into_iter().fold(f32::NEG_INFINITY, f32::max), f32::max);
    // The exponentials and their sum in one pass.
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in chunks.by_ref() {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *x = exp(*x - max);
            *lane += *x;
        }
    }
    let mut rest = 0f32;
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        rest += *x;
    }
    lanes.into_iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Tensor};

    fn attend(qkv: &[f32], width: usize, lens: &[usize], heads: usize, arithmetic: AttentionArithmetic) -> Vec<f32> {
        let tokens = lens.iter().sum::<usize>();
        let input = Tensor::from_slice(qkv, (tokens, width), &Device::Cpu).unwrap();
        let op = WindowAttention { lens: lens.to_vec(), heads, arithmetic };
        input.apply_op1_no_bwd(&op).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn f32_precision_keeps_f32_attention() {
        assert_eq!(AttentionArithmetic::for_precision(Precision::F32, BF16_HEAD_DIM), AttentionArithmetic::F32);
        assert_eq!(AttentionArithmetic::for_precision(Precision::Int8, 64), AttentionArithmetic::F32);
    }

    /// bf16 attention against f32 on random windows of every padding case (empty, 1
    /// token, a tile ± 1, two query blocks and a ragged end): within bf16's rounding, per
    /// row.
    #[test]
    fn amx_bf16_attention_is_f32_attention_within_rounding() {
        let cpu = CpuFeatures::get();
        #[cfg(target_arch = "x86_64")]
        let available = cpu.amx_bf16 && cpu.avx512_bf16 && crate::model::amx::tile_state_granted();
        #[cfg(not(target_arch = "x86_64"))]
        let available = false;
        if !available {
            eprintln!("skipped: this CPU has no AMX-BF16 (flags: {})", cpu.names().join(" "));
            return;
        }
        let heads = 3;
        let hidden = heads * BF16_HEAD_DIM;
        let width = 3 * hidden;
        let lens = [1, 15, 16, 0, 17, 31, 32, 33, 70, 129];
        let tokens: usize = lens.iter().sum();
        let mut rng = Rng::new(7);
        // Queries and keys large enough that some rows' weights are sharp.
        let qkv: Vec<f32> = (0..tokens * width)
            .map(|i| (rng.next_f32() * 2.0 - 1.0) * if i % width < 2 * hidden { 3.0 } else { 1.0 })
            .collect();
        let reference = attend(&qkv, width, &lens, heads, AttentionArithmetic::F32);
        let bf16 = attend(&qkv, width, &lens, heads, AttentionArithmetic::AmxBf16);
        let mut worst = 0f32;
        for (want, got) in reference.chunks(BF16_HEAD_DIM).zip(bf16.chunks(BF16_HEAD_DIM)) {
            let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-3);
            let error = want.iter().zip(got).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt() / norm;
            worst = worst.max(error);
        }
        assert!(worst < 0.02, "worst relative error of a head's row: {worst}");
        // Deterministic, and each window's rows depend on that window only.
        assert_eq!(bf16, attend(&qkv, width, &lens, heads, AttentionArithmetic::AmxBf16));
        let last = lens.len() - 1;
        let alone_start = (tokens - lens[last]) * width;
        let alone = attend(&qkv[alone_start..], width, &lens[last..], heads, AttentionArithmetic::AmxBf16);
        assert_eq!(alone, bf16[(tokens - lens[last]) * hidden..]);
    }

    #[test]
    fn softmax_matches_the_textbook_formula() {
        // 37 values: whole vectors of every width and a remainder.
        let row: Vec<f32> = (0..37).map(|i| ((i * 7919) % 61) as f32 / 8.0 - 4.0).collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
        let want: Vec<f32> = row.iter().map(|x| (x - max).exp() / sum).collect();
        let mut portable = row.clone();
        softmax_row(&mut portable);
        for (got, want) in portable.iter().zip(&want) {
            assert!((got - want).abs() < 1e-7);
        }
        let mut widest = row.clone();
        softmax_rows(&mut widest, row.len());
        assert_eq!(widest, portable, "the widest build differs from the portable one");
    }
}
