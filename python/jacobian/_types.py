"""The string options' types, so that a type checker catches ``reduction="mena"``."""

from __future__ import annotations

from typing import Literal

#: How per-sample values are combined: averaged (upstream's), summed, or kept ([B]).
Reduction = Literal["mean", "sum", "none"]
#: How random directions are drawn: independently on the sphere, or orthonormal per sample.
Projection = Literal["sphere", "orthogonal"]
