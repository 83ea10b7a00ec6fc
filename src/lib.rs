//! The native module `jacobian._native`: converts Python arguments and runs the regularizer without the GIL.

mod checks;
mod error;
mod regularizer;

use checks::Projections;
use error::Error;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBool;
use tch::Tensor;

/// The PyTorch release this build of tch links against; Python checks it before loading us.
const TORCH_VERSION: &str = "2.13.0";

fn tensor_arg(ob: &Bound<'_, PyAny>, name: &str, role: &str) -> PyResult<Tensor> {
    // SAFETY: `ob` is a live Python object for the duration of the call; pyobject_unpack checks
    // its type before reading it as a tensor.
    let tensor = unsafe { Tensor::pyobject_unpack(ob.as_ptr() as *mut tch::python::CPyObject) };
    match tensor.map_err(Error::from)? {
        Some(tensor) => Ok(tensor),
        None => Err(Error::type_error(format!(
            "{name} ({role}) must be a torch.Tensor, got {}",
            ob.get_type().name()?
        ))
        .into()),
    }
}

/// Reads a tensor's shape through Python: tch's `size()` panics on nested tensors and on tensors
/// with symbolic sizes (as torch.compile traces them), where Python raises an exception instead.
fn concrete_shape(ob: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<i64>> {
    let py = ob.py();
    let shape = ob.getattr(intern!(py, "shape")).ok();
    match shape.map(|shape| shape.extract::<Vec<i64>>()) {
        Some(Ok(shape)) => Ok(shape),
        _ => Err(Error::type_error(format!(
            "{name} must be a regular (strided) tensor with a concrete shape; nested tensors and \
             symbolic shapes are not supported"
        ))
        .into()),
    }
}

fn projections_arg(n: &Bound<'_, PyAny>) -> PyResult<Projections> {
    // bool is a subclass of int in Python, but JacobianReg(True) is a mistake, not n=1.
    if n.is_instance_of::<PyBool>() {
        return Err(Error::type_error("n must be an int, got a bool").into());
    }
    let value: i64 = n.extract().map_err(|_| {
        let type_name = n
            .get_type()
            .name()
            .map(|s| s.to_string())
            .unwrap_or_default();
        Error::type_error(format!(
            "n must be an int (a number of random projections, or -1 for the exact norm), \
             got {type_name}"
        ))
    })?;
    Ok(Projections::from_n(value)?)
}

/// Checks a number of projections and returns it as an int (see `jacobian._native.pyi`).
#[pyfunction]
fn check_projections(n: &Bound<'_, PyAny>) -> PyResult<i64> {
    Ok(projections_arg(n)?.n())
}

/// The Jacobian regularizer of `y` with respect to `x` (see `jacobian._native.pyi`).
#[pyfunction]
#[pyo3(signature = (x, y, n, create_graph = true))]
fn jacobian_reg<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    n: &Bound<'py, PyAny>,
    create_graph: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (x_ob, y_ob) = (x, y);
    let x = tensor_arg(x_ob, "x", "the model's input")?;
    let y = tensor_arg(y_ob, "y", "the model's output")?;
    concrete_shape(x_ob, "x")?;
    let y_shape = concrete_shape(y_ob, "y")?;
    let projections = projections_arg(n)?;
    // libtorch's Python engine refuses to run backward while this thread holds the GIL, and a
    // Python autograd.Function in the model needs the GIL on the engine's threads.
    let result = py.allow_threads(move || {
        let interrupt = || Python::with_gil(|py| py.check_signals()).map_err(Error::from);
        regularizer::jacobian_penalty(&x, &y, &y_shape, projections, create_graph, &interrupt)
    })?;
    let ptr = result.pyobject_wrap().map_err(Error::from)?;
    // SAFETY: pyobject_wrap returns a new reference to a torch.Tensor.
    Ok(unsafe { Bound::from_owned_ptr(py, ptr as *mut pyo3::ffi::PyObject) })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TORCH_VERSION", TORCH_VERSION)?;
    m.add_function(wrap_pyfunction!(jacobian_reg, m)?)?;
    m.add_function(wrap_pyfunction!(check_projections, m)?)?;
    Ok(())
}
