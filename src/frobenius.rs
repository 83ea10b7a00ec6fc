//! The projection estimate of the Jacobian's squared Frobenius norm, built on libtorch's autograd.

use crate::autograd::{
    attached_zeros, per_sample_squared_norms, squared_norm, vector_jacobian_product,
};
use crate::checks::{
    batch_and_size, check_inputs, check_same_batch, Projection, Projections, Reduction,
};
use crate::directions::Directions;
use crate::error::{Error, Result};
use crate::Interrupt;
use tch::Tensor;

/// What to compute: `factor` · reduce_b( C/n · Σ_k ‖v_kᵀ J_b‖² ), an estimate of
/// `factor` · reduce_b ‖J_b‖² (JacobianReg uses factor 1/2 and the mean).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub projections: Projections,
    pub projection: Projection,
    pub reduction: Reduction,
    pub factor: f64,
    /// Build the double-backward graph, so the result is differentiable.
    pub create_graph: bool,
}

/// The estimate for the Jacobian J of `y` ([B, ...]) with respect to `x`.
///
/// Shapes are read by the caller: tch's own `size()` panics where a shape is not concrete. The
/// graph of `y` is always kept for the caller's own backward pass and for repeated calls.
pub fn frobenius(
    x: &Tensor,
    x_shape: &[i64],
    y: &Tensor,
    y_shape: &[i64],
    options: Options,
    noise: Option<Tensor>,
    interrupt: Interrupt,
) -> Result<Tensor> {
    let kind = check_inputs(x, y)?;
    let (batch, per_sample) = batch_and_size(y_shape)?;
    let per_sample_out = options.reduction == Reduction::None;
    if per_sample_out {
        check_same_batch(x_shape, batch, "reduction=\"none\"")?;
    }
    if let (Projection::Orthogonal, Projections::Random(n)) =
        (options.projection, options.projections)
    {
        if n > per_sample {
            return Err(Error::value_error(format!(
                "projection=\"orthogonal\" draws at most C={per_sample} orthonormal directions \
                 per sample, but n={n}; use n <= {per_sample}, or n=-1 for the exact value"
            )));
        }
    }
    // After the option checks, so misuse raises whatever the batch holds.
    if batch == 0 || per_sample == 0 {
        let zeros = attached_zeros(y, batch, per_sample)?;
        return Ok(if per_sample_out {
            zeros
        } else {
            zeros.f_sum(None)?
        });
    }
    let count = match options.projections {
        Projections::Exact => per_sample,
        // Every unit vector in one dimension is ±1, so more draws would repeat the same value.
        Projections::Random(_) if per_sample == 1 => 1,
        Projections::Random(n) => n,
    };
    let directions = match options.projections {
        Projections::Random(n) if per_sample > 1 => Some(Directions::new(
            options.projection,
            n,
            [batch, per_sample],
            kind,
            y.device(),
            noise,
        )?),
        _ => None,
    };
    // Under torch.no_grad() even the reshaped y would have no grad_fn to differentiate.
    let total = tch::with_grad(|| -> Result<Tensor> {
        let y2d = y.f_reshape([batch, per_sample])?;
        let mut total: Option<Tensor> = None;
        for k in 0..count {
            if k > 0 {
                interrupt()?;
            }
            let projected = match &directions {
                Some(directions) => y2d.f_mul(&directions.get(k)?)?.f_sum(None)?,
                None if per_sample == 1 => y2d.f_sum(None)?,
                None => y2d.f_select(1, k)?.f_sum(None)?,
            };
            let vjp = vector_jacobian_product(&projected, x, options.create_graph)?;
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
        total.ok_or_else(|| Error::runtime_error("no projection was taken"))
    })?;
    let mut scale = options.factor * per_sample as f64 / count as f64;
    if options.reduction == Reduction::Mean {
        scale /= batch as f64;
    }
    Ok(total.f_mul_scalar(scale)?)
}
