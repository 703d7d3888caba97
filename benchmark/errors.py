"""Errors the CLI turns into one clear line and an exit code.

Exit codes are part of the public contract (CI scripts branch on them):
2 = bad input or config, 3 = infrastructure (model or endpoint unavailable).
"""
from __future__ import annotations


class DentbenchError(Exception):
    """Bad input or configuration: the user can fix it. Exit code 2."""

    exit_code = 2


class InfrastructureError(DentbenchError):
    """A model, endpoint or disk failed us. Exit code 3."""

    exit_code = 3


def located(path: object, line: int | None, message: str) -> DentbenchError:
    """An input error that names the file (and line) it comes from."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return DentbenchError(f"{where}: {message}")
