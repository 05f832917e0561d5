"""Backend selection: which registered backend runs a given attention call, and why.

Every backend in :data:`~attnkit.kernels.registry.BACKENDS` says what it cannot do
(``refusal``) and how much it wants a call (``bid``). :func:`choose` returns the
accepting backend with the highest bid, together with every other backend's reason,
so ``attnkit.explain`` can report the decision as data instead of warnings. Nothing
here names a backend.

Decisions are cached: a training loop asks the same question every step, and the
answer (every backend's refusal and bid) costs more than a small model's attention.
The key is the :class:`Problem` (hashable plain data), the requested name, the
registry's entries (a replaced or added entry is a new key) and the machine state
that availability checks read: whether CUDA is available and the environment
switches in :data:`AVAILABILITY_ENV` (:func:`state`, which ``attention()`` also keeps
with its cached calls). Installed packages are assumed not to change within a process.
:func:`clear_cache` empties it.
"""

from __future__ import annotations

import os
import types

import torch

from attnkit.kernels.problem import Decision, Problem
from attnkit.kernels.registry import BACKENDS

__all__ = ["choose", "backend_for", "clear_cache", "state", "AVAILABILITY_ENV"]

# Environment variables that a backend's availability may depend on (the Triton
# interpreter switch); part of the cache key.
AVAILABILITY_ENV = ("TRITON_INTERPRET",)
_CACHE_SIZE = 256
_cache: dict[tuple, Decision] = {}


# state() runs on every cached attention call, so it reads the machine without Python
# calls where it can do so exactly. CUDA availability: torch's own
# torch.cuda.is_available() is asked once and its answer remembered (CUDA's device count is
# fixed once a process has asked for it; torch caches it too); a replacement (tests
# simulate machines that way) is called every time. Environment: os.environ keeps its variables in
# a dict (``_data``, keys encoded by ``encodekey``) that setting or deleting a variable
# through os.environ updates; read there directly, or through os.environ.get where the
# mapping is not CPython's.
_cuda_available: list[bool] = []  # torch's own answer, once asked
_ENVIRON = os.environ
_ENV_DATA = getattr(_ENVIRON, "_data", None)
_ENV_KEYS = (tuple(map(_ENVIRON.encodekey, AVAILABILITY_ENV))
             if isinstance(_ENV_DATA, dict) and callable(getattr(_ENVIRON, "encodekey", None))
             else None)


def state() -> tuple:
    """What a decision depends on besides the problem and the requested name: the registry's
    entries (``(name, entry)`` pairs, held, so that a replaced entry never compares equal to
    a freed one at the same address), whether CUDA is available and the environment
    switches in :data:`AVAILABILITY_ENV`. Callers that keep a decision (``attention()``'s
    cache of unmasked calls) compare states with ``==``, which costs no Python calls for
    an unchanged registry: the entries compare by identity first."""
    probe = torch.cuda.is_available
    if type(probe) is not types.FunctionType or probe.__module__ != "torch.cuda":  # replaced
        cuda = probe()
    elif _cuda_available:
        cuda = _cuda_available[0]
    else:
        cuda = probe()
        _cuda_available.append(cuda)
    environ = os.environ
    if _ENV_KEYS is not None and environ is _ENVIRON and environ._data is _ENV_DATA:
        env = tuple(map(_ENV_DATA.get, _ENV_KEYS))
    else:
        env = tuple(map(environ.get, AVAILABILITY_ENV))
    return (tuple(BACKENDS.items()), cuda, env)


def clear_cache() -> None:
    """Forget every cached decision."""
    _cache.clear()


def choose(problem: Problem, backend: str = "auto") -> Decision:
    """Pick the backend for ``problem``.

    Args:
        backend: ``"auto"`` or the name of a backend in :data:`BACKENDS`.

    Raises:
        ValueError: an unknown backend name, or a named backend that refuses the
            problem (the message gives its reason).
    """
    decision = _cached(problem, backend)
    return Decision(decision.backend, dict(decision.refused))


def backend_for(problem: Problem, backend: str = "auto") -> str:
    """The name :func:`choose` would return, without copying the reasons (the hot path
    of ``attention()``). Raises as :func:`choose`."""
    return _cached(problem, backend).backend


def _cached(problem: Problem, backend: str) -> Decision:
    """The shared cached decision (callers must not modify it)."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    key = (problem, backend, tuple(map(id, BACKENDS.values())), tuple(BACKENDS), *state()[1:])
    decision = _cache.get(key)
    if decision is None:
        decision = _decide(problem, backend)  # raises for a named backend that refuses
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = decision
    return decision


def _decide(problem: Problem, backend: str) -> Decision:
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
