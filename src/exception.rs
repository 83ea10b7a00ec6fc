//! An exception libtorch threw, as the C++ shim keeps it: its message and whether it is c10's.

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

/// The shim's exception object (a std::exception_ptr and its message).
#[repr(C)]
pub struct RawException {
    _private: [u8; 0],
}

extern "C" {
    fn jac_exception_message(error: *const RawException) -> *const c_char;
    fn jac_exception_kind(error: *const RawException) -> c_int;
    fn jac_exception_free(error: *mut RawException);
}

/// An exception libtorch threw, kept whole, so that the binding can raise it as torch itself
/// would: a Python hook's own exception as that exception, c10's typed errors as their types.
pub struct TorchException {
    raw: NonNull<RawException>,
}

// The shim's object holds a std::exception_ptr and a string, which may move between threads.
unsafe impl Send for TorchException {}
unsafe impl Sync for TorchException {}

impl TorchException {
    /// Takes ownership of an object the shim made.
    ///
    /// # Safety
    /// `raw` must come from the shim and be owned by no one else.
    pub(crate) unsafe fn from_raw(raw: NonNull<RawException>) -> Self {
        TorchException { raw }
    }

    /// The shim's object, for the binding to raise (it stays owned here).
    pub fn as_raw(&self) -> *const RawException {
        self.raw.as_ptr()
    }

    /// The message, without libtorch's C++ backtrace.
    pub fn message(&self) -> &str {
        // SAFETY: the shim keeps the message alive, NUL-terminated, as long as the object.
        let message = unsafe { CStr::from_ptr(jac_exception_message(self.raw.as_ptr())) };
        std::str::from_utf8(message.to_bytes()).unwrap_or("libtorch error (message not UTF-8)")
    }

    /// Whether it is one of c10's errors (a RuntimeError or one of its typed subclasses), as
    /// opposed to another C++ exception, such as a Python exception raised inside libtorch.
    pub fn is_c10_error(&self) -> bool {
        // SAFETY: a live object made by the shim.
        unsafe { jac_exception_kind(self.raw.as_ptr()) == 0 }
    }
}

impl Drop for TorchException {
    fn drop(&mut self) {
        // SAFETY: owned, freed once. Freeing a Python exception takes the GIL in the shim.
        unsafe { jac_exception_free(self.raw.as_ptr()) }
    }
}

impl std::fmt::Debug for TorchException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TorchException({:?})", self.message())
    }
}
