//! The regularizers' options, each validated where it is defined, with a message that names the fix.

use crate::error::{Error, Result};

/// How many projections to take: `n` random ones, or every output coordinate (`n = -1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionCount {
    Random(i64),
    Exact,
}

impl ProjectionCount {
    pub fn from_n(n: i64) -> Result<Self> {
        match n {
            -1 => Ok(ProjectionCount::Exact),
            n if n >= 1 => Ok(ProjectionCount::Random(n)),
            n => Err(Error::value_error(format!(
                "n must be a positive number of random projections, or -1 for the exact \
                 Jacobian norm; got n={n}"
            ))),
        }
    }

    pub fn n(self) -> i64 {
        match self {
            ProjectionCount::Random(n) => n,
            ProjectionCount::Exact => -1,
        }
    }
}

/// How random directions are sampled: independently per projection, or orthonormal per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    Sphere,
    Orthogonal,
}

impl Sampling {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "sphere" => Ok(Sampling::Sphere),
            "orthogonal" => Ok(Sampling::Orthogonal),
            other => Err(Error::value_error(format!(
                "projection must be \"sphere\" (independent directions, as upstream) or \
                 \"orthogonal\" (orthonormal directions per sample); got {other:?}"
            ))),
        }
    }
}

/// How per-sample values are combined into the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Sum,
    None,
}

impl Reduction {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            other => Err(Error::value_error(format!(
                "reduction must be \"mean\", \"sum\" or \"none\"; got {other:?}"
            ))),
        }
    }
}

/// Refuses what a caller's own directions (an overridden `_random_vector`, `directions=`) cannot
/// serve: they are sphere directions, and the caller draws them.
pub fn check_own_directions(sampling: Sampling, generator: bool) -> Result<()> {
    if sampling != Sampling::Sphere {
        return Err(Error::value_error(
            "projection=\"orthogonal\" draws its own orthonormal directions, so it cannot use \
             those of an overridden _random_vector (directions=); use projection=\"sphere\" or \
             drop the override",
        ));
    }
    if generator {
        return Err(Error::value_error(
            "an overridden _random_vector (directions=) draws the directions itself, so \
             generator= would be ignored; draw from the generator in your _random_vector \
             instead, or drop the override",
        ));
    }
    Ok(())
}

/// The scale of a regularizer's value: `factor` · reduce_b(...), a finite number >= 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Factor(f64);

impl Factor {
    pub fn new(factor: f64) -> Result<Self> {
        if factor.is_finite() && factor >= 0.0 {
            Ok(Factor(factor))
        } else {
            Err(Error::value_error(format!(
                "factor must be a finite number >= 0, got {factor}"
            )))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// The Frobenius estimate: `factor` · reduce_b( C/n · Σ_k ‖v_kᵀ J_b‖² ), an estimate of
/// `factor` · reduce_b ‖J_b‖²_F (JacobianReg: factor 1/2 and the mean).
#[derive(Clone, Copy, Debug)]
pub struct FrobeniusOptions {
    pub count: ProjectionCount,
    pub sampling: Sampling,
    pub reduction: Reduction,
    pub factor: Factor,
    /// Build the double-backward graph, so the result is differentiable.
    pub create_graph: bool,
}

/// The stopping rule of the power iteration for the spectral norm.
#[derive(Clone, Copy, Debug)]
pub struct PowerIteration {
    /// The most iterations to run (at least 1).
    pub iters: i64,
    /// Stop once no sample's estimate moved by more than this relative amount (0: run all).
    pub tol: f64,
}

impl PowerIteration {
    pub fn new(iters: i64, tol: f64) -> Result<Self> {
        if iters < 1 {
            return Err(Error::value_error(format!(
                "iters must be at least 1, got {iters}"
            )));
        }
        if !(tol.is_finite() && tol >= 0.0) {
            return Err(Error::value_error(format!(
                "tol must be a finite number >= 0 (0 runs every iteration), got {tol}"
            )));
        }
        Ok(PowerIteration { iters, tol })
    }
}

/// The spectral regularizer: `factor` · reduce_b σ_max(J_b)² (JacobianSpectralReg: 1/2, mean).
#[derive(Clone, Copy, Debug)]
pub struct SpectralOptions {
    pub power: PowerIteration,
    pub reduction: Reduction,
    pub factor: Factor,
    /// Build the double-backward graph for the last product, so the result is differentiable.
    pub create_graph: bool,
}
