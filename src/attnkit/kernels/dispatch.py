"""Backend selection: which registered backend runs a given attention call, and why.

Every backend in :data:`~attnkit.kernels.registry.BACKENDS` says what it cannot do
(``refusal``) and how much it wants a call (``bid``). :func:`choose` returns the
accepting backend with the highest bid, together with every other backend's reason,
so ``attnkit.explain`` can report the decision as data instead of warnings. Nothing
here names a backend.
"""

from __future__ import annotations

from attnkit.kernels.problem import Decision, Problem
from attnkit.kernels.registry import BACKENDS

__all__ = ["choose"]


def choose(problem: Problem, backend: str = "auto") -> Decision:
    """Pick the backend for ``problem``.

    Args:
        backend: ``"auto"`` or the name of a backend in :data:`BACKENDS`.

    Raises:
        ValueError: an unknown backend name, or a named backend that refuses the
            problem (the message gives its reason).
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    refusals = {name: entry.refusal(problem) for name, entry in BACKENDS.items()}
    if backend != "auto":
        reason = refusals[backend]
        if reason is not None:
            raise ValueError(f"backend={backend!r} cannot run this call: {reason}")
        return Decision(backend, {name: reason or "not requested"
                                  for name, reason in refusals.items() if name != backend})
    bids = {name: BACKENDS[name].bid(problem)
            for name, reason in refusals.items() if reason is None}
    chosen = max(bids, key=lambda name: bids[name].score)  # first of equals wins
    refused = {}
    for name, reason in refusals.items():
        if name == chosen:
            continue
        if reason is None:
            reason = f"{chosen} preferred ({bids[chosen].why}); {name}: {bids[name].why}"
        refused[name] = reason
    return Decision(chosen, refused)
