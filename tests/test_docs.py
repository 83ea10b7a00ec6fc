"""Runs every ```python block of the README, of CONTRIBUTING.md and of each Markdown file under
docs/: a file's blocks in order, in one namespace (```py ones are illustrations that need more
than one process, such as the DDP snippet)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from jacobian import JacobianReg

from tests.reference import reference_reg

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def markdown_files() -> list[Path]:
    """The README, CONTRIBUTING.md if present, and every Markdown file under docs/, recursively."""
    files = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [path for path in files if path.is_file()]


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def leaves(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors that require grad in a tensor's graph: the parameters and the input."""
    found: dict[int, torch.Tensor] = {}
    # The visited nodes are kept alive: torch may wrap a node anew on each access, and a freed
    # wrapper's id can come back for another node.
    stack, seen, visited = [tensor.grad_fn], set(), []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        visited.append(node)
        if hasattr(node, "variable"):
            found[id(node.variable)] = node.variable
        stack.extend(next_node for next_node, _ in node.next_functions)
    return list(found.values())


class Checked:
    """Each call of JacobianReg with upstream's options, held against the pure-PyTorch
    reference as the README runs it: the same value, and the same gradient on every parameter
    (what the regularizer adds to a training step), from the same draws."""

    def __init__(self) -> None:
        self.calls = 0
        self.original = JacobianReg.forward

    def forward(self, reg: JacobianReg, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        before = torch.get_rng_state()
        ours = self.original(reg, x, y)
        upstream_options = (reg.reduction, reg.projection, reg.generator) == (
            "mean",
            "sphere",
            None,
        )
        if not (torch.is_grad_enabled() and upstream_options):
            return ours
        after = torch.get_rng_state()
        torch.set_rng_state(before)
        reference = reference_reg(x, y, reg.n)
        torch.set_rng_state(after)  # the README goes on with the generator where ours left it
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-8)
        params = [leaf for leaf in leaves(y) if leaf is not x]
        assert params, "the regularizer's value has no parameters to train"
        # A parameter the Jacobian does not depend on (the last bias) gets no gradient from it.
        ours_grads = torch.autograd.grad(ours, params, retain_graph=True, allow_unused=True)
        reference_grads = torch.autograd.grad(
            reference, params, retain_graph=True, allow_unused=True
        )
        for mine, theirs in zip(ours_grads, reference_grads):
            assert (mine is None) == (theirs is None)
            if mine is not None:
                # float32 sums taken in another order: entries that nearly cancel differ by a
                # few ulps of the gradient's scale, not of their own (seen: 1.2e-8 on 1.5e-4).
                scale = float(theirs.abs().max())
                torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5 * scale)
        added = [g for g in ours_grads if g is not None]
        assert any(bool(g.abs().sum() > 0) for g in added), "the regularizer adds nothing"
        self.calls += 1
        return ours


def check_readme(namespace: dict[str, object], checked: Checked) -> None:
    """The README's loop really trained through the regularizer."""
    model = namespace["model"]
    # Every batch of the loop (and the options' examples) went through the checked regularizer.
    assert checked.calls >= len(namespace["loader"])  # type: ignore[arg-type]
    assert all(p.grad is not None for p in model.parameters())  # type: ignore[attr-defined]
    assert namespace["jacobian_loss"] > 0


# What a file's blocks must have done, beyond running without an error.
AFTER_RUNNING = {README: check_readme}


def test_readme_has_the_upstream_training_loop():
    blocks = python_blocks(README)
    assert any("loss = loss_super + lambda_JR*R # full loss" in block for block in blocks)
    assert any("reg = JacobianReg() # Jacobian regularization" in block for block in blocks)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_python_blocks_run(path, monkeypatch):
    torch.manual_seed(0)  # the blocks draw their data: the same, whatever ran before
    checked = Checked()
    monkeypatch.setattr(JacobianReg, "forward", lambda reg, x, y: checked.forward(reg, x, y))
    namespace: dict[str, object] = {}
    for block in python_blocks(path):
        exec(compile(block, str(path), "exec"), namespace)
    AFTER_RUNNING.get(path, lambda namespace, checked: None)(namespace, checked)


CONTRIBUTING = ROOT / "CONTRIBUTING.md"
SOURCE_SUFFIXES = (".py", ".pyi", ".rs", ".cpp", ".toml", ".md", ".sh", ".lock", ".patch", ".txt")


# What builds and runs write: named in CONTRIBUTING.md, but not part of the repository.
OUTPUTS = {"target", "dist", "data"}


def tracked_files() -> set[str]:
    """The repository's files, relative to its root (outputs and caches left out)."""
    caches = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
    files = set()
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if path.is_file() and parts[0] not in OUTPUTS and not caches & set(parts):
            files.add("/".join(parts))
    return files


def test_contributing_names_only_files_that_exist():
    files = tracked_files()
    names = {Path(f).name for f in files}
    for quoted in re.findall(r"`([^`\s]+)`", CONTRIBUTING.read_text()):
        path = quoted.rstrip("/")
        if not path.endswith(SOURCE_SUFFIXES) and not quoted.endswith("/"):
            continue
        if any(c in path for c in "*<>~$") or path.startswith(("http", "-")):
            continue  # a pattern, a placeholder or a path outside the repository
        if path.split("/")[0] in OUTPUTS:
            continue
        if quoted.endswith("/"):
            assert any(f.startswith(path + "/") for f in files), quoted
        elif "/" in path:
            assert path in files, quoted
        else:
            assert path in names, quoted


def test_contributing_names_every_make_target_and_test_module():
    text = CONTRIBUTING.read_text()
    targets = re.findall(r"^([a-z-]+):.*## ", (ROOT / "Makefile").read_text(), flags=re.M)
    assert "test" in targets and "help" in targets
    missing = [t for t in targets if t != "help" and f"make {t}" not in text]
    assert not missing, f"CONTRIBUTING.md does not name make {missing}"
    modules = sorted(p.name for p in (ROOT / "tests").glob("test_*.py"))
    assert not [m for m in modules if m not in text], "a test module is not in CONTRIBUTING.md"
