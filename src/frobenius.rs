//! The projection estimate of the Jacobian's squared Frobenius norm, built on libtorch's autograd.

use crate::autograd::vector_jacobian_product;
use crate::checks::{batch_and_size, check_inputs, check_same_batch, Shaped};
use crate::directions::{Directions, Normal};
use crate::error::{Error, Interrupt, Result};
use crate::numerics::{attached_zeros, per_sample_squared_norms, reduce, squared_norm};
use crate::options::{FrobeniusOptions, ProjectionCount, Reduction, Sampling};
use tch::Tensor;

/// `factor` · reduce_b ‖J_b‖²_F, estimated from projections, for the Jacobian J of `y` ([B, ...])
/// with respect to `x`; directions are drawn from `normal`.
///
/// The graph of `y` is always kept for the caller's own backward pass and for repeated calls.
pub fn squared_frobenius(
    x: &Shaped,
    y: &Shaped,
    options: FrobeniusOptions,
    normal: &dyn Normal,
    interrupt: Interrupt,
) -> Result<Tensor> {
    let kind = check_inputs(&x.tensor, &y.tensor)?;
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
        return reduce(&zeros, options.reduction, options.factor);
    }
    let count = match options.count {
        ProjectionCount::Exact => per_sample,
        // Every unit vector in one dimension is ±1, so more draws would repeat the same value.
        ProjectionCount::Random(_) if per_sample == 1 => 1,
        ProjectionCount::Random(n) => n,
    };
    let device = y.tensor.device();
    let directions = match options.count {
        ProjectionCount::Random(n) if per_sample > 1 => Some(Directions::new(
            options.sampling,
            n,
            [batch, per_sample],
            kind,
            device,
            normal,
        )?),
        _ => None,
    };
    // Under torch.no_grad() even the reshaped y would have no grad_fn to differentiate.
    let total = tch::with_grad(|| -> Result<Tensor> {
        let y2d = y.tensor.f_reshape([batch, per_sample])?;
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
            let vjp = vector_jacobian_product(&projected, &x.tensor, options.create_graph)?;
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
    // The batch sum is taken per projection above (a dot product, cheaper than per-sample sums),
    // so only the scale is left: C/n for the estimate, 1/B for the mean.
    let mut scale = options.factor * per_sample as f64 / count as f64;
    if options.reduction == Reduction::Mean {
        scale /= batch as f64;
    }
    Ok(total.f_mul_scalar(scale)?)
}
