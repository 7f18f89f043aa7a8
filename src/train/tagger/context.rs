//! The context emitter's training side: its weights' place in the parameter vector,
//! their starting values, and the layer on them (with variables, for candle's autograd).

use std::collections::HashMap;
use std::ops::Range;

use anyhow::Result;
use candle_core::{Device, Tensor, Var};

use super::ContextSettings;
use crate::model::head_file::ContextSpec;
use crate::model::heads::context::{weight_shapes, ContextLayer};
use crate::rng::Rng;

/// A weight as a variable of candle's autograd, with its place in the parameters.
type Tracked = (Var, Range<usize>);

pub(super) struct ContextEmitter {
    pub(super) spec: ContextSpec,
    shapes: Vec<(&'static str, Vec<usize>)>,
    /// Share of the LSTM's inputs and outputs dropped while training.
    pub(super) dropout: f32,
}

impl ContextEmitter {
    pub(super) fn new(settings: &ContextSettings, chars: String, dim: usize, k: usize) -> Self {
        let spec = ContextSpec { chars, ..settings.sizes.clone() };
        let shapes = weight_shapes(&spec, dim, k);
        Self { spec, shapes, dropout: settings.dropout }
    }

    /// Where each weight lies in the parameter vector.
    pub(super) fn ranges(&self) -> impl Iterator<Item = (&'static str, &[usize], Range<usize>)> + '_ {
        let mut at = 0;
        self.shapes.iter().map(move |(name, shape)| {
            let n: usize = shape.iter().product();
            at += n;
            (*name, &shape[..], at - n..at)
        })
    }

    pub(super) fn len(&self) -> usize {
        self.ranges().last().map_or(0, |(_, _, r)| r.end)
    }

    /// The layer on the parameters `p`; with `track`, its weights are variables whose
    /// gradients a backward pass finds (returned with their place in `p`).
    pub(super) fn layer(&self, p: &[f32], track: bool) -> Result<(ContextLayer, Vec<Tracked>)> {
        let mut weights = HashMap::new();
        let mut vars = Vec::new();
        for (name, shape, range) in self.ranges() {
            let tensor = Tensor::from_slice(&p[range.clone()], shape, &Device::Cpu)?;
            if track {
                let var = Var::from_tensor(&tensor)?;
                weights.insert(name, var.as_tensor().clone());
                vars.push((var, range));
            } else {
                weights.insert(name, tensor);
            }
        }
        Ok((ContextLayer::new(self.spec.clone(), weights)?, vars))
    }

    /// Starting weights: Glorot-uniform matrices, LSTM weights uniform in ±1/√h with a
    /// forget-gate bias of 1, other biases 0; from `seed`.
    pub(super) fn initial(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed ^ 0xc0_47e7);
        let mut p = vec![0.0f32; self.len()];
        let h = self.spec.hidden;
        for (name, shape, range) in self.ranges() {
            let limit = match (name, shape) {
                (_, [_]) => 0.0,
                ("context.char_table", [_, c]) => (3.0 / *c as f32).sqrt(),
                (n, _) if n.contains("forward_") || n.contains("backward_") => 1.0 / (h as f32).sqrt(),
                (_, [rows, cols]) => (6.0 / (rows + cols) as f32).sqrt(),
                _ => 0.0,
            };
            for x in &mut p[range.clone()] {
                *x = limit * (2.0 * rng.next_f32() - 1.0);
            }
            if name.ends_with("_bias") && (name.contains("forward") || name.contains("backward")) {
                p[range.start + h..range.start + 2 * h].fill(1.0);
            }
        }
        p
    }
}
