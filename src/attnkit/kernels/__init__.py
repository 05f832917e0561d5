"""Fast attention paths as registry entries, and the dispatcher that picks one per call.

Nothing here imports from :mod:`attnkit.functional`: the functional layer validates
inputs, builds a :class:`Problem`, asks :func:`choose` for a backend and hands the
chosen :class:`Backend` the tensors and a :class:`~attnkit.kernels.backend.KernelCall`.

Files: ``backend.py`` (the :class:`Backend` record), ``registry.py`` (:data:`BACKENDS`),
``dispatch.py`` (:func:`choose`), one module per backend (``reference.py``, ``sdpa.py``,
``tiled.py``, ``triton/``), ``spec.py`` (plain-number mask descriptions for fused
kernels), ``problem.py`` and ``precision.py``.
"""

from attnkit.kernels.backend import Backend, Bid, KernelCall
from attnkit.kernels.dispatch import choose
from attnkit.kernels.problem import Decision, Problem
from attnkit.kernels.registry import BACKENDS, backend_names, unavailable

__all__ = ["BACKENDS", "Backend", "Bid", "Decision", "KernelCall", "Problem", "backend_names",
           "choose", "unavailable"]
