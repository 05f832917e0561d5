"""Fast attention paths and the dispatcher that picks one per call.

Nothing here imports from :mod:`attnkit.functional`: the functional layer
validates inputs, builds an :class:`~attnkit.kernels.dispatch.Problem`, asks
:func:`~attnkit.kernels.dispatch.choose` for a backend and hands the kernel
plain tensors.
"""

from attnkit.kernels.dispatch import BACKENDS, Decision, Problem, choose

__all__ = ["BACKENDS", "Decision", "Problem", "choose"]
