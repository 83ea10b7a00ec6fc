"""Benchmarks of the regularizer against the pure-PyTorch reference (``python -m benchmarks``)."""
