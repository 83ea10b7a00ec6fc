"""The one way a build stops early: a message that says what to install or run (pip shows it)."""

from __future__ import annotations


class BuildRefused(SystemExit):
    """Stops a build before compiling, with a message that names the problem and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(f"\njacobian-reg cannot be built here: {message}\n")
        self.message = message
