//! The native module `jacobian._native`: converts Python arguments and runs the regularizers without the GIL.

// Public for the Rust tests in tests/*.rs; Python sees only the functions registered below.
pub mod autograd;
pub mod checks;
pub mod directions;
pub mod error;
pub mod frobenius;
pub mod spectral;

use checks::{check_noise, Projection, Projections, Reduction};
use error::Error;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};
use tch::Tensor;

/// The PyTorch release this build of tch links against (set in `.cargo/config.toml`); Python
/// checks it before loading us.
const TORCH_VERSION: &str = env!("JACOBIAN_TORCH_VERSION");

/// A callback run between projections or iterations; it lets Ctrl-C through on long calls.
pub type Interrupt<'a> = &'a dyn Fn() -> error::Result<()>;

/// A tensor argument with its shape, read through Python: tch's `size()` panics on nested tensors
/// and on symbolic shapes (as torch.compile traces them), where Python raises instead.
struct TensorArg {
    tensor: Tensor,
    shape: Vec<i64>,
}

fn type_name(ob: &Bound<'_, PyAny>) -> String {
    ob.get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "an unknown type".to_owned())
}

fn tensor_arg(ob: &Bound<'_, PyAny>, name: &str, role: &str) -> PyResult<TensorArg> {
    // SAFETY: `ob` is a live Python object for the duration of the call; pyobject_unpack checks
    // its type before reading it as a tensor.
    let tensor = unsafe { Tensor::pyobject_unpack(ob.as_ptr() as *mut tch::python::CPyObject) };
    let tensor = match tensor.map_err(Error::from)? {
        Some(tensor) => tensor,
        None => {
            return Err(Error::type_error(format!(
                "{name} ({role}) must be a torch.Tensor, got {}",
                type_name(ob)
            ))
            .into())
        }
    };
    let shape = ob.getattr(intern!(ob.py(), "shape")).ok();
    match shape.map(|shape| shape.extract::<Vec<i64>>()) {
        Some(Ok(shape)) => Ok(TensorArg { tensor, shape }),
        _ => Err(Error::type_error(format!(
            "{name} must be a regular (strided) tensor with a concrete shape; nested tensors and \
             symbolic shapes are not supported"
        ))
        .into()),
    }
}

fn optional_tensor_arg(ob: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<TensorArg>> {
    match ob {
        Some(ob) if !ob.is_none() => Ok(Some(tensor_arg(ob, name, "the random draws")?)),
        _ => Ok(None),
    }
}

fn int_arg(ob: &Bound<'_, PyAny>, name: &str, meaning: &str) -> PyResult<i64> {
    // bool is a subclass of int in Python, but n=True is a mistake, not n=1. Other integer types
    // (numpy's among them) convert through __index__.
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

fn str_arg<'py>(ob: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyString>> {
    ob.downcast::<PyString>().cloned().map_err(|_| {
        Error::type_error(format!("{name} must be a str, got {}", type_name(ob))).into()
    })
}

fn projections_arg(n: &Bound<'_, PyAny>) -> PyResult<Projections> {
    let meaning = "a number of random projections, or -1 for the exact norm";
    Ok(Projections::from_n(int_arg(n, "n", meaning)?)?)
}

fn projection_arg(projection: &Bound<'_, PyAny>) -> PyResult<Projection> {
    Ok(Projection::parse(
        &str_arg(projection, "projection")?.to_cow()?,
    )?)
}

fn reduction_arg(reduction: &Bound<'_, PyAny>) -> PyResult<Reduction> {
    Ok(Reduction::parse(
        &str_arg(reduction, "reduction")?.to_cow()?,
    )?)
}

fn spectral_options(
    iters: &Bound<'_, PyAny>,
    tol: &Bound<'_, PyAny>,
    create_graph: bool,
) -> PyResult<spectral::Options> {
    let iters = int_arg(iters, "iters", "the most power iterations to run")?;
    if iters < 1 {
        return Err(Error::value_error(format!("iters must be at least 1, got {iters}")).into());
    }
    let not_a_float = || Error::type_error(format!("tol must be a float, got {}", type_name(tol)));
    if tol.is_instance_of::<PyBool>() || tol.is_instance_of::<PyString>() {
        return Err(not_a_float().into());
    }
    let tol: f64 = tol.extract().map_err(|_| not_a_float())?;
    if !(tol.is_finite() && tol >= 0.0) {
        return Err(Error::value_error(format!(
            "tol must be a finite number >= 0 (0 runs every iteration), got {tol}"
        ))
        .into());
    }
    Ok(spectral::Options {
        iters,
        tol,
        create_graph,
    })
}

/// Checks the options of the Frobenius regularizer; returns n (see `jacobian._native.pyi`).
#[pyfunction]
#[pyo3(signature = (n, projection, reduction))]
fn check_options(
    n: &Bound<'_, PyAny>,
    projection: &Bound<'_, PyAny>,
    reduction: &Bound<'_, PyAny>,
) -> PyResult<i64> {
    projection_arg(projection)?;
    reduction_arg(reduction)?;
    Ok(projections_arg(n)?.n())
}

/// Checks a reduction's name (see `jacobian._native.pyi`).
#[pyfunction]
fn check_reduction(reduction: &Bound<'_, PyAny>) -> PyResult<()> {
    reduction_arg(reduction)?;
    Ok(())
}

/// Checks the options of the spectral regularizer (see `jacobian._native.pyi`).
#[pyfunction]
fn check_spectral_options(iters: &Bound<'_, PyAny>, tol: &Bound<'_, PyAny>) -> PyResult<()> {
    spectral_options(iters, tol, false)?;
    Ok(())
}

fn wrap(py: Python<'_>, tensor: Tensor) -> PyResult<Bound<'_, PyAny>> {
    let ptr = tensor.pyobject_wrap().map_err(Error::from)?;
    // SAFETY: pyobject_wrap returns a new reference to a torch.Tensor.
    Ok(unsafe { Bound::from_owned_ptr(py, ptr as *mut pyo3::ffi::PyObject) })
}

/// Caller-drawn noise of shape `leading` + [B, C], checked, or None when none was passed. x and y
/// are checked first, so that a bad y is reported as such rather than as bad noise drawn from it.
fn noise_tensor(
    noise: Option<&Bound<'_, PyAny>>,
    leading: &[i64],
    x: &TensorArg,
    y: &TensorArg,
) -> PyResult<Option<Tensor>> {
    let Some(noise) = optional_tensor_arg(noise, "noise")? else {
        return Ok(None);
    };
    checks::check_inputs(&x.tensor, &y.tensor)?;
    let (batch, size) = checks::batch_and_size(&y.shape)?;
    let expected = [leading, &[batch, size]].concat();
    check_noise(&noise.tensor, &noise.shape, &expected, &y.tensor)?;
    Ok(Some(noise.tensor))
}

fn interrupt() -> error::Result<()> {
    Python::with_gil(|py| py.check_signals()).map_err(Error::from)
}

/// The Frobenius-norm regularizer of `y` with respect to `x` (see `jacobian._native.pyi`).
#[pyfunction]
#[pyo3(signature = (x, y, n, projection, reduction, factor = 0.5, noise = None, create_graph = true))]
#[pyo3(name = "frobenius")]
#[allow(clippy::too_many_arguments)]
fn frobenius_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    n: &Bound<'py, PyAny>,
    projection: &Bound<'py, PyAny>,
    reduction: &Bound<'py, PyAny>,
    factor: f64,
    noise: Option<&Bound<'py, PyAny>>,
    create_graph: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let x = tensor_arg(x, "x", "the model's input")?;
    let y = tensor_arg(y, "y", "the model's output")?;
    let options = frobenius::Options {
        projections: projections_arg(n)?,
        projection: projection_arg(projection)?,
        reduction: reduction_arg(reduction)?,
        factor,
        create_graph,
    };
    let noise = match options.projections {
        Projections::Random(n) => noise_tensor(noise, &[n], &x, &y)?,
        Projections::Exact => {
            // Exact mode draws nothing; noise is only checked to be a tensor.
            optional_tensor_arg(noise, "noise")?;
            None
        }
    };
    // libtorch's Python engine refuses to run backward while this thread holds the GIL, and a
    // Python autograd.Function in the model needs the GIL on the engine's threads.
    let result = py.allow_threads(move || {
        frobenius::frobenius(
            &x.tensor, &x.shape, &y.tensor, &y.shape, options, noise, &interrupt,
        )
    })?;
    wrap(py, result)
}

/// The per-sample spectral norm of the Jacobian of `y` with respect to `x` (see the stub).
#[pyfunction]
#[pyo3(signature = (x, y, iters, tol, noise = None, create_graph = true))]
#[pyo3(name = "spectral")]
fn spectral_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    iters: &Bound<'py, PyAny>,
    tol: &Bound<'py, PyAny>,
    noise: Option<&Bound<'py, PyAny>>,
    create_graph: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let x = tensor_arg(x, "x", "the model's input")?;
    let y = tensor_arg(y, "y", "the model's output")?;
    let options = spectral_options(iters, tol, create_graph)?;
    let noise = noise_tensor(noise, &[], &x, &y)?;
    let result = py.allow_threads(move || {
        spectral::spectral(
            &x.tensor, &x.shape, &y.tensor, &y.shape, options, noise, &interrupt,
        )
    })?;
    wrap(py, result)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TORCH_VERSION", TORCH_VERSION)?;
    m.add_function(wrap_pyfunction!(frobenius_py, m)?)?;
    m.add_function(wrap_pyfunction!(spectral_py, m)?)?;
    m.add_function(wrap_pyfunction!(check_options, m)?)?;
    m.add_function(wrap_pyfunction!(check_spectral_options, m)?)?;
    m.add_function(wrap_pyfunction!(check_reduction, m)?)?;
    Ok(())
}
