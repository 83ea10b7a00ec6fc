"""Examples of the regularizer in use; run from the repository root, `python -m examples.mnist`."""
