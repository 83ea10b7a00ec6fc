//! Vector-Jacobian products on libtorch's autograd engine, guarded against roots it would crash on.

use crate::engine;
use crate::error::{Error, Result};
use tch::Tensor;

/// The gradient of `output` with respect to `input` for the vector `grad_output` (None: ones,
/// for a scalar output), keeping the graph; None where no gradient reaches `input`.
///
/// libtorch's engine dereferences the root's grad_fn unchecked, so an output that records no
/// graph (under torch.inference_mode(), or where every op on the way has a constant backward)
/// would crash the process: it is caught here instead.
pub fn gradient(
    output: &Tensor,
    input: &Tensor,
    grad_output: Option<&Tensor>,
    create_graph: bool,
) -> Result<Option<Tensor>> {
    if !output.requires_grad() {
        return Ok(None);
    }
    engine::grad(output, input, grad_output, create_graph)
}

/// vᵀJ: the gradient with respect to `x` of `y` weighted by `v` (y's shape), keeping y's graph
/// for later backward passes.
pub fn vector_jacobian_product(
    y: &Tensor,
    v: &Tensor,
    x: &Tensor,
    create_graph: bool,
) -> Result<Tensor> {
    if !y.requires_grad() {
        return Err(Error::inference_mode());
    }
    match gradient(y, x, Some(v), create_graph)? {
        Some(grad) => Ok(grad),
        None => Err(Error::runtime_error(
            "y does not depend on x: no gradient reaches x, so there is no Jacobian to \
             regularize; pass the tensor the model was called on (with requires_grad=True) and \
             the model's output computed from it",
        )),
    }
}
