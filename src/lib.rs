//! Jacobian regularization on libtorch's autograd graph: a core that knows nothing of Python, and its binding.

// The core: options, checks, autograd (through the C++ shim in `engine`), numerics, directions
// and the two norms. Public for the Rust tests in tests/*.rs, which run it on libtorch alone.
pub mod autograd;
pub mod checks;
pub mod directions;
pub mod engine;
pub mod error;
pub mod exception;
pub mod frobenius;
pub mod numerics;
pub mod options;
pub mod spectral;

// The binding: converts Python objects, releases the GIL and registers `jacobian._native`.
mod python;
