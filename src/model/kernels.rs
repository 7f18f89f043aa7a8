//! CPU kernels of the encoder's hot path, as candle custom ops:
//! - [`BiasActivation`]: bias add and activation in one parallel pass over a dense
//!   layer's output (candle's element-wise maps run on one thread, and its GELU calls a
//!   slow scalar erf);
//! - [`LayerNormRows`]: layer norm of each row, after adding the residual when given, in
//!   one parallel pass (candle's sums run one value at a time, and the residual add is a
//!   pass of its own);
//! - [`exp`] and [`erf`], branch-free so that the loops calling them vectorise.

// The approximation coefficients are written as published, past f32's precision.
#![allow(clippy::excessive_precision)]

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use rayon::prelude::*;

use super::config::Activation;

/// Rows handed to one rayon task by the element-wise kernels.
const ROWS_PER_TASK: usize = 16;

pub(super) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else { bail!("{what}: expected f32 values") };
    let Some((start, end)) = layout.contiguous_offsets() else { bail!("{what}: expected a contiguous tensor") };
    Ok(&values[start..end])
}

/// `activation(x + bias)` for `x` of shape `[rows, cols]` and `bias` of shape `[cols]`.
pub struct BiasActivation(pub Option<Activation>);

impl CustomOp2 for BiasActivation {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, cols) = x_layout.shape().dims2()?;
        let x = contiguous_f32(x, x_layout, "bias-activation input")?;
        let bias = contiguous_f32(bias, bias_layout, "bias")?;
        if bias.len() != cols {
            bail!("bias of {} values for {cols} columns", bias.len());
        }
        let mut out = x.to_vec();
        out.par_chunks_mut(cols * ROWS_PER_TASK).for_each(|rows| bias_activation_in_place(rows, bias, self.0));
        Ok((CpuStorage::F32(out), Shape::from((rows, cols))))
    }
}

/// `(x − mean) / sqrt(var + eps) · weight + bias` per row of the last dimension, as
/// transformers' `LayerNorm` (the variance from the differences to the mean, not E[x²] −
/// mean², which loses digits). As a [`CustomOp2`] the second input, the residual, is
/// added first.
pub struct LayerNormRows<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub eps: f32,
}

impl LayerNormRows<'_> {
    fn normalize(&self, x: &[f32], layout: &Layout, residual: Option<&[f32]>) -> candle_core::Result<CpuStorage> {
        let cols = self.weight.len();
        let dims = layout.shape().dims();
        if dims.last() != Some(&cols) || self.bias.len() != cols || residual.is_some_and(|r| r.len() != x.len()) {
            bail!("layer norm: {dims:?} input, {cols} weights, {} biases", self.bias.len());
        }
        let mut out = x.to_vec();
        let task_values = cols * ROWS_PER_TASK;
        let normalize = |rows: &mut [f32], residual: Option<&[f32]>| {
            layer_norm_in_place(rows, residual, self.weight, self.bias, self.eps)
        };
        match residual {
            Some(residual) => out
                .par_chunks_mut(task_values)
                .zip(residual.par_chunks(task_values))
                .for_each(|(rows, residual)| normalize(rows, Some(residual))),
            None => out.par_chunks_mut(task_values).for_each(|rows| normalize(rows, None)),
        }
        Ok(CpuStorage::F32(out))
    }
}

impl CustomOp1 for LayerNormRows<'_> {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "layer-norm input")?;
        Ok((self.normalize(x, layout, None)?, layout.shape().clone()))
    }
}

impl CustomOp2 for LayerNormRows<'_> {
    fn name(&self) -> &'static str {
        "residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x_values = contiguous_f32(x, x_layout, "layer-norm input")?;
        let residual = contiguous_f32(residual, residual_layout, "residual")?;
        Ok((self.normalize(x_values, x_layout, Some(residual))?, x_layout.shape().clone()))
    }
}

widest_build! {
    /// Layer norm of each row (`weight.len()` values) of `values` in place, after adding
    /// `residual` when given, on the calling thread.
    fn layer_norm_in_place(values: &mut [f32], residual: Option<&[f32]>, weight: &[f32], bias: &[f32], eps: f32) {
        if let Some(residual) = residual {
            for (x, r) in values.iter_mut().zip(residual) {
                *x += r;
            }
        }
        layer_norm_rows(values, weight, bias, eps)
    }
}

#[inline(always)]
fn layer_norm_rows(values: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let cols = weight.len();
    for row in values.chunks_exact_mut(cols) {
        let mean = lane_sum(row, |x| x) / cols as f32;
        let variance = lane_sum(row, |x| (x - mean) * (x - mean)) / cols as f32;
        let inverse = 1.0 / (variance + eps).sqrt();
        for ((x, &w), &b) in row.iter_mut().zip(weight).zip(bias) {
            *x = (*x - mean) * inverse * w + b;
        }
    }
}

/// The sum of `f(x)` over `values`, in 16 lanes combined in a fixed order: the loop
/// vectorises (one running sum would wait on each add) and every build gives the same bits.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in chunks.by_ref() {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x);
        }
    }
    lanes.into_iter().sum::<f32>() + chunks.remainder().iter().map(|&x| f(x)).sum::<f32>()
}

#[inline(always)]
fn gelu_erf(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_tanh(v: f32) -> f32 {
    let inner = (2.0f32 / std::f32::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
    0.5 * v * (1.0 + inner.tanh())
}

#[inline(always)]
fn relu(v: f32) -> f32 {
    v.max(0.0)
}

/// Defines `fn $name(args)` that runs `$body` built for the widest vectors this CPU has
/// (AVX-512, AVX2 with FMA, or plain x86-64): loops are written once, in plain Rust, and
/// the body (with every `#[inline(always)]` function it calls) is compiled into each build.
/// A function, not a closure, carries the body: a closure is only compiled into the wide
/// build where the optimizer happens to inline it, and one holding whole loops is not.
macro_rules! widest_build {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU must have AVX-512 F, AVX2 and FMA.
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                /// # Safety
                /// The CPU must have AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                let cpu = $crate::model::cpu::CpuFeatures::get();
                if cpu.avx2_fma && cpu.avx512f {
                    // SAFETY: the CPU has the features the build is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if cpu.avx2_fma {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}
pub(super) use widest_build;

widest_build! {
    /// `activation(x + bias)` on each row of `values` in place, on the calling thread: for
    /// kernels that finish a block of rows inside their own parallel task. The same values as
    /// [`BiasActivation`]. Each activation gets its own loop, element by element, so every
    /// build gives the same bits.
    pub fn bias_activation_in_place(values: &mut [f32], bias: &[f32], activation: Option<Activation>) {
        match activation {
            None => map_rows_in_place(values, bias, &|v| v),
            Some(Activation::GeluErf) => map_rows_in_place(values, bias, &gelu_erf),
            Some(Activation::GeluTanh) => map_rows_in_place(values, bias, &gelu_tanh),
            Some(Activation::Relu) => map_rows_in_place(values, bias, &relu),
            Some(Activation::Tanh) => map_rows_in_place(values, bias, &f32::tanh),
        }
    }
}

#[inline(always)]
fn map_rows_in_place(values: &mut [f32], bias: &[f32], f: &impl Fn(f32) -> f32) {
    for row in values.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = f(*v + b);
        }
    }
}

/// erf as a rational function of x (Eigen's `generic_fast_erf_float`): no branches and no
/// `exp`, so the loops over it vectorise. Outside [-4, 4] erf is ±1 in f32. Its error is a
/// few ulp, far inside the 1e-4 parity with transformers' exact erf that the tests check.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_2e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    x * p / q
}

/// e^x by range reduction to 2^n · e^r, |r| ≤ ln2/2, and Cephes' expf polynomial
/// (relative error about 1e-7), branch-free so that softmax loops vectorise. Inputs below
/// -80 give e^-80 (1.8e-35): results never become denormal, whose arithmetic is many
/// times slower, and a softmax term that small changes nothing.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-80.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // n as an integer, read from the low bits of `shifted`: a float-to-int cast here
    // would be done one element at a time.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    // Fused multiply-adds: one instruction each in the AVX2 and AVX-512 builds, and the
    // same bits in the portable one (a correctly rounded `fmaf`, slower there).
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 5.000_000_1e-1);
    let e_r = (p * r).mul_add(r, r) + 1.0;
    e_r * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for x in [-80.0f32, -20.0, -3.3, -1.0, -0.25, 0.0, 0.3, 1.0, 5.5, 40.0] {
            let relative = (exp(x) - x.exp()).abs() / x.exp();
            assert!(relative < 3e-7, "exp({x}) = {} not {}", exp(x), x.exp());
        }
        assert!(exp(-1000.0) < 2e-35 && exp(-1000.0).is_normal());
    }

    #[test]
    fn layer_norm_matches_the_textbook_formula_and_adds_the_residual() {
        use candle_core::{Device, Tensor};
        let (rows, cols) = (3, 37);
        let x: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 61) as f32 / 8.0 - 4.0).collect();
        let residual: Vec<f32> = (0..rows * cols).map(|i| ((i * 104729) % 17) as f32 / 4.0).collect();
        let weight: Vec<f32> = (0..cols).map(|i| 0.5 + i as f32 / 37.0).collect();
        let bias: Vec<f32> = (0..cols).map(|i| i as f32 / 10.0 - 1.0).collect();
        let op = LayerNormRows { weight: &weight, bias: &bias, eps: 1e-12 };
        let tensor = |v: &[f32]| Tensor::from_slice(v, (rows, cols), &Device::Cpu).unwrap();
        let got: Vec<f32> =
            tensor(&x).apply_op2_no_bwd(&tensor(&residual), &op).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (r, got_row) in got.chunks(cols).enumerate() {
            let sum: Vec<f64> = (0..cols).map(|c| (x[r * cols + c] + residual[r * cols + c]) as f64).collect();
            let mean = sum.iter().sum::<f64>() / cols as f64;
            let variance = sum.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / cols as f64;
            for (c, &value) in got_row.iter().enumerate() {
                let want = (sum[c] - mean) / (variance + 1e-12).sqrt() * weight[c] as f64 + bias[c] as f64;
                assert!((value as f64 - want).abs() < 1e-5, "row {r} column {c}: {value} not {want}");
            }
        }
        // Without a residual, the same as with a residual of zeros; every build the same bits.
        let plain: Vec<f32> = tensor(&x).apply_op1_no_bwd(&op).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let zeros = vec![0f32; rows * cols];
        let with_zeros: Vec<f32> =
            tensor(&x).apply_op2_no_bwd(&tensor(&zeros), &op).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(plain, with_zeros);
        let mut portable = x.clone();
        layer_norm_rows(&mut portable, &weight, &bias, 1e-12);
        assert_eq!(plain, portable, "the widest build differs from the portable one");
    }

    #[test]
    fn erf_is_accurate() {
        // Reference values of erf.
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
            (3.5, 0.999_999_26),
            (9.0, 1.0),
        ] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {} not {want}", erf(x));
        }
    }
}
