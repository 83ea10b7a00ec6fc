"""Hypothesis fuzzing of the public API, run in a child process so that a crash fails a test.

Usage: ``python -m tests.fuzz_child MAX_EXAMPLES`` (from the repository root); exits 0 when
every example of correct usage returned a value (equal to the pure-PyTorch reference where that
applies) and every other one raised TypeError/ValueError/RuntimeError with a message.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jacobian import JacobianReg, JacobianSpectralReg, jacobian_norm, spectral_norm

from tests.reference import reference_reg

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
OTHERS = [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]
OUTCOMES: Counter[str] = Counter()
LAYOUTS = ["contiguous", "transposed", "channels_last", "expanded", "view", "strided"]


def make_input(batch: int, features: int, layout: str, dtype: torch.dtype) -> torch.Tensor:
    """A [batch, features] or [batch, 1, 2, features] input in the requested memory layout."""
    if layout == "transposed":
        return torch.randn(features, batch, dtype=dtype).T
    if layout == "channels_last":
        return torch.randn(batch, 2, 1, features, dtype=dtype).to(memory_format=torch.channels_last)
    if layout == "expanded":
        return torch.randn(1, features, dtype=dtype).expand(batch, features)
    if layout == "view":
        return torch.randn(batch * features + 3, dtype=dtype)[3:].view(batch, features)
    if layout == "strided":
        return torch.randn(batch, 2 * features, dtype=dtype)[:, ::2]
    return torch.randn(batch, features, dtype=dtype)


def mostly(common: list, rare: list, weight: int = 3) -> st.SearchStrategy:
    """Each valid value ``weight`` times as often as each other, so most examples get through."""
    return st.sampled_from(common * weight + rare)


@st.composite
def cases(draw: st.DrawFn) -> dict:
    """One fuzz case: shapes, dtypes, layout, API, options and mode, valid or not."""
    return {
        "batch": draw(st.integers(0, 4)),
        "features": draw(st.integers(0, 4)),
        "layout": draw(st.sampled_from(LAYOUTS)),
        "x_dtype": draw(mostly([torch.float32, torch.float64], [torch.float16, torch.bfloat16,
                                                                 torch.int64, torch.complex64], 8)),
        "y_dtype": draw(mostly([torch.float32, torch.float64], [torch.float16, torch.bfloat16,
                                                                 *OTHERS], 8)),
        "requires_grad": draw(mostly([True], [False])),
        "out_shape": draw(mostly(["2d"], ["1d", "4d", "0d", "transposed"])),
        "classes": draw(st.integers(0, 5)),
        "n": draw(mostly([-1, 1, 2, 3], [0, -2, 2**62, -(2**70), True, 2.5, "1", None])),
        "projection": draw(mostly(["sphere", "orthogonal"], ["bad"], 6)),
        "reduction": draw(mostly(["mean", "sum", "none"], ["avg"], 6)),
        "poison": draw(mostly([None], [math.nan, math.inf])),
        "api": draw(mostly(["reg"], ["norm", "spectral", "spectral_reg"])),
        "generator": draw(st.booleans()),
        "mode": draw(mostly(["grad"], ["no_grad", "inference_mode"])),
        "seed": draw(st.integers(0, 2**16)),
    }  # fmt: skip


def build(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """An input x in the case's layout and dtype, and an output y of it (or not, for bad x)."""
    torch.manual_seed(case["seed"])
    x = make_input(case["batch"], case["features"], case["layout"], torch.float64)
    x_float = case["x_dtype"] in FLOATS
    x = x.to(case["x_dtype"])
    if x_float and case["requires_grad"]:
        leaf = x.detach().clone().requires_grad_(True)
        x = leaf[:1].expand_as(x) if case["layout"] == "expanded" and len(x) else leaf
    classes = max(case["classes"], 1)
    if x_float:
        flat = x.flatten(1).to(torch.float64)
        out = torch.tanh(flat @ torch.randn(flat.shape[1], classes, dtype=torch.float64))
    else:
        out = torch.zeros(x.shape[0], classes, dtype=torch.float64)
    if case["poison"] is not None:
        out = out * case["poison"]
    shape = case["out_shape"]
    if shape == "1d":
        out = out[:, 0]
    elif shape == "4d":
        out = out.reshape(out.shape[0], 1, classes, 1).expand(-1, 2, -1, 2)
    elif shape == "0d":
        out = out.sum()
    elif shape == "transposed":
        out = out.T.contiguous().T
    return x, out.to(case["y_dtype"])


def call(case: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Calls the case's API on x and y with the case's options."""
    api, n = case["api"], case["n"]
    generator = torch.Generator().manual_seed(case["seed"]) if case["generator"] else None
    if api == "reg":
        reg = JacobianReg(
            n=n, reduction=case["reduction"], projection=case["projection"], generator=generator
        )
        return reg(x, y)
    if api == "norm":
        return jacobian_norm(x, y, n=n, projection=case["projection"], generator=generator)
    if api == "spectral":
        return spectral_norm(x, y, iters=3, generator=generator)
    return JacobianSpectralReg(iters=3, reduction=case["reduction"], generator=generator)(x, y)


def per_sample_size(y: torch.Tensor) -> int:
    """C: the number of output elements per sample (1 for a 0-d y, which is refused anyway)."""
    return math.prod(y.shape[1:]) if y.dim() else 1


def valid(case: dict, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the case is correct usage, which must return a value and never raise."""
    n, api = case["n"], case["api"]
    n_ok = isinstance(n, int) and not isinstance(n, bool) and (n == -1 or n >= 1)
    if api in ("reg", "norm"):
        n_ok = n_ok and (
            case["projection"] == "sphere"
            or (case["projection"] == "orthogonal" and n <= per_sample_size(y))
        )
    else:  # the spectral APIs take neither n nor a projection
        n_ok = True
    return (
        n_ok
        # Under no_grad the value is computed for logging; inference mode forbids backward passes.
        and case["mode"] in ("grad", "no_grad")
        and x.dtype in FLOATS
        and x.requires_grad
        and y.dtype in FLOATS
        and y.dim() > 0
        and (api in ("norm", "spectral") or case["reduction"] != "avg")
    )


def expensive(case: dict, y: torch.Tensor) -> bool:
    """Huge n on a real workload would run for ages; it is only checked where it is cheap."""
    return (
        isinstance(case["n"], int) and case["n"] > 100 and per_sample_size(y) > 1 and y.shape[0] > 0
    )


@settings(
    max_examples=int(sys.argv[1]) if len(sys.argv) > 1 else 200,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(cases())
def check(case: dict) -> None:
    """Runs one case: misuse must raise a clean error, correct use return a (reference) value."""
    x, y = build(case)
    if y.dim() and expensive(case, y):
        OUTCOMES["skipped: huge n"] += 1
        return
    mode = {"grad": torch.enable_grad, "no_grad": torch.no_grad}.get(
        case["mode"], torch.inference_mode
    )
    try:
        with mode():
            result = call(case, x, y)
    except (TypeError, ValueError, RuntimeError) as err:
        assert str(err), f"empty message for {case}"
        assert not valid(case, x, y), f"correct usage raised {err!r} for {case}"
        OUTCOMES[type(err).__name__] += 1
        return
    assert isinstance(result, torch.Tensor)
    assert valid(case, x, y), f"misuse returned {result!r} instead of raising for {case}"
    reference_ready = (
        case["mode"] == "grad"
        and case["api"] == "reg"
        and case["reduction"] == "mean"
        and case["projection"] == "sphere"
        and x.dtype in (torch.float32, torch.float64)
        and y.dtype in (torch.float32, torch.float64)
        and y.shape[0] > 0
        and math.prod(y.shape[1:]) > 0
        and case["n"] <= 100  # the reference loops n times even where C = 1 needs one pass
    )
    if reference_ready:
        torch.manual_seed(case["seed"] + 1)
        ours = JacobianReg(n=case["n"])(x, y)
        torch.manual_seed(case["seed"] + 1)
        ref = reference_reg(x, y, n=case["n"])
        torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=1e-4, atol=1e-6, equal_nan=True)
        OUTCOMES["equal to the reference"] += 1
        return
    if case["poison"] is None and result.numel():
        assert torch.isfinite(result).all(), case
    OUTCOMES["returned a value"] += 1


if __name__ == "__main__":
    check()
    # One JSON line of outcome counts, which benchmarks/reliability.py puts in docs/.
    print(f"fuzz: all examples passed: {json.dumps(dict(OUTCOMES), sort_keys=True)}")
