"""One-off: rewrites a digits result of the first layout (``robustness.json``) in today's layout.

The digits run used to write its own layout (a list of models, one ``config``); every
experiment now writes that of :func:`experiments.pipeline.summarise`. This moves each number to
its place and drops only what the old layout held twice. Run once for the published result::

    python -m experiments.migrate tests/data/robustness-v1.json docs/figures/digits.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

TRAINING = ("epochs", "lr", "momentum", "batch_size", "n_proj", "seed")
EVALUATION = (
    *("sigmas", "noise_draws", "epsilons", "pgd_steps", "pgd_restarts", "pgd_losses"),
    *("margin_samples", "margin_directions", "max_distance", "slice_resolution", "seed"),
)
KEPT = (
    *("lambda_jr", "weight_decay", "jacobian_frobenius", "jacobian_frobenius_sq"),
    *("zero_gradient", "noise_accuracy", "fgsm_accuracy", "pgd_accuracy", "margin_random"),
    *("margin_adversarial", "final_train_loss", "train_seconds", "eval_seconds"),
)


def migrate(old: dict) -> dict:
    """The old digits result in today's layout: the same numbers, keyed by variant.

    Raises:
        ValueError: The file is not in the old layout, or its numbers disagree with each other.
    """
    config = old["config"]
    if not config.get("clip_noise", False) or not isinstance(old["models"], list):
        raise ValueError("not a digits result of the old layout (a list of models, clipped noise)")
    models = {}
    for m in old["models"]:
        rms = math.sqrt(m["jacobian_frobenius_sq"])
        if m["jacobian_sq"] != m["jacobian_frobenius_sq"] or not math.isclose(
            m["jacobian_frobenius_rms"], rms
        ):
            raise ValueError(f"{m['name']}: its ‖J‖ fields disagree")
        key = "Jacobian" if m["lambda_jr"] > 0 else "L2" if m["weight_decay"] > 0 else "none"
        models[key] = {"label": m["name"], "dropout": 0.0, "accuracy": m["clean_accuracy"]}
        models[key] |= {k: m[k] for k in KEPT}
    return {
        "dataset": old["dataset"],
        "test_size": old["test_size"],
        "normalization": {"mean": 0.0, "std": 1.0},
        "training": {**{k: config[k] for k in TRAINING}, "decay_at": [], "milestones": []},
        "evaluation": {
            **{k: config[k] for k in EVALUATION},
            **{"test_size": None, "check_size": 0, "iterations": 0},
        },
        "paper": None,
        "models": models,
        "slices": old["slices"],
        "machine": old["machine"],
        "wall": {
            "train_seconds": sum(m["train_seconds"] for m in old["models"]),
            "eval_seconds": sum(m["eval_seconds"] for m in old["models"]),
            "compute_seconds": old["seconds"],
        },
    }


if __name__ == "__main__":
    source, target = map(Path, sys.argv[1:3])
    new = migrate(json.loads(source.read_text()))
    target.write_text(json.dumps(new, indent=2, allow_nan=False) + "\n")
