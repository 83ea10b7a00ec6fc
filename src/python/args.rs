//! Converts Python arguments to the core's types, with TypeErrors that name the argument and the fix.

use super::errors::callback_error;
use super::torch::type_name;
use crate::checks::Shaped;
use crate::error::Error;
use crate::options::{PowerIteration, ProjectionCount, Reduction, Sampling};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};
use pyo3_tch::PyTensor;

/// A tensor argument with its shape, read through Python: tch's `size()` panics on nested
/// tensors and on symbolic shapes (as torch.compile traces them), where Python raises instead.
pub fn tensor(ob: &Bound<'_, PyAny>, name: &str, role: &str) -> PyResult<Shaped> {
    let PyTensor(tensor) = ob.extract().map_err(|err: PyErr| {
        if err.is_instance_of::<pyo3::exceptions::PyTypeError>(ob.py()) {
            Error::type_error(format!(
                "{name} ({role}) must be a torch.Tensor, got {}",
                type_name(ob)
            ))
            .into()
        } else {
            err
        }
    })?;
    let shape = ob.getattr(intern!(ob.py(), "shape")).ok();
    match shape.map(|shape| shape.extract::<Vec<i64>>()) {
        Some(Ok(shape)) => Ok(Shaped { tensor, shape }),
        _ => Err(Error::type_error(format!(
            "{name} must be a regular (strided) tensor with a concrete shape; nested tensors and \
             symbolic shapes are not supported"
        ))
        .into()),
    }
}

/// x (the model's input) and y (its output).
pub fn operands(x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<(Shaped, Shaped)> {
    Ok((
        tensor(x, "x", "the model's input")?,
        tensor(y, "y", "the model's output")?,
    ))
}

/// An int (numpy's integers included, through __index__), but not a bool: n=True is a mistake.
pub fn int(ob: &Bound<'_, PyAny>, name: &str, meaning: &str) -> PyResult<i64> {
    let not_an_int = || {
        Error::type_error(format!(
            "{name} must be an int ({meaning}), got {}",
            type_name(ob)
        ))
    };
    if ob.is_instance_of::<PyBool>() {
        return Err(not_an_int().into());
    }
    ob.extract().map_err(|_| {
        if ob.is_instance_of::<PyInt>() {
            Error::value_error(format!(
                "{name} is too large: it must fit in 64 bits ({meaning})"
            ))
        } else {
            not_an_int()
        }
        .into()
    })
}

/// A float (ints and numpy's floats included), but not a bool or a str.
pub fn float(ob: &Bound<'_, PyAny>, name: &str) -> PyResult<f64> {
    let not_a_float =
        || Error::type_error(format!("{name} must be a float, got {}", type_name(ob)));
    if ob.is_instance_of::<PyBool>() || ob.is_instance_of::<PyString>() {
        return Err(not_a_float().into());
    }
    ob.extract().map_err(|_| not_a_float().into())
}

fn string(ob: &Bound<'_, PyAny>, name: &str) -> PyResult<String> {
    let s = ob.downcast::<PyString>().map_err(|_| {
        PyErr::from(Error::type_error(format!(
            "{name} must be a str, got {}",
            type_name(ob)
        )))
    })?;
    Ok(s.to_cow()?.into_owned())
}

pub fn count(n: &Bound<'_, PyAny>) -> PyResult<ProjectionCount> {
    let meaning = "a number of random projections, or -1 for the exact norm";
    Ok(ProjectionCount::from_n(int(n, "n", meaning)?)?)
}

pub fn sampling(projection: &Bound<'_, PyAny>) -> PyResult<Sampling> {
    Ok(Sampling::parse(&string(projection, "projection")?)?)
}

pub fn reduction(reduction: &Bound<'_, PyAny>) -> PyResult<Reduction> {
    Ok(Reduction::parse(&string(reduction, "reduction")?)?)
}

pub fn power_iteration(
    iters: &Bound<'_, PyAny>,
    tol: &Bound<'_, PyAny>,
) -> PyResult<PowerIteration> {
    let iters = int(iters, "iters", "the most power iterations to run")?;
    Ok(PowerIteration::new(iters, float(tol, "tol")?)?)
}

/// Checks for Ctrl-C between projections; runs on a thread without the GIL, so it takes it.
pub fn interrupt() -> crate::error::Result<()> {
    Python::with_gil(|py| py.check_signals()).map_err(callback_error)
}
