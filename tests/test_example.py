"""Smoke runs of the MNIST example on the bundled digits and on MNIST-format files on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from examples import mnist
from experiments.data import load_digits

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def example():
    return mnist


def test_example_trains_on_digits(example, capsys):
    after = example.main(["--epochs", "3", "--print-every", "10"])
    out = capsys.readouterr().out
    assert "Data: digits (1347 training, 450 test images)." in out
    assert "[1,    10] supervised loss:" in out
    assert "Test set results on digits with lambda_JR=0.100." in out
    assert "After 3 epochs of training:" in out
    assert after.total == 450
    assert after.correct / after.total > 0.8


def test_evaluation_averages_over_the_whole_test_set(example):
    torch.manual_seed(0)
    _, test = load_digits()
    model = example.MLP(inputs=64)
    loader = torch.utils.data.DataLoader(test, batch_size=64, shuffle=False)
    result = example.evaluate(torch.device("cpu"), model, loader, torch.nn.CrossEntropyLoss(), 0.1)
    x, y = test.tensors
    x = x.clone().requires_grad_()
    output = model(x)
    expected_super = torch.nn.functional.cross_entropy(output, y).item()
    jac = torch.autograd.functional.jacobian(lambda t: model(t).sum(0), x)  # [C, N, 1, 8, 8]
    expected_jr = 0.5 * jac.pow(2).sum().item() / len(test)
    assert result.total == len(test)
    assert result.loss_super == pytest.approx(expected_super, rel=1e-5)
    assert result.loss_jr == pytest.approx(expected_jr, rel=1e-4)


def test_mnist_files_on_disk_are_used(example, mnist_dir, capsys):
    example.main(["--data-dir", str(mnist_dir), "--epochs", "1", "--print-every", "1"])
    out = capsys.readouterr().out
    assert "Data: MNIST (128 training, 64 test images)." in out
    assert "accuracy: " in out and "/64=" in out


def test_missing_mnist_falls_back_to_digits(example, tmp_path, capsys):
    example.main(["--data-dir", str(tmp_path), "--epochs", "1"])
    out = capsys.readouterr().out
    assert "No MNIST files under" in out and "Data: digits" in out


def test_example_runs_as_a_module_from_the_repository_root():
    # As `make example` runs it: `experiments` is found from the root, with no path edits.
    result = subprocess.run(
        [sys.executable, "-m", "examples.mnist", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--data-dir" in result.stdout
