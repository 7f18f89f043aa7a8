//! What one training step of the encoder's top layers costs on this CPU with candle's
//! autograd: the question behind fine-tuning them for a head (see
//! `eval/area-of-law/selection.md`). Builds `LAYERS` layers of multilingual-e5-small's
//! shape (hidden 384, 12 heads, FFN 1536) from differentiable candle ops, runs a batch of
//! `WINDOWS` windows of `TOKENS` tokens forward and backward, and prints the median of
//! `RUNS` timings. The weights are random: only the time is measured.
//!
//! `cargo run --release --example top_layer_training_cost -- [LAYERS] [WINDOWS] [TOKENS]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};

const HIDDEN: usize = 384;
const HEADS: usize = 12;
const FFN: usize = 1536;
const RUNS: usize = 5;

struct Layer {
    qkv: (Var, Var),
    out: (Var, Var),
    norm1: (Var, Var),
    ffn_in: (Var, Var),
    ffn_out: (Var, Var),
    norm2: (Var, Var),
}

fn dense(rows: usize, cols: usize, device: &Device) -> candle_core::Result<(Var, Var)> {
    Ok((Var::randn(0f32, 0.02, (rows, cols), device)?, Var::zeros(cols, DType::F32, device)?))
}

fn norm(device: &Device) -> candle_core::Result<(Var, Var)> {
    Ok((Var::ones(HIDDEN, DType::F32, device)?, Var::zeros(HIDDEN, DType::F32, device)?))
}

impl Layer {
    fn new(device: &Device) -> candle_core::Result<Self> {
        Ok(Self {
            qkv: dense(HIDDEN, 3 * HIDDEN, device)?,
            out: dense(HIDDEN, HIDDEN, device)?,
            norm1: norm(device)?,
            ffn_in: dense(HIDDEN, FFN, device)?,
            ffn_out: dense(FFN, HIDDEN, device)?,
            norm2: norm(device)?,
        })
    }

    /// `xs` is `[windows * tokens, hidden]`; attention within each window.
    fn forward(&self, xs: &Tensor, windows: usize, tokens: usize) -> candle_core::Result<Tensor> {
        let linear = |x: &Tensor, (w, b): &(Var, Var)| x.matmul(w)?.broadcast_add(b);
        let layer_norm = |x: &Tensor, (g, b): &(Var, Var)| candle_nn::ops::layer_norm_slow(x, g, b, 1e-12);
        let head_dim = HIDDEN / HEADS;
        let qkv = linear(xs, &self.qkv)?.reshape((windows, tokens, 3, HEADS, head_dim))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
        let scores = (q.matmul(&k.t()?)? * (1.0 / (head_dim as f64).sqrt()))?;
        let attention = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = attention.matmul(&v)?.permute((0, 2, 1, 3))?.reshape((windows * tokens, HIDDEN))?;
        let xs = layer_norm(&linear(&context, &self.out)?.add(xs)?, &self.norm1)?;
        let inner = linear(&xs, &self.ffn_in)?.gelu_erf()?;
        layer_norm(&linear(&inner, &self.ffn_out)?.add(&xs)?, &self.norm2)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> candle_core::Result<()> {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (layers, windows, tokens) = (arg(1, 2), arg(2, 16), arg(3, 450));
    let device = Device::Cpu;
    let stack: Vec<Layer> = (0..layers).map(|_| Layer::new(&device)).collect::<candle_core::Result<_>>()?;
    let input = Tensor::randn(0f32, 1.0, (windows * tokens, HIDDEN), &device)?;
    let (mut forward, mut total) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut xs = input.clone();
        for layer in &stack {
            xs = layer.forward(&xs, windows, tokens)?;
        }
        let loss = xs.mean(0)?.sqr()?.sum_all()?;
        forward.push(started.elapsed().as_secs_f64());
        let gradients = loss.backward()?;
        assert!(gradients.get(stack[0].qkv.0.as_tensor()).is_some());
        total.push(started.elapsed().as_secs_f64());
    }
    let n = (windows * tokens) as f64;
    let (forward, total) = (median(forward), median(total));
    println!(
        "{layers} layer(s), {windows} windows of {tokens} tokens, {} threads: forward {forward:.2} s, \
         forward + backward {total:.2} s (median of {RUNS}) = {:.2} s per 1,000 tokens",
        candle_core::utils::get_num_threads(),
        total / n * 1000.0
    );
    Ok(())
}
