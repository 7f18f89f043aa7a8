//! Time of e5-small's dense layers alone at int8, with the kernel `Int8Kernel::detect`
//! chooses (cap it with DOCCLASS_INT8_KERNEL to compare):
//! `cargo run --release --example int8_layer_speed`. `REPS` calls per layer (default
//! 15); it prints the median and the fastest (on a shared machine the steadier).
use std::time::Instant;

use candle_core::{Device, Tensor};
use docclass::model::int8::{Int8Kernel, QuantizedLinear};

fn main() -> candle_core::Result<()> {
    let rows = 2048;
    let random = |n: usize, seed: u64| {
        let mut rng = docclass::rng::Rng::new(seed);
        (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect::<Vec<f32>>()
    };
    let reps: usize = std::env::var("REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(15);
    for (inputs, outputs) in [(384, 384), (384, 1536), (1536, 384)] {
        let w = Tensor::from_vec(random(inputs * outputs, 1), (outputs, inputs), &Device::Cpu)?;
        let b = Tensor::zeros(outputs, candle_core::DType::F32, &Device::Cpu)?;
        let layer = QuantizedLinear::new(&w, b)?;
        let x = Tensor::from_vec(random(rows * inputs, 2), (rows, inputs), &Device::Cpu)?;
        layer.forward_activated(&x, None)?;
        let mut times = Vec::new();
        for _ in 0..reps {
            let started = Instant::now();
            layer.forward_activated(&x, None)?;
            times.push(started.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let gops = 2.0 * (rows * inputs * outputs) as f64 / median / 1e9;
        println!(
            "{}: {rows} rows, {inputs} -> {outputs}: median {:.2} ms, {gops:.0} GOP/s; fastest {:.2} ms",
            Int8Kernel::detect().name(),
            median * 1e3,
            times[0] * 1e3
        );
    }
    Ok(())
}
