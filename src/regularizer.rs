//! The projection estimate of the Jacobian's squared Frobenius norm, built on libtorch's autograd.

use crate::checks::{check_inputs, Projections};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// A callback run between projections; it lets Python deliver Ctrl-C during long exact-mode calls.
pub type Interrupt<'a> = &'a dyn Fn() -> Result<()>;

/// R = 1/2 · C/(n·B) · Σ_k ‖v_kᵀ J‖² for the Jacobian J of `y` ([B, ...]) with respect to `x`.
///
/// `y_shape` is y's shape, read by the caller: tch's own `size()` panics where a shape is not
/// concrete, which the caller reports as an error instead.
///
/// With `create_graph` the result is differentiable (the double-backward graph is built); without
/// it the result is a plain number for logging. The graph of `y` is always kept for the caller.
pub fn jacobian_penalty(
    x: &Tensor,
    y: &Tensor,
    y_shape: &[i64],
    projections: Projections,
    create_graph: bool,
    interrupt: Interrupt,
) -> Result<Tensor> {
    let kind = check_inputs(x, y)?;
    let (batch, per_sample) = match y_shape {
        [batch, rest @ ..] => (*batch, rest.iter().product::<i64>()),
        [] => {
            return Err(Error::runtime_error(
                "y's shape does not match its dimensions",
            ))
        }
    };
    if batch == 0 || per_sample == 0 {
        // Zero, yet still attached to y's graph, so `loss.backward()` works on an empty batch.
        return Ok(y.f_sum(None)?.f_mul_scalar(0.0)?);
    }
    let count = match projections {
        Projections::Exact => per_sample,
        // Every unit vector in one dimension is ±1, so more draws would repeat the same value.
        Projections::Random(_) if per_sample == 1 => 1,
        Projections::Random(n) => n,
    };
    // Under torch.no_grad() the projected outputs would have no grad_fn to differentiate.
    let total = tch::with_grad(|| -> Result<Tensor> {
        let y2d = y.f_reshape([batch, per_sample])?;
        let mut total: Option<Tensor> = None;
        for k in 0..count {
            if k > 0 {
                interrupt()?;
            }
            let projected = match projections {
                Projections::Exact => y2d.f_select(1, k)?.f_sum(None)?,
                Projections::Random(_) if per_sample == 1 => y2d.f_sum(None)?,
                Projections::Random(_) => y2d
                    .f_mul(&unit_sphere(&y2d, [batch, per_sample], kind)?)?
                    .f_sum(None)?,
            };
            let squared = squared_norm(&vector_jacobian_product(&projected, x, create_graph)?)?;
            total = Some(match total {
                None => squared,
                Some(total) => total.f_add(&squared)?,
            });
        }
        total.ok_or_else(|| Error::runtime_error("no projection was taken"))
    })?;
    let scale = 0.5 * per_sample as f64 / (count as f64 * batch as f64);
    Ok(total.f_mul_scalar(scale)?)
}

/// One standard-normal draw per sample, normalised per row: the upstream library's draw order.
fn unit_sphere(y2d: &Tensor, shape: [i64; 2], kind: Kind) -> Result<Tensor> {
    let v = Tensor::f_randn(shape, (kind, y2d.device()))?;
    let norm = v.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), true)?;
    Ok(v.f_div(&norm)?)
}

/// vᵀJ for the scalar `projected` = Σ y·v, keeping y's graph for later backward passes.
fn vector_jacobian_product(projected: &Tensor, x: &Tensor, create_graph: bool) -> Result<Tensor> {
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

/// ‖g‖², summed without a square root; half-precision gradients are summed in float32.
fn squared_norm(grad: &Tensor) -> Result<Tensor> {
    let flat = grad.f_reshape([-1i64])?;
    match flat.f_kind()? {
        Kind::Float | Kind::Double => Ok(flat.f_dot(&flat)?),
        _ => Ok(flat.f_square()?.f_sum(Kind::Float)?),
    }
}
