//! The C++ shim (csrc/engine.cpp): autograd::grad with grad_outputs, and libtorch's exceptions and warnings kept whole.

use crate::error::{Error, Result};
use crate::exception::{RawException, TorchException};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::{null, null_mut, NonNull};
use tch::{Kind, Tensor};
use torch_sys::C_tensor;

#[repr(C)]
struct RawWarnings {
    _private: [u8; 0],
}

#[repr(C)]
struct RawScan {
    _private: [u8; 0],
}

extern "C" {
    fn jac_grad(
        output: *const C_tensor,
        input: *const C_tensor,
        grad_output: *const C_tensor,
        create_graph: bool,
        result: *mut *mut C_tensor,
        error: *mut *mut RawException,
    ) -> c_int;
    fn jac_grad_enabled() -> bool;
    fn jac_inference_mode_enabled() -> bool;
    fn jac_default_dtype() -> c_int;
    fn jac_scan_graph(
        output: *const C_tensor,
        input: *const C_tensor,
        find_compiled: bool,
        detach_retained_grad: bool,
        compiled: *mut bool,
        scan: *mut *mut RawScan,
        error: *mut *mut RawException,
    ) -> c_int;
    fn jac_scan_free(scan: *mut RawScan);
    fn jac_warnings_new() -> *mut RawWarnings;
    fn jac_warnings_free(warnings: *mut RawWarnings);
    fn jac_warnings_install(warnings: *mut RawWarnings) -> *mut c_void;
    fn jac_warnings_restore(previous: *mut c_void);
    fn jac_warnings_len(warnings: *const RawWarnings) -> usize;
    fn jac_warnings_get(
        warnings: *const RawWarnings,
        index: usize,
        deprecation: *mut bool,
        message: *mut *const c_char,
        file: *mut *const c_char,
        line: *mut u32,
        verbatim: *mut bool,
    );
}

/// The gradient of `output` with respect to `input` for the vector `grad_output` (None: ones,
/// for a scalar output), keeping the graph; None where no gradient reaches `input`.
///
/// One call of libtorch's `torch::autograd::grad`: the vector goes to the engine as it is,
/// with no `(output * v).sum()` built around it. The caller must make sure `output` records a
/// graph: libtorch's engine would dereference a missing grad_fn.
pub fn grad(
    output: &Tensor,
    input: &Tensor,
    grad_output: Option<&Tensor>,
    create_graph: bool,
) -> Result<Option<Tensor>> {
    let mut result: *mut C_tensor = null_mut();
    let mut error: *mut RawException = null_mut();
    let grad_output = grad_output.map_or(null(), Tensor::as_ptr);
    // SAFETY: the tensors outlive the call; the shim sets exactly one of result and error.
    let failed = unsafe {
        jac_grad(
            output.as_ptr(),
            input.as_ptr(),
            grad_output,
            create_graph,
            &mut result,
            &mut error,
        )
    };
    if failed != 0 {
        let raw = NonNull::new(error)
            .ok_or_else(|| Error::runtime_error("autograd failed without an exception"))?;
        // SAFETY: the shim made it for us and hands it over.
        return Err(Error::from_torch(unsafe { TorchException::from_raw(raw) }));
    }
    // SAFETY: a new at::Tensor the shim allocated for us; tch frees it.
    let grad = unsafe { Tensor::from_ptr(result) };
    Ok(Some(grad).filter(Tensor::defined))
}

/// Whether gradients are being recorded on this thread (`torch.is_grad_enabled()`).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { jac_grad_enabled() }
}

/// Whether `torch.inference_mode()` is on for this thread.
pub fn inference_mode_enabled() -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { jac_inference_mode_enabled() }
}

/// torch's default dtype (`torch.get_default_dtype()`), in which an unqualified `torch.randn`
/// draws: float32 unless `torch.set_default_dtype` changed it.
pub fn default_kind() -> Kind {
    // SAFETY: reads a process-wide setting.
    match unsafe { jac_default_dtype() } {
        // c10::ScalarType's numbering (tch keeps its own conversion private).
        5 => Kind::Half,
        7 => Kind::Double,
        15 => Kind::BFloat16,
        // float32; torch.set_default_dtype accepts floating-point dtypes only.
        _ => Kind::Float,
    }
}

/// What a walk of the graph from `y` to `x` found (see [`scan_graph`]).
pub struct GraphScan {
    /// A torch.compile'd function's backward lies between y and x: it cannot be differentiated
    /// again.
    pub compiled: bool,
    /// The retains_grad hooks taken off, put back when this is dropped.
    pub retained: RetainedGradHooks,
}

/// The retains_grad hooks (`t.retain_grad()`) of the nodes between y and x, taken off while the
/// regularizer runs its own backward passes, so that they leave nothing in `t.grad`; put back on
/// drop, so that the caller's own backward pass fills `t.grad` as usual.
pub struct RetainedGradHooks {
    raw: Option<NonNull<RawScan>>,
}

// The shim's object holds shared pointers to graph nodes and their hooks; only this thread puts
// them back, but the value may move with the call.
unsafe impl Send for RetainedGradHooks {}

impl Drop for RetainedGradHooks {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            // SAFETY: owned, freed once.
            unsafe { jac_scan_free(raw.as_ptr()) }
        }
    }
}

/// Walks the nodes of y's graph from which a gradient reaches x (the nodes the regularizer's
/// backward passes run): whether a torch.compile'd function's backward is among them (when
/// `find_compiled`), and, with `detach_retained_grad`, their retains_grad hooks, taken off until
/// the result is dropped.
pub fn scan_graph(
    y: &Tensor,
    x: &Tensor,
    find_compiled: bool,
    detach_retained_grad: bool,
) -> Result<GraphScan> {
    let mut error: *mut RawException = null_mut();
    let mut scan: *mut RawScan = null_mut();
    let mut compiled = false;
    // SAFETY: the tensors outlive the call; on 1 the shim sets error, else perhaps scan.
    let failed = unsafe {
        jac_scan_graph(
            y.as_ptr(),
            x.as_ptr(),
            find_compiled,
            detach_retained_grad,
            &mut compiled,
            &mut scan,
            &mut error,
        )
    };
    if failed != 0 {
        return Err(match NonNull::new(error) {
            // SAFETY: the shim made it for us and hands it over.
            Some(raw) => Error::from_torch(unsafe { TorchException::from_raw(raw) }),
            None => Error::runtime_error("reading y's graph failed"),
        });
    }
    Ok(GraphScan {
        compiled,
        retained: RetainedGradHooks {
            raw: NonNull::new(scan),
        },
    })
}

/// One libtorch warning, as torch's bindings hand it to Python.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// A DeprecationWarning; else a UserWarning.
    pub deprecation: bool,
    pub message: String,
    /// Where in libtorch it was raised.
    pub file: Option<String>,
    pub line: u32,
    /// Shown as is, attributed to `file`:`line`; else the location is appended to the message.
    pub verbatim: bool,
}

impl Warning {
    /// The message as torch's bindings show a non-verbatim warning.
    pub fn display_message(&self) -> String {
        match (&self.file, self.verbatim) {
            (Some(file), false) => format!(
                "{} (Triggered internally at {file}:{}.)",
                self.message, self.line
            ),
            _ => self.message.clone(),
        }
    }
}

/// Collects this thread's libtorch warnings while it lives (warnings that the autograd engine's
/// other threads raise are handed back to this one), instead of letting them go to stderr.
pub struct WarningCapture {
    raw: NonNull<RawWarnings>,
    previous: *mut c_void,
}

impl WarningCapture {
    pub fn start() -> Self {
        // SAFETY: a new handler, installed on this thread until `finish` or drop restores the
        // previous one; the capture cannot move to another thread (it is not Send).
        unsafe {
            let raw = NonNull::new(jac_warnings_new()).expect("the shim allocates a handler");
            let previous = jac_warnings_install(raw.as_ptr());
            WarningCapture { raw, previous }
        }
    }

    /// Stops collecting and returns the warnings, in the order they were raised.
    pub fn finish(self) -> Vec<Warning> {
        // SAFETY: restored on the installing thread (drop restores again: a no-op change).
        unsafe { jac_warnings_restore(self.previous) };
        let count = unsafe { jac_warnings_len(self.raw.as_ptr()) };
        (0..count).map(|index| self.get(index)).collect()
    }

    fn get(&self, index: usize) -> Warning {
        let (mut deprecation, mut verbatim, mut line) = (false, false, 0u32);
        let (mut message, mut file): (*const c_char, *const c_char) = (null(), null());
        // SAFETY: index < len; the strings live as long as the handler.
        unsafe {
            jac_warnings_get(
                self.raw.as_ptr(),
                index,
                &mut deprecation,
                &mut message,
                &mut file,
                &mut line,
                &mut verbatim,
            );
            let text = |ptr: *const c_char| {
                (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_string_lossy().into_owned())
            };
            Warning {
                deprecation,
                message: text(message).unwrap_or_default(),
                file: text(file),
                line,
                verbatim,
            }
        }
    }
}

impl Drop for WarningCapture {
    fn drop(&mut self) {
        // SAFETY: as in `finish`; then the handler, no longer installed, is freed.
        unsafe {
            jac_warnings_restore(self.previous);
            jac_warnings_free(self.raw.as_ptr());
        }
    }
}
