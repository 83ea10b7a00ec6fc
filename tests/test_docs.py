"""Runs every ```python block of the README, of CONTRIBUTING.md and of each Markdown file under
docs/: a file's blocks in order, in one namespace (```py ones are illustrations that need more
than one process, such as the DDP snippet)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def markdown_files() -> list[Path]:
    """The README, CONTRIBUTING.md if present, and every Markdown file under docs/, recursively."""
    files = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [path for path in files if path.is_file()]


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def check_readme(namespace: dict[str, object]) -> None:
    """The README's loop really trained through the regularizer."""
    model = namespace["model"]
    # The parameters received the regularizer's gradients.
    assert all(p.grad is not None for p in model.parameters())  # type: ignore[attr-defined]
    assert namespace["jacobian_loss"] > 0


# What a file's blocks must have done, beyond running without an error.
AFTER_RUNNING = {README: check_readme}


def test_readme_has_the_upstream_training_loop():
    blocks = python_blocks(README)
    assert any("loss = loss_super + lambda_JR*R # full loss" in block for block in blocks)
    assert any("reg = JacobianReg() # Jacobian regularization" in block for block in blocks)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_python_blocks_run(path):
    namespace: dict[str, object] = {}
    for block in python_blocks(path):
        exec(compile(block, str(path), "exec"), namespace)
    AFTER_RUNNING.get(path, lambda namespace: None)(namespace)
