//! Projection directions v_k: uniform on the unit sphere, or orthonormal per sample (Haar).
//!
//! Every draw is upstream's `torch.randn(B, C)`: standard normal noise in torch's default dtype
//! (float32 unless `torch.set_default_dtype` changed it), whatever y's dtype, on the generator's
//! device. Sphere directions are normalised in that dtype too, and only then brought to y's dtype
//! and device, as upstream's engine casts its float32 directions; so under one seed the
//! directions, and the generator's state afterwards, do not depend on y's dtype.

use crate::checks::device_name;
use crate::engine::default_kind;
use crate::error::{Error, Result};
use crate::numerics::{accumulation_kind, normalize_rows};
use crate::options::{check_own_directions, Sampling};
use tch::{Device, Kind, Tensor};

/// Where standard normal draws come from: torch's default generator, or a caller's generator.
pub trait Normal {
    /// The device a caller's generator draws on; None for the default generator of any device.
    fn device(&self) -> Option<Device>;

    /// Standard normal noise of `shape` in torch's default dtype, on the generator's own device
    /// (for the default generator, on `device`, y's device).
    fn draw(&self, shape: &[i64], device: Device) -> Result<Tensor>;
}

/// torch's default generator of the device drawn on, so `torch.manual_seed` reproduces draws.
pub struct DefaultGenerator;

impl Normal for DefaultGenerator {
    fn device(&self) -> Option<Device> {
        None
    }

    fn draw(&self, shape: &[i64], device: Device) -> Result<Tensor> {
        Ok(Tensor::f_randn(shape, (default_kind(), device))?)
    }
}

/// A caller's own directions for one projection, `(C, B) -> [B, C]` (upstream's
/// `_random_vector` hook), used as they come: not normalised.
pub type GivenDirections<'a> = &'a dyn Fn(i64, i64) -> Result<Tensor>;

/// Where the directions of random projections come from.
#[derive(Clone, Copy)]
pub enum Draws<'a> {
    /// Standard normal noise, normalised per sample (or orthonormalised).
    Normal(&'a dyn Normal),
    /// A caller's own directions (sphere sampling only).
    Given(GivenDirections<'a>),
}

/// Refuses a caller's generator for another device than y's or the CPU: torch would raise a less
/// clear error, or (for another CUDA device) silently draw from a generator the caller did not
/// pass. A CPU generator draws on the CPU for any device, as upstream does (its directions are
/// copied to y's device), so `torch.default_generator` gives upstream's draws on a GPU.
fn check_generator_device(normal: &dyn Normal, device: Device) -> Result<()> {
    match normal.device() {
        Some(found) if found != device && found != Device::Cpu => Err(Error::value_error(format!(
            "generator is for device {} but y is on {}; create it with \
             torch.Generator(device={:?}), or pass a CPU generator, which draws on the CPU",
            device_name(found),
            device_name(device),
            device_name(device)
        ))),
        _ => Ok(()),
    }
}

/// `v` times `gain`, without an operation for a gain of 1.
fn scaled(v: Tensor, gain: f64) -> Result<Tensor> {
    Ok(if gain == 1.0 {
        v
    } else {
        v.f_mul_scalar(gain)?
    })
}

/// Unit rows of standard normal `noise` [B, C] in y's `kind` on y's `device`, times `gain`.
///
/// Normalised in the dtype and on the device they were drawn in, then moved and cast, as
/// upstream's directions reach its engine. Where the noise is already in y's dtype the gain
/// joins the division; otherwise it multiplies after the cast, so the directions are upstream's
/// with no rounding but y's dtype's own.
fn unit_directions(noise: &Tensor, kind: Kind, device: Device, gain: f64) -> Result<Tensor> {
    let fold = noise.f_kind()? == kind;
    let unit = normalize_rows(noise, if fold { gain } else { 1.0 })?;
    let unit = if unit.device() == device {
        unit
    } else {
        unit.f_to_device(device)?
    };
    if fold {
        Ok(unit)
    } else {
        scaled(unit.f_to_kind(kind)?, gain)
    }
}

/// The k-th direction for every sample at once, each a [B, C] matrix.
pub enum Directions<'a> {
    /// Drawn per projection: the upstream draw order.
    Sphere {
        normal: &'a dyn Normal,
        shape: [i64; 2],
        kind: Kind,
        device: Device,
    },
    /// n orthonormal columns per sample, [B, C, n].
    Orthogonal(Tensor),
    /// A caller's, per projection, cast to y's dtype and device.
    Given {
        given: GivenDirections<'a>,
        shape: [i64; 2],
        kind: Kind,
        device: Device,
    },
}

impl<'a> Directions<'a> {
    /// Directions for `n` projections of outputs of `shape` [B, C] on `device`, in `kind`.
    pub fn new(
        sampling: Sampling,
        n: i64,
        shape: [i64; 2],
        kind: Kind,
        device: Device,
        draws: Draws<'a>,
    ) -> Result<Self> {
        let normal = match draws {
            Draws::Normal(normal) => normal,
            Draws::Given(given) => {
                check_own_directions(sampling, false)?;
                return Ok(Directions::Given {
                    given,
                    shape,
                    kind,
                    device,
                });
            }
        };
        check_generator_device(normal, device)?;
        match sampling {
            Sampling::Sphere => Ok(Directions::Sphere {
                normal,
                shape,
                kind,
                device,
            }),
            Sampling::Orthogonal => {
                let noise = normal.draw(&[n, shape[0], shape[1]], device)?;
                Ok(Directions::Orthogonal(orthonormal(
                    &noise.f_to_device(device)?,
                    kind,
                )?))
            }
        }
    }

    /// The k-th direction [B, C] of every sample, times `gain` (for the sphere, a new draw on
    /// every call).
    pub fn get(&self, k: i64, gain: f64) -> Result<Tensor> {
        match self {
            Directions::Sphere {
                normal,
                shape,
                kind,
                device,
            } => unit_directions(
                &normal.draw(shape.as_slice(), *device)?,
                *kind,
                *device,
                gain,
            ),
            Directions::Orthogonal(q) => scaled(q.f_select(2, k)?, gain),
            Directions::Given {
                given,
                shape,
                kind,
                device,
            } => {
                let [batch, size] = *shape;
                let v = given(size, batch)?;
                let found = v.size();
                // Upstream's hook gives [B] ones for one output per sample.
                if found != [batch, size] && !(size == 1 && found == [batch]) {
                    return Err(Error::value_error(format!(
                        "_random_vector(C={size}, B={batch}) must return a tensor of shape \
                         [{batch}, {size}], got {found:?}"
                    )));
                }
                scaled(
                    v.f_to_device(*device)?
                        .f_to_kind(*kind)?
                        .f_reshape([batch, size])?,
                    gain,
                )
            }
        }
    }
}

/// A standard normal start [B, C] for the power iteration in y's `kind` on y's `device`, drawn
/// as directions are.
pub fn start(normal: &dyn Normal, shape: [i64; 2], kind: Kind, device: Device) -> Result<Tensor> {
    check_generator_device(normal, device)?;
    Ok(normal
        .draw(shape.as_slice(), device)?
        .f_to_device(device)?
        .f_to_kind(kind)?)
}

/// Haar-distributed orthonormal columns in `kind` from Gaussian noise [n, B, C] of any dtype: Q of
/// a QR decomposition, with column signs fixed by diag(R) (without the fix, Q is not uniformly
/// distributed).
fn orthonormal(noise: &Tensor, kind: Kind) -> Result<Tensor> {
    // QR has no half-precision kernels; the directions are cast back to y's dtype after.
    let work = accumulation_kind(kind);
    let gaussian = noise.f_permute([1i64, 2, 0].as_slice())?.f_to_kind(work)?;
    let (q, r) = Tensor::f_linalg_qr(&gaussian, "reduced")?;
    let signs = r.f_diagonal(0, -2, -1)?.f_sign()?.f_unsqueeze(1)?;
    Ok(q.f_mul(&signs)?.f_to_kind(kind)?)
}
