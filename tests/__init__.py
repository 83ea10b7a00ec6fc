"""The test suite: pytest against the installed package, with pure-PyTorch references."""
