//! Serialisation of a [`FittedPipeline`] to and from named `f32` tensors (stored
//! beside a model's parameters in a checkpoint file). Values are copied bit for
//! bit, so a round trip is exact.

use crate::error::{DataError, Result};
use crate::geometry::numel3;
use crate::preprocess::{FittedPipeline, OwnedState, Preprocess, StepState};
use crate::whiten::{PatchZca, Whitening, WhiteningKind};
use strata_tensor::Tensor;

const INPUT_SHAPE: &str = "preprocess.input_shape";

// `to_tensors` and `from_tensors` live here, not in preprocess.rs, so that the
// dependency runs one way: this module uses preprocess.rs, never the reverse.
impl FittedPipeline {
    /// The fitted state as named tensors, for a checkpoint file:
    /// `preprocess.input_shape` (`[3]`) and, for step `i`,
    /// `preprocess.{i}.pixel_whiten.{mean,scale}` (`[C, H, W]`),
    /// `preprocess.{i}.{pca,zca}.{mean,matrix,eigenvalues}` (`[d]`, `[d, d]`, `[d]`),
    /// `preprocess.{i}.patch_zca.{mean,weight,eigenvalues}` (`[d]`,
    /// `[d, C, k, k]`, `[d]` with `d = C·k·k`).
    pub fn to_tensors(&self) -> Vec<(String, Tensor<f32>)> {
        to_tensors(self)
    }

    /// Rebuilds a pipeline from [`FittedPipeline::to_tensors`]'s output and the
    /// same configuration. A missing or misshapen tensor is an error that names it.
    pub fn from_tensors(tensors: &[(String, Tensor<f32>)], config: &[Preprocess]) -> Result<Self> {
        from_tensors(tensors, config)
    }
}

/// A tensor of fitted values whose length matches `shape` by construction: a
/// pipeline is only built by fitting or by [`from_tensors`], which check shapes.
fn tensor(v: &[f32], shape: &[usize]) -> Tensor<f32> {
    Tensor::from_slice(v, shape).expect("fitted state has the shape of its step")
}

fn to_tensors(p: &FittedPipeline) -> Vec<(String, Tensor<f32>)> {
    let (config, input, states) = p.parts();
    let dims: Vec<f32> = input.iter().map(|&v| v as f32).collect();
    let mut out = vec![(INPUT_SHAPE.to_string(), tensor(&dims, &[3]))];
    let mut shape = input;
    for (i, (step, st)) in config.iter().zip(states).enumerate() {
        let name = |field: &str| format!("preprocess.{i}.{}.{field}", step.name());
        match st {
            StepState::None => {}
            StepState::Pixel(mean, scale) => {
                out.push((name("mean"), tensor(mean, &shape)));
                out.push((name("scale"), tensor(scale, &shape)));
            }
            StepState::Whiten(w) => {
                let d = w.dim();
                out.push((name("mean"), tensor(&w.mean, &[d])));
                out.push((name("matrix"), tensor(&w.matrix, &[d, d])));
                out.push((name("eigenvalues"), tensor(&w.eigenvalues, &[d])));
            }
            StepState::Patch(pz) => {
                let w = &pz.whitening;
                out.push((name("mean"), tensor(&w.mean, &[w.dim()])));
                out.push((
                    name("weight"),
                    tensor(&w.matrix, &[w.dim(), pz.channels, pz.kernel, pz.kernel]),
                ));
                out.push((name("eigenvalues"), tensor(&w.eigenvalues, &[w.dim()])));
            }
        }
        shape = step
            .output_shape(shape)
            .expect("shapes were checked when fitting");
    }
    out
}

/// Finds tensor `name` and checks its shape.
fn take(tensors: &[(String, Tensor<f32>)], name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = tensors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| {
            DataError::Invalid(format!(
                "preprocessing: missing tensor `{name}` (expected shape {shape:?})"
            ))
        })?;
    if t.shape() != shape {
        return Err(DataError::Invalid(format!(
            "preprocessing: tensor `{name}` has shape {:?}, expected {shape:?}",
            t.shape()
        )));
    }
    Ok(t.to_vec())
}

fn from_tensors(
    tensors: &[(String, Tensor<f32>)],
    config: &[Preprocess],
) -> Result<FittedPipeline> {
    let dims = take(tensors, INPUT_SHAPE, &[3])?;
    let mut input = [0usize; 3];
    for (d, &v) in input.iter_mut().zip(&dims) {
        if !(v >= 1.0 && v.fract() == 0.0 && v < 16_777_216.0) {
            return Err(DataError::Invalid(format!(
                "preprocessing: tensor `{INPUT_SHAPE}` holds {dims:?}, expected three positive whole numbers"
            )));
        }
        *d = v as usize;
    }
    let mut shape = input;
    let mut states = Vec::with_capacity(config.len());
    for (i, step) in config.iter().enumerate() {
        let name = |field: &str| format!("preprocess.{i}.{}.{field}", step.name());
        let out_shape = step.output_shape(shape)?;
        let st = match *step {
            Preprocess::PixelWhiten { .. } => OwnedState::Pixel(
                take(tensors, &name("mean"), &shape)?,
                take(tensors, &name("scale"), &shape)?,
            ),
            Preprocess::Pca { eps } | Preprocess::Zca { eps } => {
                let kind = if matches!(step, Preprocess::Pca { .. }) {
                    WhiteningKind::Pca
                } else {
                    WhiteningKind::Zca
                };
                let d = numel3(shape);
                OwnedState::Whiten(Whitening {
                    kind,
                    eps,
                    mean: take(tensors, &name("mean"), &[d])?,
                    matrix: take(tensors, &name("matrix"), &[d, d])?,
                    eigenvalues: take(tensors, &name("eigenvalues"), &[d])?,
                })
            }
            Preprocess::PatchZca { kernel, eps, .. } => {
                let c = shape[0];
                let d = c * kernel * kernel;
                OwnedState::Patch(PatchZca {
                    channels: c,
                    kernel,
                    whitening: Whitening {
                        kind: WhiteningKind::Zca,
                        eps,
                        mean: take(tensors, &name("mean"), &[d])?,
                        matrix: take(tensors, &name("weight"), &[d, c, kernel, kernel])?,
                        eigenvalues: take(tensors, &name("eigenvalues"), &[d])?,
                    },
                })
            }
            _ => OwnedState::None,
        };
        states.push(st);
        shape = out_shape;
    }
    Ok(FittedPipeline::from_parts(config, input, states))
}
