//! Python objects every part of the binding names: the torch module, dicts, an object's type name.

use pyo3::prelude::*;
use pyo3::types::PyDict;

// pyo3 0.21 (the pyo3-tch of torch 2.5 and 2.6) and 0.24 name these differently; the `_bound`
// spellings exist in both (deprecated in 0.24).
#[allow(deprecated)]
pub fn torch_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import_bound("torch")
}

#[allow(deprecated)]
pub fn new_dict(py: Python<'_>) -> Bound<'_, PyDict> {
    PyDict::new_bound(py)
}

/// The name of an object's type, for messages (qualname: pyo3 0.21 under abi3 gives the module).
pub fn type_name(ob: &Bound<'_, PyAny>) -> String {
    ob.get_type()
        .qualname()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "an unknown type".to_owned())
}
