//! The per-sample spectral norm (largest singular value) of the Jacobian, by power iteration.

use crate::autograd::{
    accumulation_kind, attached_zeros, gradient, tiny, unit_rows, vector_jacobian_product,
};
use crate::checks::{batch_and_size, check_inputs, check_same_batch};
use crate::error::Result;
use crate::Interrupt;
use tch::Tensor;

/// Stopping rule of the power iteration.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The most power iterations to run (at least 1).
    pub iters: i64,
    /// Stop once no sample's estimate moved by more than this relative amount (0: run all).
    pub tol: f64,
    /// Build the double-backward graph, so the result is differentiable.
    pub create_graph: bool,
}

/// σ_max(J_b) for each sample b, for the Jacobian J of `y` ([B, ...]) with respect to `x`.
///
/// Alternates vector-Jacobian products u = Jᵀv and Jacobian-vector products Ju (the latter as
/// the derivative of uᵀ(Jᵀv) with respect to v). The returned σ_b = v_bᵀ J_b u_b is
/// differentiable at the final singular vectors, which are held fixed, as in spectral
/// normalisation. `noise`, when given, is the caller's standard normal start [B, C].
pub fn spectral(
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
    check_same_batch(x_shape, batch, "the spectral norm")?;
    if batch == 0 || per_sample == 0 {
        return attached_zeros(y, batch, per_sample);
    }
    tch::with_grad(|| -> Result<Tensor> {
        let y2d = y.f_reshape([batch, per_sample])?;
        let start = match noise {
            Some(noise) => noise,
            // One output per sample: its only directions are ±1, and no draw is needed.
            None if per_sample == 1 => Tensor::f_ones([batch, 1], (kind, y.device()))?,
            None => Tensor::f_randn([batch, per_sample], (kind, y.device()))?,
        };
        let mut v = unit_rows(&start)?;
        let mut previous: Option<Tensor> = None;
        for iteration in 0..options.iters {
            if iteration > 0 {
                interrupt()?;
            }
            let v_var = v.f_detach()?.f_set_requires_grad(true)?;
            let jt_v = vector_jacobian_product(&y2d.f_mul(&v_var)?.f_sum(None)?, x, true)?;
            let jt_v = jt_v.f_reshape([batch, -1])?;
            let u = unit_rows(&jt_v.f_detach()?)?;
            let u_jt_v = jt_v.f_mul(&u)?.f_sum(None)?;
            let j_u = match gradient(&u_jt_v, &v_var, false)? {
                Some(grad) => grad,
                // Jᵀv does not depend on v only where the Jacobian is zero everywhere.
                None => v.f_zeros_like()?,
            };
            let sigma = j_u.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), false)?;
            v = unit_rows(&j_u)?;
            if options.tol > 0.0 {
                if let Some(previous) = &previous {
                    let change = sigma
                        .f_sub(previous)?
                        .f_abs()?
                        .f_div(&sigma.f_clamp_min(tiny(sigma.f_kind()?))?)?
                        .f_max()?
                        .f_double_value(&[])?;
                    if change <= options.tol {
                        break;
                    }
                }
            }
            previous = Some(sigma);
        }
        let jt_v = vector_jacobian_product(&y2d.f_mul(&v)?.f_sum(None)?, x, options.create_graph)?;
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
