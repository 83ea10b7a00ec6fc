//! Raises the core's errors in Python as the exception types a PyTorch user expects.

use crate::error::Error;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        match err {
            Error::Type(msg) => PyTypeError::new_err(msg),
            Error::Value(msg) => PyValueError::new_err(msg),
            Error::Runtime(msg) => PyRuntimeError::new_err(msg),
            // A callback's own exception (KeyboardInterrupt, a generator's error) as raised.
            Error::Callback(err) => match err.downcast::<PyErr>() {
                Ok(err) => *err,
                Err(err) => PyRuntimeError::new_err(err.to_string()),
            },
        }
    }
}

/// A Python exception raised inside a callback the core runs, carried through the core as is.
pub fn callback_error(err: PyErr) -> Error {
    Error::Callback(Box::new(err))
}
