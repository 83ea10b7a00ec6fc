//! Vector-Jacobian products and squared norms on libtorch's autograd engine.

use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// vᵀJ for the scalar `projected` = Σ y·v, keeping y's graph for later backward passes.
pub fn vector_jacobian_product(
    projected: &Tensor,
    x: &Tensor,
    create_graph: bool,
) -> Result<Tensor> {
    let mut grads = Tensor::f_run_backward(&[projected], &[x], true, create_graph)?;
    match grads.pop() {
        Some(grad) if grad.defined() => Ok(grad),
        _ => Err(Error::runtime_error(
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

/// Divides each row of a [B, K] matrix by its Euclidean norm.
pub fn normalize_rows(rows: &Tensor) -> Result<Tensor> {
    let norm = rows.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), true)?;
    Ok(rows.f_div(&norm)?)
}
