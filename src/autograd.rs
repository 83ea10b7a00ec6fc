//! Vector-Jacobian products on libtorch's autograd engine, guarded against roots it would crash on.

use crate::error::{Error, Result};
use tch::Tensor;

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
