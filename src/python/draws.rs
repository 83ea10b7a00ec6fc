//! Draws from a caller's `torch.Generator`, which tch cannot reach: torch.randn, called under the GIL.

use super::errors::callback_error;
use super::torch::{new_dict, torch_module, type_name};
use crate::directions::Normal;
use crate::error::{Error, Result};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use tch::{Device, Tensor};

/// A caller's generator and the device it draws on.
pub struct Generator {
    generator: Py<PyAny>,
    device: Device,
}

impl Generator {
    /// None for None; a TypeError for anything but a torch.Generator.
    pub fn from_arg(ob: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Self>> {
        let Some(ob) = ob.filter(|ob| !ob.is_none()) else {
            return Ok(None);
        };
        let py = ob.py();
        let torch = torch_module(py)?;
        if !ob.is_instance(&torch.getattr(intern!(py, "Generator"))?)? {
            return Err(Error::type_error(format!(
                "generator must be a torch.Generator or None, got {}",
                type_name(ob)
            ))
            .into());
        }
        let device = ob.getattr(intern!(py, "device"))?;
        let kind: String = device.getattr(intern!(py, "type"))?.extract()?;
        let index: Option<usize> = device.getattr(intern!(py, "index"))?.extract()?;
        let device = match kind.as_str() {
            "cpu" => Device::Cpu,
            "cuda" => Device::Cuda(match index {
                Some(index) => index,
                None => torch
                    .getattr(intern!(py, "cuda"))?
                    .call_method0(intern!(py, "current_device"))?
                    .extract()?,
            }),
            "mps" => Device::Mps,
            other => {
                return Err(Error::runtime_error(format!(
                    "generator is for device {other}, which this library does not support; use \
                     a generator of the CPU or of a CUDA device"
                ))
                .into())
            }
        };
        Ok(Some(Generator {
            generator: ob.clone().unbind(),
            device,
        }))
    }
}

impl Normal for Generator {
    fn device(&self) -> Option<Device> {
        Some(self.device)
    }

    fn draw(&self, shape: &[i64], _device: Device) -> Result<Tensor> {
        Python::with_gil(|py| -> PyResult<Tensor> {
            let torch = torch_module(py)?;
            let kwargs = new_dict(py);
            kwargs.set_item(intern!(py, "generator"), self.generator.bind(py))?;
            // No dtype: torch's default, as upstream's torch.randn(B, C).
            kwargs.set_item(
                intern!(py, "device"),
                crate::checks::device_name(self.device),
            )?;
            let noise = torch
                .getattr(intern!(py, "randn"))?
                .call((shape.to_vec(),), Some(&kwargs))?;
            let PyTensor(noise) = noise.extract()?;
            Ok(noise)
        })
        .map_err(callback_error)
    }
}

/// A caller's own directions: a Python callable `(C, B) -> Tensor [B, C]`, such as an overridden
/// `JacobianReg._random_vector`, called under the GIL.
pub struct CallerDirections {
    callable: Py<PyAny>,
}

impl CallerDirections {
    /// None for None; a TypeError for anything that cannot be called.
    pub fn from_arg(ob: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Self>> {
        match ob.filter(|ob| !ob.is_none()) {
            None => Ok(None),
            Some(ob) if ob.is_callable() => Ok(Some(CallerDirections {
                callable: ob.clone().unbind(),
            })),
            Some(ob) => Err(Error::type_error(format!(
                "directions must be a callable (C, B) -> Tensor [B, C], got {}",
                type_name(ob)
            ))
            .into()),
        }
    }

    /// The directions of one projection.
    pub fn call(&self, per_sample: i64, batch: i64) -> Result<Tensor> {
        Python::with_gil(|py| -> PyResult<Tensor> {
            let v = self.callable.bind(py).call1((per_sample, batch))?;
            let PyTensor(v) = v.extract().map_err(|_| {
                PyErr::from(Error::type_error(format!(
                    "_random_vector(C={per_sample}, B={batch}) must return a torch.Tensor, got {}",
                    type_name(&v)
                )))
            })?;
            Ok(v)
        })
        .map_err(callback_error)
    }
}
