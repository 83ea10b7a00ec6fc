//! Projection directions v_k: uniform on the unit sphere, or orthonormal per sample (Haar).

use crate::autograd::{accumulation_kind, normalize_rows};
use crate::checks::Projection;
use crate::error::Result;
use tch::{Device, Kind, Tensor};

/// The source of the k-th direction for every sample at once, each a [B, C] matrix.
pub enum Directions {
    /// Drawn per projection from torch's default generator: the upstream draw order.
    Sphere {
        shape: [i64; 2],
        kind: Kind,
        device: Device,
    },
    /// Caller-drawn standard normal noise [n, B, C], normalised per row.
    SphereFrom(Tensor),
    /// n orthonormal columns per sample, [B, C, n].
    Orthogonal(Tensor),
}

impl Directions {
    /// `noise`, when given, is standard normal of shape [n, B, C] from the caller's generator.
    pub fn new(
        projection: Projection,
        n: i64,
        shape: [i64; 2],
        kind: Kind,
        device: Device,
        noise: Option<Tensor>,
    ) -> Result<Self> {
        match (projection, noise) {
            (Projection::Sphere, None) => Ok(Directions::Sphere {
                shape,
                kind,
                device,
            }),
            (Projection::Sphere, Some(noise)) => Ok(Directions::SphereFrom(noise)),
            (Projection::Orthogonal, noise) => {
                let noise = match noise {
                    Some(noise) => noise,
                    None => Tensor::f_randn([n, shape[0], shape[1]], (kind, device))?,
                };
                Ok(Directions::Orthogonal(orthonormal(&noise, kind)?))
            }
        }
    }

    /// The k-th direction [B, C] of every sample.
    pub fn get(&self, k: i64) -> Result<Tensor> {
        match self {
            Directions::Sphere {
                shape,
                kind,
                device,
            } => normalize_rows(&Tensor::f_randn(shape.as_slice(), (*kind, *device))?),
            Directions::SphereFrom(noise) => normalize_rows(&noise.f_select(0, k)?),
            Directions::Orthogonal(q) => Ok(q.f_select(2, k)?),
        }
    }
}

/// Haar-distributed orthonormal columns from Gaussian noise [n, B, C]: Q of a QR decomposition,
/// with column signs fixed by diag(R) (without the fix, Q is not uniformly distributed).
fn orthonormal(noise: &Tensor, kind: Kind) -> Result<Tensor> {
    // QR has no half-precision kernels; the directions are cast back to y's dtype after.
    let work = accumulation_kind(kind);
    let gaussian = noise.f_permute([1i64, 2, 0].as_slice())?.f_to_kind(work)?;
    let (q, r) = Tensor::f_linalg_qr(&gaussian, "reduced")?;
    let signs = r.f_diagonal(0, -2, -1)?.f_sign()?.f_unsqueeze(1)?;
    Ok(q.f_mul(&signs)?.f_to_kind(kind)?)
}
