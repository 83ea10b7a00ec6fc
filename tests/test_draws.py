"""Upstream's numbers under the same seed: its directions for every dtype of y, and every generator
left where upstream's estimator leaves it; on CUDA, with the CPU generator."""

from __future__ import annotations

import copy

import pytest
import torch
from jacobian import JacobianReg, JacobianSpectralReg, spectral_norm
from torch import Tensor, nn

from tests.reference import reference_reg
from tests.upstream_standin import upstream_estimate

# (B, C) with B·C under 16, a multiple of 16, and neither: torch's CPU randn gives a float16 or
# bfloat16 draw the float32 draw's values only for the first two (and a float64 draw never), so
# the last two catch directions drawn in y's dtype.
SHAPES = [(3, 5), (4, 8), (7, 3), (25, 4)]

# How y gets its dtype: a model in that dtype, a float32 model's output cast to it, or CPU
# autocast (for the half-precision dtypes).
SOURCES = [
    (torch.float64, "model"),
    (torch.float64, "cast"),
    (torch.float32, "model"),
    (torch.bfloat16, "model"),
    (torch.bfloat16, "cast"),
    (torch.bfloat16, "autocast"),
    (torch.float16, "model"),
    (torch.float16, "cast"),
    (torch.float16, "autocast"),
]

# R against upstream's, relative, in machine epsilons of the less precise of x's and y's dtypes
# (y's, or x's where y is cast from x's dtype and the backward pass runs in x's): both hand the
# engine the same directions in y's dtype, so they differ only in how the squared norms are
# summed, and where x is half precision upstream rounds them to it. Gradients compare against
# their largest entry. The worst over 20 seeds of every case below: 3.3 and 8.0.
VALUE_EPS, GRADIENT_EPS = 8, 32


def epsilon(x: Tensor, y: Tensor) -> float:
    """The machine epsilon of the less precise of x's and y's dtypes."""
    return max(torch.finfo(x.dtype).eps, torch.finfo(y.dtype).eps)


def make_case(
    dtype: torch.dtype, source: str, shape: tuple[int, int], device: str = "cpu"
) -> tuple[nn.Module, Tensor, Tensor]:
    """A seeded model, an input x that requires grad and its [B, C] output y in ``dtype``."""
    batch, size = shape
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, size)).to(device)
    x = torch.randn(batch, 6).to(device)
    if source == "model":
        model, x = model.to(dtype), x.to(dtype)
    x.requires_grad_()
    if source == "autocast":
        with torch.autocast(torch.device(device).type, dtype=dtype):
            y = model(x)
    else:
        y = model(x).to(dtype)
    assert y.dtype == dtype
    return model, x, y


def case_id(case: tuple[torch.dtype, str]) -> str:
    return f"{str(case[0]).removeprefix('torch.')}-{case[1]}"


cases = pytest.mark.parametrize("case", SOURCES, ids=case_id)
shapes = pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"B{s[0]}xC{s[1]}")
projections = pytest.mark.parametrize("n", [1, 3])


def assert_same_value(ours: Tensor, upstream: Tensor, x: Tensor, y: Tensor) -> None:
    """R equals upstream's to VALUE_EPS epsilons, compared in ours's dtype (float32 or wider)."""
    rtol = VALUE_EPS * epsilon(x, y)
    torch.testing.assert_close(ours, upstream.to(ours.dtype), rtol=rtol, atol=0)


@cases
@shapes
@projections
def test_seeded_value_and_next_draw_are_upstreams(case, shape, n):
    dtype, source = case
    model, x, y = make_case(dtype, source, shape)
    torch.manual_seed(1)
    ours = JacobianReg(n=n)(x, y)
    ours_next = torch.rand(2)
    torch.manual_seed(1)
    upstream = upstream_estimate(x, y, n)
    upstream_next = torch.rand(2)
    assert_same_value(ours, upstream, x, y)
    assert torch.equal(ours_next, upstream_next)
    # Training follows: the gradients agree as the values do (the last bias has none).
    params = [model[0].weight, model[0].bias, model[2].weight]
    ours_grads = torch.autograd.grad(ours, params, retain_graph=True)
    upstream_grads = torch.autograd.grad(upstream, params)
    tolerance = GRADIENT_EPS * epsilon(x, y)
    for a, b in zip(ours_grads, upstream_grads):
        scale = b.abs().max().item()
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance * scale)


@cases
@shapes
@projections
def test_cpu_generator_gives_upstreams_draws_from_it(case, shape, n):
    dtype, source = case
    _, x, y = make_case(dtype, source, shape)
    ours_generator = torch.Generator().manual_seed(5)
    upstream_generator = torch.Generator().manual_seed(5)
    global_state = torch.get_rng_state()
    ours = JacobianReg(n=n, generator=ours_generator)(x, y)
    assert torch.equal(torch.get_rng_state(), global_state)
    upstream = upstream_estimate(x, y, n, generator=upstream_generator)
    assert_same_value(ours, upstream, x, y)
    assert torch.equal(
        torch.rand(2, generator=ours_generator), torch.rand(2, generator=upstream_generator)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_the_default_generator_passed_is_the_global_one(dtype):
    _, x, y = make_case(dtype, "model", (7, 3))
    torch.manual_seed(2)
    passed = JacobianReg(n=2, generator=torch.default_generator)(x, y)
    passed_next = torch.rand(2)
    torch.manual_seed(2)
    implicit = JacobianReg(n=2)(x, y)
    assert torch.equal(passed, implicit)
    assert torch.equal(passed_next, torch.rand(2))


REGULARIZERS = {
    "JacobianReg": lambda generator: JacobianReg(n=2, generator=generator),
    "JacobianSpectralReg": lambda generator: JacobianSpectralReg(iters=1, generator=generator),
}


@pytest.mark.parametrize("name", REGULARIZERS)
def test_the_default_generator_survives_deepcopy_and_pickling(name, tmp_path):
    # Pickled by name: a copy of its state would no longer follow torch.manual_seed.
    make = REGULARIZERS[name]
    torch.save(make(torch.default_generator), tmp_path / "reg.pt")
    loaded = torch.load(tmp_path / "reg.pt", weights_only=False)
    copied = copy.deepcopy(make(torch.default_generator))
    assert loaded.generator is torch.default_generator
    assert copied.generator is torch.default_generator
    _, x, y = make_case(torch.float32, "model", (7, 3))
    torch.manual_seed(2)
    from_loaded, loaded_next = loaded(x, y), torch.rand(2)
    torch.manual_seed(2)
    assert torch.equal(from_loaded, make(None)(x, y))
    assert torch.equal(loaded_next, torch.rand(2))
    # Any other generator is copied with its state, as torch copies generators.
    other = make(torch.Generator().manual_seed(1))
    twin = copy.deepcopy(other)
    assert twin.generator is not other.generator
    assert torch.equal(twin.generator.get_state(), other.generator.get_state())


def test_upstreams_addcdiv_normalisation_is_a_plain_division():
    # Upstream writes v / ||v|| as addcdiv(zeros, 1.0, v, ||v||) (a deprecated overload, here
    # in its current spelling); the stand-in's division gives the same bits.
    for batch, size in SHAPES:
        v = torch.randn(batch, size)
        norm = torch.norm(v, 2, 1, True)
        assert torch.equal(torch.addcdiv(torch.zeros(batch, size), v, norm, value=1.0), v / norm)


@pytest.fixture
def float64_default_dtype():
    """torch's default dtype set to float64 for the test, then put back."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_directions_follow_torchs_default_dtype_as_upstreams_do(float64_default_dtype, dtype):
    # Upstream's torch.randn(B, C) draws in the default dtype, which is float64 here.
    _, x, y = make_case(dtype, "cast", (7, 3))
    torch.manual_seed(3)
    ours = JacobianReg(n=3)(x, y)
    ours_next = torch.rand(2)
    torch.manual_seed(3)
    upstream = upstream_estimate(x, y, 3)
    assert_same_value(ours, upstream, x, y)
    assert torch.equal(ours_next, torch.rand(2))


def test_one_output_per_sample_takes_no_draw_in_any_dtype():
    for dtype, source in SOURCES:
        _, x, y = make_case(dtype, source, (5, 1))
        torch.manual_seed(4)
        ours = JacobianReg(n=3)(x, y)
        ours_next = torch.rand(2)
        torch.manual_seed(4)
        assert_same_value(ours, upstream_estimate(x, y, 3), x, y)
        assert torch.equal(ours_next, torch.rand(2))


def orthogonal(x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample estimates from two orthonormal directions."""
    reg = JacobianReg(n=2, projection="orthogonal", reduction="none", generator=generator)
    return reg(x, y)


def spectral(x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample spectral norms after one power iteration: far from converged, so they show
    the start they came from."""
    return spectral_norm(x, y, iters=1, tol=0.0, generator=generator)


OTHER_DRAWS = {"orthogonal": orthogonal, "spectral": spectral}


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("estimator", OTHER_DRAWS)
def test_orthogonal_and_spectral_draws_do_not_depend_on_the_dtype(estimator, dtype):
    # Both draw as the sphere does, in the default dtype: under one seed an output cast to
    # float64 or bfloat16 gets the float32 output's directions (rounded to its dtype), and the
    # generator ends in the same place. The values, per sample, differ by that rounding.
    _, x, y32 = make_case(torch.float32, "model", (7, 3))
    y = y32.to(dtype)
    torch.manual_seed(6)
    expected, expected_next = OTHER_DRAWS[estimator](x, y32), torch.rand(2)
    torch.manual_seed(6)
    value, value_next = OTHER_DRAWS[estimator](x, y), torch.rand(2)
    rtol = VALUE_EPS * epsilon(x, y)
    torch.testing.assert_close(value.float(), expected, rtol=rtol, atol=0)
    assert torch.equal(value_next, expected_next)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@projections
def test_cuda_with_the_cpu_generator_gives_upstreams_numbers(dtype, n):
    # Upstream draws on the CPU and copies to the GPU: torch.default_generator does the same.
    _, x, y = make_case(dtype, "model", (7, 3), device="cuda")
    torch.manual_seed(1)
    ours = JacobianReg(n=n, generator=torch.default_generator)(x, y)
    ours_next, ours_cuda_state = torch.rand(2), torch.cuda.get_rng_state()
    torch.manual_seed(1)
    upstream = upstream_estimate(x, y, n)
    assert_same_value(ours, upstream, x, y)
    assert torch.equal(ours_next, torch.rand(2))
    # manual_seed(1) seeded CUDA's generator too: neither call moved it.
    assert torch.equal(ours_cuda_state, torch.cuda.get_rng_state())


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_default_draws_on_the_device_and_leaves_the_cpu_generator(dtype):
    # The default on a GPU: upstream's draw made on the device, from CUDA's generator.
    _, x, y = make_case(dtype, "model", (7, 3), device="cuda")
    cpu_state = torch.get_rng_state()
    torch.cuda.manual_seed(2)
    ours = JacobianReg(n=3)(x, y)
    ours_cuda_state = torch.cuda.get_rng_state()
    assert torch.equal(torch.get_rng_state(), cpu_state)
    torch.cuda.manual_seed(2)
    expected = reference_reg(x, y, n=3)
    assert_same_value(ours, expected, x, y)
    assert torch.equal(ours_cuda_state, torch.cuda.get_rng_state())


@pytest.mark.cuda
@pytest.mark.parametrize("estimator", OTHER_DRAWS)
def test_cuda_with_a_cpu_generator_draws_what_the_cpu_draws(estimator):
    # Orthogonal projections and the spectral norm's start come from the CPU generator too.
    _, x_cpu, y_cpu = make_case(torch.float64, "model", (7, 3))
    _, x, y = make_case(torch.float64, "model", (7, 3), device="cuda")
    on_cpu = OTHER_DRAWS[estimator](x_cpu, y_cpu, torch.Generator().manual_seed(8))
    on_cuda = OTHER_DRAWS[estimator](x, y, torch.Generator().manual_seed(8))
    assert on_cuda.device == x.device
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-10, atol=0)
