"""The backend registry: every attention implementation ``attention()`` may run.

Adding a backend is one module (or package) in :mod:`attnkit.kernels` that defines a
:class:`~attnkit.kernels.backend.Backend` named ``BACKEND``, plus one line below. The
order is the tie-break of the ``auto`` policy.
"""

from __future__ import annotations

from attnkit.kernels import reference, sdpa, tiled
from attnkit.kernels.backend import Backend
from attnkit.kernels.triton import backend as triton

__all__ = ["BACKENDS", "backend_names", "unavailable"]

BACKENDS: dict[str, Backend] = {entry.name: entry for entry in (
    reference.BACKEND,
    sdpa.BACKEND,
    tiled.BACKEND,
    triton.BACKEND,
)}


def backend_names() -> list[str]:
    """Every registered backend name, in registry order."""
    return list(BACKENDS)


def unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine at all (None when it can).

    Raises:
        ValueError: ``name`` is not a registered backend.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {backend_names()}, got {name!r}")
    return BACKENDS[name].availability()
