//! Vector-Jacobian products and squared norms on libtorch's autograd engine.

use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// The gradient of the scalar `root` with respect to `input`, keeping the graph; None where no
/// gradient reaches `input`.
///
/// libtorch's engine dereferences the root's grad_fn unchecked, so a root that records no graph
/// (under torch.inference_mode(), or where every op on the way has a constant backward) would
/// crash the process: it is caught here instead.
pub fn gradient(root: &Tensor, input: &Tensor, create_graph: bool) -> Result<Option<Tensor>> {
    if !root.requires_grad() {
        return Ok(None);
    }
    let mut grads = Tensor::f_run_backward(&[root], &[input], true, create_graph)?;
    Ok(grads.pop().filter(Tensor::defined))
}

/// vᵀJ for the scalar `projected` = Σ y·v, keeping y's graph for later backward passes.
pub fn vector_jacobian_product(
    projected: &Tensor,
    x: &Tensor,
    create_graph: bool,
) -> Result<Tensor> {
    if !projected.requires_grad() {
        return Err(Error::runtime_error(
            "the regularizer cannot record its backward passes under torch.inference_mode(); \
             use torch.no_grad() for evaluation and logging instead",
        ));
    }
    match gradient(projected, x, create_graph)? {
        Some(grad) => Ok(grad),
        None => Err(Error::runtime_error(
            "y does not depend on x: no gradient reaches x, so there is no Jacobian to \
             regularize; pass the tensor the model was called on (with requires_grad=True) and \
             the model's output computed from it",
        )),
    }
}

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

/// Divides each row of a [B, K] matrix by its Euclidean norm (as upstream: a zero row, which a
/// Gaussian draw never gives, would become NaN).
pub fn normalize_rows(rows: &Tensor) -> Result<Tensor> {
    let norm = rows.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), true)?;
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

/// Per-sample zeros [B] for an empty batch or an empty output, still attached to y's graph so
/// that `loss.backward()` works on them.
pub fn attached_zeros(y: &Tensor, batch: i64, per_sample: i64) -> Result<Tensor> {
    Ok(y.f_reshape([batch, per_sample])?
        .f_sum_dim_intlist([1i64].as_slice(), false, None)?
        .f_mul_scalar(0.0)?)
}
