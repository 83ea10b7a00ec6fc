//! The per-sample spectral norm (largest singular value) of the Jacobian, by power iteration.

use crate::autograd::{gradient, vector_jacobian_product};
use crate::checks::{
    batch_and_size, check_autograd_state, check_inputs, check_same_batch, scan_graph, Shaped,
};
use crate::directions::{start, Normal};
use crate::error::{Interrupt, Result};
use crate::numerics::{accumulation_kind, attached_zeros, reduce, tiny, unit_rows};
use crate::options::{PowerIteration, SpectralOptions};
use tch::Tensor;

/// σ_max(J_b) for each sample b, for the Jacobian J of `y` ([B, ...]) with respect to `x`.
///
/// Alternates vector-Jacobian products u = Jᵀv and Jacobian-vector products Ju (the latter as
/// the derivative of uᵀ(Jᵀv) with respect to v), from a standard normal start drawn from
/// `normal`. The returned σ_b = v_bᵀ J_b u_b is differentiable (with `create_graph`) at the final
/// singular vectors, which are held fixed, as in spectral normalisation.
pub fn spectral_norms(
    x: &Shaped,
    y: &Shaped,
    power: PowerIteration,
    create_graph: bool,
    normal: &dyn Normal,
    interrupt: Interrupt,
) -> Result<Tensor> {
    check_autograd_state()?;
    let kind = check_inputs(&x.tensor, &y.tensor)?;
    // Power iteration differentiates the backward pass even without gradients.
    let _retained = scan_graph(
        &x.tensor,
        &y.tensor,
        Some("the spectral norm's power iteration"),
    )?;
    let (batch, per_sample) = batch_and_size(&y.shape)?;
    check_same_batch(&x.shape, batch, "the spectral norm")?;
    if batch == 0 || per_sample == 0 {
        return attached_zeros(&y.tensor, batch, per_sample);
    }
    let device = y.tensor.device();
    // y's grad_outputs are directions of its own shape.
    let shaped = |v: &Tensor| v.f_reshape(y.shape.as_slice());
    tch::with_grad(|| -> Result<Tensor> {
        let start = if per_sample == 1 {
            // One output per sample: its only directions are ±1, and no draw is needed.
            Tensor::f_ones([batch, 1], (kind, device))?
        } else {
            start(normal, [batch, per_sample], kind, device)?
        };
        let mut v = unit_rows(&start)?;
        let mut previous: Option<Tensor> = None;
        for iteration in 0..power.iters {
            if iteration > 0 {
                interrupt()?;
            }
            let v_var = v.f_detach()?.f_set_requires_grad(true)?;
            let jt_v = vector_jacobian_product(&y.tensor, &shaped(&v_var)?, &x.tensor, true)?;
            let jt_v = jt_v.f_reshape([batch, -1])?;
            let u = unit_rows(&jt_v.f_detach()?)?;
            // Ju = d(uᵀ Jᵀv)/dv, with u fed to the engine as Jᵀv's grad_output.
            let j_u = match gradient(&jt_v, &v_var, Some(&u), false)? {
                Some(grad) => grad,
                // Jᵀv does not depend on v only where the Jacobian is zero everywhere.
                None => v.f_zeros_like()?,
            };
            let sigma = j_u.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), false)?;
            v = unit_rows(&j_u)?;
            if power.tol > 0.0 {
                if let Some(previous) = &previous {
                    let change = sigma
                        .f_sub(previous)?
                        .f_abs()?
                        .f_div(&sigma.f_clamp_min(tiny(sigma.f_kind()?))?)?
                        .f_max()?
                        .f_double_value(&[])?;
                    if change <= power.tol {
                        break;
                    }
                }
            }
            previous = Some(sigma);
        }
        let jt_v = vector_jacobian_product(&y.tensor, &shaped(&v)?, &x.tensor, create_graph)?;
        let jt_v = jt_v.f_reshape([batch, -1])?;
        let u = unit_rows(&jt_v.f_detach()?)?;
        let sigma = jt_v.f_mul(&u)?.f_sum_dim_intlist(
            [1i64].as_slice(),
            false,
            accumulation_kind(jt_v.f_kind()?),
        )?;
        Ok(sigma)
    })
}

/// `factor` · reduce_b σ_max(J_b)²: the spectral regularizer.
pub fn squared_spectral(
    x: &Shaped,
    y: &Shaped,
    options: SpectralOptions,
    normal: &dyn Normal,
    interrupt: Interrupt,
) -> Result<Tensor> {
    let sigma = spectral_norms(x, y, options.power, options.create_graph, normal, interrupt)?;
    let batch = sigma.size1()?;
    reduce(
        &sigma.f_square()?,
        options.reduction,
        batch,
        options.factor.get(),
    )
}
