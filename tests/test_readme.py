"""Runs every ```python block of the README, in order, in one namespace (```py ones are
illustrations that need more than one process, such as the DDP snippet)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_upstream_training_loop():
    blocks = python_blocks()
    assert any("loss = loss_super + lambda_JR*R # full loss" in block for block in blocks)
    assert any("reg = JacobianReg() # Jacobian regularization" in block for block in blocks)


def test_readme_code_blocks_run():
    namespace: dict[str, object] = {}
    for block in python_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    # The loop really trained through the regularizer: the parameters received its gradients.
    model = namespace["model"]
    assert all(p.grad is not None for p in model.parameters())  # type: ignore[attr-defined]
    assert namespace["jacobian_loss"] > 0
