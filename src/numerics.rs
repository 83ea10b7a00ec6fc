//! Squared norms, row normalisation and reductions, accumulated in a precision that does not overflow.

use crate::error::Result;
use crate::options::Reduction;
use tch::{Kind, Tensor};

/// The kind sums of squares are accumulated in: half-precision values overflow and lose digits.
pub fn accumulation_kind(kind: Kind) -> Kind {
    match kind {
        Kind::Half | Kind::BFloat16 => Kind::Float,
        other => other,
    }
}

/// ‖g‖² over all elements, summed without a square root.
pub fn squared_norm(grad: &Tensor) -> Result<Tensor> {
    let flat = grad.f_reshape([-1i64])?;
    match flat.f_kind()? {
        Kind::Float | Kind::Double => Ok(flat.f_dot(&flat)?),
        kind => Ok(flat.f_square()?.f_sum(accumulation_kind(kind))?),
    }
}

/// ‖g_b‖² for each sample b of a gradient whose first dimension is the batch.
pub fn per_sample_squared_norms(grad: &Tensor, batch: i64) -> Result<Tensor> {
    let kind = accumulation_kind(grad.f_kind()?);
    Ok(grad.f_reshape([batch, -1])?.f_square()?.f_sum_dim_intlist(
        [1i64].as_slice(),
        false,
        kind,
    )?)
}

/// Divides each row of a [B, K] matrix by its Euclidean norm and multiplies it by `gain` (as
/// upstream: a zero row, which a Gaussian draw never gives, would become NaN).
pub fn normalize_rows(rows: &Tensor, gain: f64) -> Result<Tensor> {
    let norm = rows.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), true)?;
    // The gain goes on the [B, 1] norms, not on the [B, K] rows.
    let norm = if gain == 1.0 {
        norm
    } else {
        norm.f_div_scalar(gain)?
    };
    Ok(rows.f_div(&norm)?)
}

/// The smallest positive normal number of a floating-point kind.
pub fn tiny(kind: Kind) -> f64 {
    match kind {
        Kind::Half => 6.103_515_625e-5,
        Kind::Double => f64::MIN_POSITIVE,
        _ => f32::MIN_POSITIVE as f64,
    }
}

/// Rows divided by their norms; a zero row stays zero instead of becoming NaN.
pub fn unit_rows(rows: &Tensor) -> Result<Tensor> {
    let norm = rows
        .f_norm_scalaropt_dim(2.0, [1i64].as_slice(), true)?
        .f_clamp_min(tiny(rows.f_kind()?))?;
    Ok(rows.f_div(&norm)?)
}

/// y as a [B, C] matrix: itself when it already is one (a reshape would add a node to its graph).
pub fn as_rows(y: &Tensor, shape: &[i64], batch: i64, per_sample: i64) -> Result<Tensor> {
    if shape == [batch, per_sample] {
        Ok(y.shallow_clone())
    } else {
        Ok(y.f_reshape([batch, per_sample])?)
    }
}

/// Per-sample zeros [B] for an empty batch or an empty output, still attached to y's graph so
/// that `loss.backward()` works on them.
pub fn attached_zeros(y: &Tensor, batch: i64, per_sample: i64) -> Result<Tensor> {
    Ok(y.f_reshape([batch, per_sample])?
        .f_sum_dim_intlist([1i64].as_slice(), false, None)?
        .f_mul_scalar(0.0)?)
}

/// `factor` · the reduction over the batch: every regularizer reduces here, and only here.
///
/// `values` are the per-sample values [B], or for "sum" and "mean" already their sum (0-d),
/// which needs no per-sample split of the gradients; `batch` is B. The mean of an empty batch is
/// 0, not NaN. No multiplication is added where the scale is 1.
pub fn reduce(values: &Tensor, reduction: Reduction, batch: i64, factor: f64) -> Result<Tensor> {
    let reduced = match reduction {
        Reduction::None => values.shallow_clone(),
        Reduction::Sum | Reduction::Mean if values.dim() == 0 => values.shallow_clone(),
        Reduction::Sum | Reduction::Mean => values.f_sum(None)?,
    };
    let scale = match reduction {
        Reduction::Mean => factor / batch.max(1) as f64,
        Reduction::None | Reduction::Sum => factor,
    };
    Ok(if scale == 1.0 {
        reduced
    } else {
        reduced.f_mul_scalar(scale)?
    })
}
