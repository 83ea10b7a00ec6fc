"""Evaluation beside the library: the robustness experiments, their data, models and report."""
