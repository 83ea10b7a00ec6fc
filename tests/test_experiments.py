"""The experiments' building blocks: data, attacks, noise, Jacobian norms and margins, against
closed forms and dense Jacobians (the runs and pages are in test_pipeline.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from experiments import attacks, margins
from experiments.data import load_digits, load_mnist, mnist_available
from experiments.measure import accuracy, jacobian_norms
from experiments.models import MLP
from experiments.train import train_epoch

# The models are tiny: one thread is as fast, and immune to spin-waits on shared cores.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


@pytest.fixture(scope="module")
def undefended(digits):
    """An MLP trained briefly on the digits without any regularization."""
    train, _ = digits
    torch.manual_seed(0)
    model = MLP()
    batches = DataLoader(train, batch_size=64, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(4):
        train_epoch(model, batches, optimizer, reg=nn.Identity())
    return model


def test_undefended_model_learns(digits, undefended):
    _, test = digits
    x, y = test.tensors
    assert accuracy(undefended, x, y) > 0.85


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("epsilon", [0.05, 0.2])
def test_attacks_stay_in_the_ball_and_data_range(digits, undefended, attack, epsilon):
    _, test = digits
    x, y = (t[:200] for t in test.tensors)
    if attack == "fgsm":
        adv = attacks.fgsm(undefended, x, y, epsilon)
    else:
        adv = attacks.pgd(
            undefended, x, y, epsilon, steps=10, generator=torch.Generator().manual_seed(0)
        )
    assert adv.shape == x.shape and not adv.requires_grad
    assert (adv - x).abs().max() <= epsilon + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv != x).any()


def test_attacks_lower_accuracy_of_an_undefended_model(digits, undefended):
    _, test = digits
    x, y = test.tensors
    clean = accuracy(undefended, x, y)
    fgsm = attacks.attack_survivors(undefended, x, y, attacks.fgsm, 0.1).float().mean()
    gen = torch.Generator().manual_seed(0)

    def attack(model, xb, yb, eps):
        return attacks.pgd(model, xb, yb, eps, steps=10, generator=gen)

    pgd = attacks.attack_survivors(undefended, x, y, attack, 0.1).float().mean()
    assert fgsm < clean - 0.2
    assert pgd <= fgsm + 0.01


def test_pgd_is_reproducible_and_zero_epsilon_is_identity(digits, undefended):
    _, test = digits
    x, y = (t[:50] for t in test.tensors)
    first = attacks.pgd(undefended, x, y, 0.1, steps=3, generator=torch.Generator().manual_seed(5))
    again = attacks.pgd(undefended, x, y, 0.1, steps=3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    torch.testing.assert_close(attacks.pgd(undefended, x, y, 0.0), x, rtol=0, atol=0)
    torch.testing.assert_close(attacks.fgsm(undefended, x, y, 0.0), x, rtol=0, atol=0)


def test_white_noise_is_seeded_and_clipped():
    x = torch.full((100, 1, 8, 8), 0.5)
    noisy = attacks.white_noise(x, 0.6, torch.Generator().manual_seed(1))
    again = attacks.white_noise(x, 0.6, torch.Generator().manual_seed(1))
    torch.testing.assert_close(noisy, again, rtol=0, atol=0)
    assert noisy.min() == 0 and noisy.max() == 1
    raw = attacks.white_noise(x, 0.6, torch.Generator().manual_seed(1), clip=None)
    assert (raw - x).std() == pytest.approx(0.6, rel=0.05)


def test_jacobian_norm_matches_dense_jacobian(digits):
    _, test = digits
    torch.manual_seed(0)
    model = MLP()
    x = test.tensors[0][:40]
    jac = torch.autograd.functional.jacobian(lambda t: model(t).sum(0), x)  # [C, N, 1, 8, 8]
    expected = jac.pow(2).sum().item() / len(x)
    assert jacobian_norms(model, x, batch_size=16).mean().item() == pytest.approx(
        expected, rel=1e-4
    )
    # Per input: inputs are independent, so jac[:, n] is the Jacobian of output n by input n.
    per_input = jac.pow(2).sum((0, 2, 3, 4))
    torch.testing.assert_close(
        jacobian_norms(model, x, batch_size=16), per_input.double(), rtol=1e-4, atol=0
    )


def linear_margin(layer: nn.Linear, x: torch.Tensor, u: torch.Tensor) -> float:
    """Distance along unit u from x to the first boundary w_i.x+b_i = w_j.x+b_j (closed form)."""
    w, b = layer.weight.detach(), layer.bias.detach()
    i = int((w @ x + b).argmax())
    best = math.inf
    for j in range(len(b)):
        if j == i:
            continue
        gap = (w[i] - w[j]) @ x + (b[i] - b[j])
        slope = -(w[i] - w[j]) @ u
        if slope > 0:
            best = min(best, float(gap / slope))
    return best


def test_margins_of_a_linear_model_match_the_closed_form():
    torch.manual_seed(3)
    layer = nn.Linear(6, 4).double()
    x = torch.randn(64, 6, dtype=torch.float64)
    u = margins.unit(torch.randn(64, 6, dtype=torch.float64))
    expected = torch.tensor(
        [linear_margin(layer, xi, ui) for xi, ui in zip(x, u)], dtype=torch.float64
    )
    ours = margins.boundary_distances(layer, x, 3.7 * u, max_distance=1e3, scan_step=0.5, tol=1e-7)
    finite = torch.isfinite(expected)
    assert finite.sum() > 40
    torch.testing.assert_close(ours[finite], expected[finite], rtol=0, atol=1e-6)
    # Rays that leave no region never cross, and rays longer than max_distance are not followed.
    far = expected > 1e3
    assert torch.isinf(ours[far]).all()
    # One ray alone gives the distance it gives among the others.
    one = margins.boundary_distances(layer, x[:1], u[:1], max_distance=1e3, scan_step=0.5, tol=1e-7)
    assert one.item() == pytest.approx(float(expected[0]), abs=1e-6)


def test_margin_without_boundary_is_inf():
    layer = nn.Linear(2, 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        layer.bias.zero_()
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    away = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    toward = torch.tensor([[-1.0, 0.0]], dtype=torch.float64)
    assert torch.isinf(margins.boundary_distances(layer, x, away, max_distance=5)).all()
    assert margins.boundary_distances(layer, x, toward, max_distance=5).item() == pytest.approx(
        1.0, abs=1e-4
    )


def test_decision_slice_and_nearest_boundary_in_plane():
    layer = nn.Linear(3, 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
        layer.bias.zero_()
    x = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    u = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    v = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64)
    grid = margins.decision_slice(layer, x, u, v, extent=1.0, resolution=5)
    assert grid.shape == (5, 5)
    # Rows go along v: x_0 = 0.5 - b, so class 1 only where b > 0.5 (the top row, b = 1).
    assert grid[-1].eq(1).all() and grid[:-1].eq(0).all()
    dist, angle = margins.nearest_in_plane(layer, x, u, v, angles=8)
    assert dist == pytest.approx(0.5, abs=1e-3)
    assert angle == pytest.approx(math.pi / 2)


def test_digits_split():
    train, test = load_digits()
    assert len(train) + len(test) == 1797
    x, y = train.tensors
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and y.dtype == torch.int64
    # Stratified: every class has the same share of the test set as of the whole, to one image.
    counts = torch.bincount(torch.cat([y, test.tensors[1]]), minlength=10)
    assert (torch.bincount(test.tensors[1], minlength=10) - counts / 4).abs().max() <= 1


def test_mnist_files_on_disk_load(mnist_dir):
    assert mnist_available(mnist_dir)
    train, test = load_mnist(mnist_dir)
    assert train.tensors[0].shape == (128, 1, 28, 28) and len(test) == 64
    x, y = train.tensors
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y.dtype == torch.int64


def test_missing_mnist_raises(tmp_path):
    assert not mnist_available(tmp_path)
    with pytest.raises(FileNotFoundError, match="make mnist"):
        load_mnist(tmp_path)
