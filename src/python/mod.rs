//! The module `jacobian._native`: its functions convert arguments, release the GIL and call the core.

mod args;
mod draws;
mod errors;
mod torch;

use crate::directions::{DefaultGenerator, Draws, Normal};
use crate::engine::{self, WarningCapture};
use crate::options::{check_own_directions, Factor, FrobeniusOptions, SpectralOptions};
use crate::{frobenius, spectral};
use draws::{CallerDirections, Generator};
use pyo3::prelude::*;
use tch::Tensor;

/// The torch release whose headers this build was compiled against (found by build.rs).
const TORCH_VERSION: &str = env!("JACOBIAN_TORCH_VERSION");

/// Runs `work` without the GIL, with the caller's generator or torch's default one, and returns
/// its tensor to Python. libtorch's Python engine refuses to run backward while this thread holds
/// the GIL, and a Python autograd.Function in the model needs the GIL on the engine's threads.
/// libtorch's warnings meanwhile are collected, then issued as Python warnings.
fn run_without_gil<'py>(
    py: Python<'py>,
    generator: Option<Generator>,
    work: impl FnOnce(&dyn Normal) -> crate::error::Result<Tensor> + Send,
) -> PyResult<Bound<'py, PyAny>> {
    let capture = WarningCapture::start();
    let result = py.allow_threads(move || match &generator {
        Some(generator) => work(generator),
        None => work(&DefaultGenerator),
    });
    errors::issue_warnings(py, capture.finish(), result.is_err())?;
    let result = result?;
    let ptr = result.pyobject_wrap().map_err(crate::error::Error::from)?;
    // SAFETY: pyobject_wrap returns a new reference to a torch.Tensor.
    Ok(unsafe { Bound::from_owned_ptr(py, ptr as *mut pyo3::ffi::PyObject) })
}

/// The Frobenius estimate's options, from Python arguments.
fn frobenius_options(
    n: &Bound<'_, PyAny>,
    projection: &Bound<'_, PyAny>,
    reduction: &Bound<'_, PyAny>,
    factor: f64,
    create_graph: bool,
) -> PyResult<FrobeniusOptions> {
    Ok(FrobeniusOptions {
        count: args::count(n)?,
        sampling: args::sampling(projection)?,
        reduction: args::reduction(reduction)?,
        factor: Factor::new(factor)?,
        create_graph,
    })
}

/// factor · reduce_b ‖J_b‖²_F, estimated (see `jacobian._native.pyi`).
#[pyfunction]
#[pyo3(signature = (x, y, n, projection, reduction, factor = 0.5, generator = None, directions = None))]
#[allow(clippy::too_many_arguments)]
fn frobenius_sq<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    n: &Bound<'py, PyAny>,
    projection: &Bound<'py, PyAny>,
    reduction: &Bound<'py, PyAny>,
    factor: f64,
    generator: Option<&Bound<'py, PyAny>>,
    directions: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (x, y) = args::operands(x, y)?;
    // Differentiable while gradients are enabled; under no_grad, for logging, no graph is built.
    let options = frobenius_options(n, projection, reduction, factor, engine::grad_enabled())?;
    let generator = Generator::from_arg(generator)?;
    let directions = CallerDirections::from_arg(directions)?;
    if directions.is_some() {
        check_own_directions(options.sampling, generator.is_some())?;
    }
    run_without_gil(py, generator, move |normal| {
        let given = |per_sample, batch| match &directions {
            Some(directions) => directions.call(per_sample, batch),
            None => Err(crate::error::Error::runtime_error("no caller directions")),
        };
        let draws = match &directions {
            Some(_) => Draws::Given(&given),
            None => Draws::Normal(normal),
        };
        frobenius::squared_frobenius(&x, &y, options, draws, &args::interrupt)
    })
}

/// σ_max(J_b) per sample, by power iteration (see `jacobian._native.pyi`).
#[pyfunction]
#[pyo3(signature = (x, y, iters, tol, generator = None))]
fn spectral_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    iters: &Bound<'py, PyAny>,
    tol: &Bound<'py, PyAny>,
    generator: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (x, y) = args::operands(x, y)?;
    let power = args::power_iteration(iters, tol)?;
    let create_graph = engine::grad_enabled();
    let generator = Generator::from_arg(generator)?;
    run_without_gil(py, generator, move |normal| {
        spectral::spectral_norms(&x, &y, power, create_graph, normal, &args::interrupt)
    })
}

/// factor · reduce_b σ_max(J_b)² (see `jacobian._native.pyi`).
#[pyfunction]
#[pyo3(signature = (x, y, iters, tol, reduction, factor = 0.5, generator = None))]
#[allow(clippy::too_many_arguments)]
fn spectral_sq<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    iters: &Bound<'py, PyAny>,
    tol: &Bound<'py, PyAny>,
    reduction: &Bound<'py, PyAny>,
    factor: f64,
    generator: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (x, y) = args::operands(x, y)?;
    let options = SpectralOptions {
        power: args::power_iteration(iters, tol)?,
        reduction: args::reduction(reduction)?,
        factor: Factor::new(factor)?,
        create_graph: engine::grad_enabled(),
    };
    let generator = Generator::from_arg(generator)?;
    run_without_gil(py, generator, move |normal| {
        spectral::squared_spectral(&x, &y, options, normal, &args::interrupt)
    })
}

/// Whether a torch.compile'd function's backward lies between y and x in y's graph (see
/// `jacobian._native.pyi`).
#[pyfunction]
fn compiled_function_between(x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<bool> {
    let (x, y) = args::operands(x, y)?;
    Ok(engine::scan_graph(&y.tensor, &x.tensor, true, false)?.compiled)
}

/// Checks the Frobenius regularizer's options as `frobenius_sq` does; returns n.
#[pyfunction]
#[pyo3(signature = (n, projection, reduction, generator = None, own_directions = false))]
fn check_frobenius_options(
    n: &Bound<'_, PyAny>,
    projection: &Bound<'_, PyAny>,
    reduction: &Bound<'_, PyAny>,
    generator: Option<&Bound<'_, PyAny>>,
    own_directions: bool,
) -> PyResult<i64> {
    let options = frobenius_options(n, projection, reduction, 0.5, true)?;
    let generator = Generator::from_arg(generator)?;
    if own_directions {
        check_own_directions(options.sampling, generator.is_some())?;
    }
    Ok(options.count.n())
}

/// Checks the spectral regularizer's options as `spectral_sq` does.
#[pyfunction]
#[pyo3(signature = (iters, tol, reduction, generator = None))]
fn check_spectral_options(
    iters: &Bound<'_, PyAny>,
    tol: &Bound<'_, PyAny>,
    reduction: &Bound<'_, PyAny>,
    generator: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    args::power_iteration(iters, tol)?;
    args::reduction(reduction)?;
    Generator::from_arg(generator)?;
    Ok(())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TORCH_VERSION", TORCH_VERSION)?;
    m.add_function(wrap_pyfunction!(frobenius_sq, m)?)?;
    m.add_function(wrap_pyfunction!(spectral_norm, m)?)?;
    m.add_function(wrap_pyfunction!(spectral_sq, m)?)?;
    m.add_function(wrap_pyfunction!(compiled_function_between, m)?)?;
    m.add_function(wrap_pyfunction!(check_frobenius_options, m)?)?;
    m.add_function(wrap_pyfunction!(check_spectral_options, m)?)?;
    Ok(())
}
