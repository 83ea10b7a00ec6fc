//! The projection estimate of the Jacobian's squared Frobenius norm, built on libtorch's autograd.

use crate::autograd::vector_jacobian_product;
use crate::checks::{
    batch_and_size, check_autograd_state, check_inputs, check_same_batch, scan_graph, Shaped,
};
use crate::directions::{Directions, Draws};
use crate::error::{Error, Interrupt, Result};
use crate::numerics::{
    accumulation_kind, as_rows, attached_zeros, per_sample_squared_norms, reduce, squared_norm,
};
use crate::options::{FrobeniusOptions, ProjectionCount, Reduction, Sampling};
use tch::Tensor;

/// `factor` · reduce_b ‖J_b‖²_F, estimated from projections, for the Jacobian J of `y` ([B, ...])
/// with respect to `x`; random directions come from `draws`.
///
/// The graph of `y` is always kept for the caller's own backward pass and for repeated calls.
pub fn squared_frobenius(
    x: &Shaped,
    y: &Shaped,
    options: FrobeniusOptions,
    draws: Draws,
    interrupt: Interrupt,
) -> Result<Tensor> {
    check_autograd_state()?;
    let kind = check_inputs(&x.tensor, &y.tensor)?;
    // A torch.compile'd function in y's graph is the caller's to handle (the Python layer
    // computes the value without a graph and refuses the backward); the backward passes here
    // must not fill the `.grad` of tensors that retain it, so their hooks are off until the end.
    let _retained = scan_graph(&x.tensor, &y.tensor, None)?;
    let (batch, per_sample) = batch_and_size(&y.shape)?;
    let per_sample_out = options.reduction == Reduction::None;
    if per_sample_out {
        check_same_batch(&x.shape, batch, "reduction=\"none\"")?;
    }
    if let (Sampling::Orthogonal, ProjectionCount::Random(n)) = (options.sampling, options.count) {
        if n > per_sample {
            return Err(Error::value_error(format!(
                "projection=\"orthogonal\" draws at most C={per_sample} orthonormal directions \
                 per sample, but n={n}; use n <= {per_sample}, or n=-1 for the exact value"
            )));
        }
    }
    // After the option checks, so misuse raises whatever the batch holds.
    if batch == 0 || per_sample == 0 {
        let zeros = attached_zeros(&y.tensor, batch, per_sample)?;
        return reduce(&zeros, options.reduction, batch, options.factor.get());
    }
    // Every unit vector in one dimension is ±1, so more draws would repeat the same value; a
    // caller's own directions are used as given, even there.
    let draw = match (options.count, draws) {
        (ProjectionCount::Exact, _) => false,
        (ProjectionCount::Random(_), Draws::Given(_)) => true,
        (ProjectionCount::Random(_), Draws::Normal(_)) => per_sample > 1,
    };
    let count = match options.count {
        ProjectionCount::Exact => per_sample,
        ProjectionCount::Random(_) if !draw => 1,
        ProjectionCount::Random(n) => n,
    };
    let device = y.tensor.device();
    let directions = match options.count {
        ProjectionCount::Random(n) if draw => Some(Directions::new(
            options.sampling,
            n,
            [batch, per_sample],
            kind,
            device,
            draws,
        )?),
        _ => None,
    };
    // factor · C/n, the estimator's scale (the reduction's comes last, in `reduce`). The
    // directions are scaled by its square root before the engine sees them, so the squared norms
    // come out scaled: no multiplication is added to the graph that loss.backward()
    // differentiates again. In half precision a gain would round every direction once more
    // than upstream's (to 8 or 11 bits), so there the engine gets the directions as upstream's
    // does, and the float32 sum is scaled.
    let scale = options.factor.get() * per_sample as f64 / count as f64;
    let half = accumulation_kind(kind) != kind;
    let (gain, after) = if half {
        (1.0, scale)
    } else {
        (scale.sqrt(), 1.0)
    };
    // Under torch.no_grad() even a selected column of y would have no grad_fn to differentiate.
    tch::with_grad(|| -> Result<Tensor> {
        // Each direction goes to the engine as y's grad_output: no (y·v).sum() around it. The
        // exact value differentiates one output coordinate at a time against constant vectors.
        let constant = match &directions {
            Some(_) => None,
            None if per_sample == 1 => Some(y.tensor.f_full_like(gain)?),
            None => Some(Tensor::f_full([batch], gain, (kind, device))?),
        };
        let y2d = match (&directions, per_sample) {
            (None, size) if size > 1 => Some(as_rows(&y.tensor, &y.shape, batch, per_sample)?),
            _ => None,
        };
        let mut total: Option<Tensor> = None;
        for k in 0..count {
            if k > 0 {
                interrupt()?;
            }
            let (output, grad_output) = match (&directions, &y2d, &constant) {
                (Some(directions), _, _) => (
                    y.tensor.shallow_clone(),
                    directions.get(k, gain)?.f_reshape(y.shape.as_slice())?,
                ),
                (None, Some(y2d), Some(c)) => (y2d.f_select(1, k)?, c.shallow_clone()),
                (None, None, Some(c)) => (y.tensor.shallow_clone(), c.shallow_clone()),
                _ => return Err(Error::runtime_error("no direction for this projection")),
            };
            let vjp =
                vector_jacobian_product(&output, &grad_output, &x.tensor, options.create_graph)?;
            let squared = if per_sample_out {
                per_sample_squared_norms(&vjp, batch)?
            } else {
                squared_norm(&vjp)?
            };
            total = Some(match total {
                None => squared,
                Some(total) => total.f_add(&squared)?,
            });
        }
        let total = total.ok_or_else(|| Error::runtime_error("no projection was taken"))?;
        reduce(&total, options.reduction, batch, after)
    })
}
