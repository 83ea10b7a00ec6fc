//! Up-front checks of the input and output tensors, so misuse fails with a message that names the fix.

use crate::engine::{self, RetainedGradHooks};
use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

/// A tensor with its shape, read by the caller: tch's `size()` panics on nested tensors and on
/// symbolic shapes (as torch.compile traces them), where Python raises instead.
pub struct Shaped {
    pub tensor: Tensor,
    pub shape: Vec<i64>,
}

impl Shaped {
    /// A tensor whose shape is known to be concrete (one created in Rust).
    pub fn new(tensor: Tensor) -> Self {
        let shape = tensor.size();
        Shaped { tensor, shape }
    }
}

/// PyTorch's spelling of a device, as in `torch.device(...)`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(index) => format!("cuda:{index}"),
        Device::Mps => "mps".to_owned(),
        Device::Vulkan => "vulkan".to_owned(),
    }
}

/// PyTorch's own spelling of a dtype, so messages read like the rest of a user's traceback.
pub fn dtype_name(kind: Kind) -> String {
    let name = match kind {
        Kind::Uint8 => "uint8",
        Kind::Int8 => "int8",
        Kind::Int16 => "int16",
        Kind::Int => "int32",
        Kind::Int64 => "int64",
        Kind::Half => "float16",
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::ComplexHalf => "complex32",
        Kind::ComplexFloat => "complex64",
        Kind::ComplexDouble => "complex128",
        Kind::Bool => "bool",
        Kind::BFloat16 => "bfloat16",
        other => return format!("{other:?}"),
    };
    format!("torch.{name}")
}

fn is_real_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
    )
}

pub fn check_dtype(t: &Tensor, name: &str, role: &str) -> Result<Kind> {
    let kind = t.f_kind().map_err(|_| {
        Error::type_error(format!(
            "{name} ({role}) has a dtype this library does not support; use float32, float64, \
             float16 or bfloat16"
        ))
    })?;
    if !is_real_float(kind) {
        return Err(Error::type_error(format!(
            "{name} ({role}) must be a real floating-point tensor (float32, float64, float16 or \
             bfloat16), got {}; integer, boolean and complex tensors have no Jacobian to \
             regularize",
            dtype_name(kind)
        )));
    }
    Ok(kind)
}

pub fn check_device(t: &Tensor, name: &str) -> Result<Device> {
    match t.device() {
        // tch reports every device type other than CPU and CUDA as one of these two.
        Device::Mps | Device::Vulkan => Err(Error::runtime_error(format!(
            "{name} is on a device this library does not support; move it to the CPU or a CUDA \
             device"
        ))),
        device => Ok(device),
    }
}

/// Refuses inference mode, which forbids the backward passes everything here runs (checked
/// before anything else, so that an empty batch fails like any other).
pub fn check_autograd_state() -> Result<()> {
    if engine::inference_mode_enabled() {
        return Err(Error::inference_mode());
    }
    Ok(())
}

/// The message for a y whose graph holds a torch.compile'd function between it and x, when `what`
/// (the spectral norm's power iteration) needs that function's backward differentiated again,
/// which torch.compile does not support. (The Frobenius norm needs it only for its gradient: the
/// Python layer computes its value and refuses the backward instead.)
pub fn compiled_message(what: &str) -> String {
    format!(
        "y comes from a torch.compile'd function: torch.compile does not support double \
         backward, which {what} needs; call it inside the same torch.compile'd function as the \
         model, with tol=0 (it is then traced into the same graph; the early stop reads values \
         back, which a graph cannot), or run the model uncompiled where it is used (for a \
         compiled module, `model._orig_mod(data)`)"
    )
}

/// Walks y's graph back to x: refuses a torch.compile'd function between them when `needs` names
/// what would differentiate its backward again, and takes the retains_grad hooks off until the
/// returned guard is dropped.
pub fn scan_graph(x: &Tensor, y: &Tensor, needs: Option<&str>) -> Result<RetainedGradHooks> {
    let scan = engine::scan_graph(y, x, needs.is_some(), true)?;
    match needs {
        Some(what) if scan.compiled => Err(Error::runtime_error(compiled_message(what))),
        _ => Ok(scan.retained),
    }
}

/// Checks `x` and `y` and returns y's dtype.
pub fn check_inputs(x: &Tensor, y: &Tensor) -> Result<Kind> {
    if x.is_sparse() || y.is_sparse() || x.is_mkldnn() || y.is_mkldnn() {
        return Err(Error::type_error(
            "x and y must be dense (strided) tensors; convert with .to_dense()",
        ));
    }
    check_dtype(x, "x", "the model's input")?;
    let kind = check_dtype(y, "y", "the model's output")?;
    if y.dim() == 0 {
        return Err(Error::value_error(
            "y is 0-d, so it has no batch dimension; pass the model's output of shape [B, ...], \
             not a reduced loss",
        ));
    }
    let (x_device, y_device) = (check_device(x, "x")?, check_device(y, "y")?);
    if x_device != y_device {
        return Err(Error::runtime_error(format!(
            "x and y must be on the same device, got x on {} and y on {}; pass the tensor the \
             model was called on and the model's output",
            device_name(x_device),
            device_name(y_device)
        )));
    }
    if !x.requires_grad() {
        return Err(Error::runtime_error(
            "x does not require grad, so the Jacobian of y with respect to x cannot be computed; \
             set `data.requires_grad = True` before the forward pass `output = model(data)`",
        ));
    }
    if !y.requires_grad() {
        return Err(Error::runtime_error(
            "y does not require grad: it was computed under torch.no_grad() or \
             torch.inference_mode(), or it does not depend on x; compute the output from x with \
             gradients enabled",
        ));
    }
    Ok(kind)
}

/// Splits y's shape into the batch size B and the number C of output elements per sample.
pub fn batch_and_size(y_shape: &[i64]) -> Result<(i64, i64)> {
    match y_shape {
        [batch, rest @ ..] => Ok((*batch, rest.iter().product())),
        [] => Err(Error::value_error("y is 0-d, so it has no batch dimension")),
    }
}

/// Per-sample results need x's first dimension to be y's batch dimension.
pub fn check_same_batch(x_shape: &[i64], batch: i64, what: &str) -> Result<()> {
    match x_shape.first() {
        Some(&b) if b == batch => Ok(()),
        found => Err(Error::value_error(format!(
            "{what} needs x and y to share their first (batch) dimension, got x of shape \
             {x_shape:?} (batch {}) and y of batch {batch}",
            found.map_or("none".to_owned(), |b| b.to_string())
        ))),
    }
}
