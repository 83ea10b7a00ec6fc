//! Raises the core's errors in Python as torch's own bindings would, and routes libtorch's warnings to `warnings`.

use super::torch::torch_module;
use crate::engine::Warning;
use crate::error::Error;
use crate::exception::RawException;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::ffi::CString;

extern "C" {
    /// Sets Python's error indicator for the exception, as torch's bindings do
    /// (`HANDLE_TH_ERRORS`): a Python exception as raised, c10's typed errors as their types.
    /// The calling thread must hold the GIL.
    fn jac_exception_set_python_error(error: *const RawException);
}

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        match err {
            Error::Type(msg) => PyTypeError::new_err(msg),
            Error::Value(msg) => PyValueError::new_err(msg),
            Error::Runtime(msg) => Python::with_gil(|py| runtime_error(py, msg)),
            // The exception a Python hook raised, as raised (with its traceback); c10's typed
            // errors as torch maps them (torch.OutOfMemoryError, NotImplementedError, ...).
            Error::Torch(exception) => Python::with_gil(|py| {
                // SAFETY: the GIL is held; the exception stays alive for the call.
                unsafe { jac_exception_set_python_error(exception.as_raw()) };
                PyErr::take(py)
                    .unwrap_or_else(|| PyRuntimeError::new_err(exception.message().to_owned()))
            }),
            // A callback's own exception (KeyboardInterrupt, a generator's error) as raised.
            Error::Callback(err) => match err.downcast::<PyErr>() {
                Ok(err) => *err,
                Err(err) => PyRuntimeError::new_err(err.to_string()),
            },
        }
    }
}

/// A RuntimeError, or torch.OutOfMemoryError for an allocation that failed in one of tch's own
/// calls (which keep only the message; the engine's calls keep the typed exception).
fn runtime_error(py: Python<'_>, msg: String) -> PyErr {
    if msg.starts_with("CUDA out of memory") {
        let oom = torch_module(py)
            .and_then(|torch| torch.getattr("OutOfMemoryError"))
            .and_then(|oom| oom.call1((msg.as_str(),)));
        if let Ok(oom) = oom {
            return from_value(oom);
        }
    }
    PyRuntimeError::new_err(msg)
}

// pyo3 0.21 (the pyo3-tch of torch 2.5 and 2.6) has only the `_bound` spelling.
#[allow(deprecated)]
fn from_value(exception: Bound<'_, PyAny>) -> PyErr {
    PyErr::from_value_bound(exception)
}

/// A Python exception raised inside a callback the core runs, carried through the core as is.
pub fn callback_error(err: PyErr) -> Error {
    Error::Callback(Box::new(err))
}

/// Issues libtorch's warnings as Python warnings, as torch's `PyWarningHandler` does, so that
/// filters, `-W error`, pytest and logging see them. A warning that a filter turns into an
/// exception is returned, unless the call already failed: then it is printed, as torch does.
pub fn issue_warnings(py: Python<'_>, warnings: Vec<Warning>, call_failed: bool) -> PyResult<()> {
    for warning in warnings {
        if let Err(err) = issue(py, &warning) {
            if call_failed {
                err.print(py);
            } else {
                return Err(err);
            }
        }
    }
    Ok(())
}

fn issue(py: Python<'_>, warning: &Warning) -> PyResult<()> {
    let text = |s: String| CString::new(s.replace('\0', " ")).expect("NUL bytes replaced");
    // SAFETY: the GIL is held; the category objects are Python's own, never freed.
    let status = unsafe {
        let category = if warning.deprecation {
            pyo3::ffi::PyExc_DeprecationWarning
        } else {
            pyo3::ffi::PyExc_UserWarning
        };
        match (&warning.file, warning.verbatim) {
            (Some(file), true) => {
                let (message, file) = (text(warning.message.clone()), text(file.clone()));
                pyo3::ffi::PyErr_WarnExplicit(
                    category,
                    message.as_ptr(),
                    file.as_ptr(),
                    warning.line as std::ffi::c_int,
                    std::ptr::null(),
                    std::ptr::null_mut(),
                )
            }
            _ => {
                let message = text(warning.display_message());
                // Attributed to the Python line that called us, as torch does for its own.
                pyo3::ffi::PyErr_WarnEx(category, message.as_ptr(), 1)
            }
        }
    };
    if status < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}
