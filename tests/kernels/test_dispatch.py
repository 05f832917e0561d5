"""Backend dispatch: ``explain()`` names the backend ``attention()`` really runs.

The ``run`` of every registry entry is replaced by a spy that records which backend is
called (and then calls the real function, or returns zeros where the real computation
would be slow). For every call in the grid the recorded backend must be the one
:func:`attnkit.explain` reports, and the refusal reasons must name their cause. Policy
thresholds come from :mod:`attnkit.kernels.tiled` (the tiled backend's bid), so the
sizes below sit on the intended side of them.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from collections.abc import Callable

import pytest
import torch

import attnkit
from attnkit import masks, score_mods
from attnkit.functional._plan import CallPlan
from attnkit.kernels import BACKENDS, Backend, Bid, backend_names, dispatch, tiled, unavailable

# Backends that compute the weights from a saved lse when asked for them.
LSE_WEIGHTS = {"tiled", "triton"}


class Spy:
    """Records every backend call; ``fake=True`` returns zeros instead of computing."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.fake = False

        def fake_run(name: str):
            def run(q, k, v, call):
                out = q.new_zeros(q.shape[0], q.shape[1], q.shape[2], v.shape[3])
                if not call.return_weights:
                    return out, None
                if name in LSE_WEIGHTS:
                    return out, call.weights_from_lse(q.new_zeros(q.shape[:3]).float())
                return out, q.new_zeros(1)
            return run

        def record(entry: Backend):
            def wrapper(q, k, v, call):
                self.calls.append(entry.name)
                return (fake_run(entry.name) if self.fake else entry.run)(q, k, v, call)
            monkeypatch.setitem(BACKENDS, entry.name, dataclasses.replace(entry, run=wrapper))

        for entry in list(BACKENDS.values()):
            record(entry)
        rebuild = CallPlan.weights_from_lse

        def weights_from_lse(plan, lse):
            self.calls.append("weights-from-lse")
            return lse.new_zeros(1) if self.fake else rebuild(plan, lse)

        monkeypatch.setattr(CallPlan, "weights_from_lse", weights_from_lse)


@pytest.fixture
def spy(monkeypatch) -> Spy:
    return Spy(monkeypatch)


@dataclasses.dataclass(frozen=True)
class Call:
    name: str
    shape: tuple[int, int, int, int, int]  # B, Hq, Hkv, L (= Lq = Lk unless kv_len), D
    kwargs: Callable[[int], dict]  # L -> attention kwargs
    expect: str  # the backend the auto policy should pick
    causes: dict[str, str] = dataclasses.field(default_factory=dict)  # backend -> word in reason
    kv_len: int | None = None
    requires_grad: bool = False
    real: bool = True  # run the real backend (False: the spies return zeros; large calls)


def _lambda_score(score, b, h, q_idx, kv_idx):
    return score * 0.5


CALLS = [
    Call("plain", (2, 4, 2, 33, 16), lambda L: {}, "sdpa"),
    Call("causal", (2, 4, 2, 33, 16), lambda L: dict(causal=True), "sdpa"),
    Call("lower_right-Lq<Lk", (1, 2, 2, 9, 16), lambda L: dict(causal="lower_right"), "sdpa",
         kv_len=20),
    Call("bool-mask", (2, 2, 2, 33, 16),
         lambda L: dict(mask=torch.rand(L, L) < 0.5), "sdpa"),
    Call("mask_mod-dense-small", (1, 2, 2, 97, 16),
         lambda L: dict(mask=masks.key_padding(torch.tensor([90]))), "sdpa",
         {"tiled": "block sparsity"}),
    Call("sliding64-L4096-sparse", (1, 1, 1, 4096, 2),
         lambda L: dict(mask=masks.sliding_window(64)), "tiled", {"sdpa": "block sparsity"},
         real=False),
    Call("sliding64-L4096-sparse-dropout", (1, 1, 1, 4096, 2),
         lambda L: dict(mask=masks.sliding_window(64), dropout_p=0.1), "sdpa",
         {"tiled": "dropout"}, real=False),
    Call("softcap-small", (2, 4, 2, 33, 16), lambda L: dict(score_mod=score_mods.softcap(5.0)),
         "reference", {"sdpa": "score_mod", "tiled": "logits"}),
    Call("softcap-large", (1, 1, 1, 2048, 4),
         lambda L: dict(score_mod=score_mods.softcap(5.0)), "tiled", {"sdpa": "score_mod"},
         real=False),
    Call("lambda-score-large-no-grad", (1, 1, 1, 2048, 4),
         lambda L: dict(score_mod=_lambda_score), "tiled", {"sdpa": "score_mod"}, real=False),
    Call("lambda-score-large-under-autograd", (1, 1, 1, 2048, 4),
         lambda L: dict(score_mod=_lambda_score), "reference",
         {"sdpa": "score_mod", "tiled": "score_mod"}, requires_grad=True, real=False),
    Call("relative_bias-large-under-autograd", (1, 1, 1, 2048, 4),
         lambda L: dict(score_mod=score_mods.relative_bias(torch.zeros(1, 9))), "tiled",
         {"sdpa": "score_mod"}, requires_grad=True, real=False),
    Call("return_weights-small", (2, 4, 2, 33, 16), lambda L: dict(return_weights=True),
         "reference", {"sdpa": "return_weights", "tiled": "return_weights"}),
    Call("return_weights-large", (1, 1, 1, 8192, 1), lambda L: dict(return_weights=True),
         "tiled", {"sdpa": "return_weights"}, kv_len=8193, real=False),
    Call("return_weights-large-dropout", (1, 1, 1, 8192, 1),
         lambda L: dict(return_weights=True, dropout_p=0.1), "reference",
         {"sdpa": "return_weights", "tiled": "dropout"}, kv_len=8193, real=False),
    Call("dropout", (2, 4, 2, 33, 16), lambda L: dict(dropout_p=0.2), "sdpa",
         {"tiled": "dropout"}),
    Call("dropout-softcap-large", (1, 1, 1, 2048, 4),
         lambda L: dict(score_mod=score_mods.softcap(5.0), dropout_p=0.2), "reference",
         {"sdpa": "score_mod", "tiled": "dropout"}, real=False),
    Call("float64-causal", (1, 2, 1, 33, 8), lambda L: dict(causal=True), "sdpa"),
]


def _tensors(call: Call):
    B, Hq, Hkv, L, D = call.shape
    dtype = torch.float64 if call.name.startswith("float64") else torch.float32
    q = torch.randn(B, Hq, L, D, dtype=dtype, requires_grad=call.requires_grad)
    k = torch.randn(B, Hkv, call.kv_len or L, D, dtype=dtype)
    v = torch.randn(B, Hkv, call.kv_len or L, D, dtype=dtype)
    return q, k, v


def test_thresholds_put_the_grid_on_the_intended_side():
    # The large calls rely on these policy constants; fail loudly if they move.
    assert 2048 * 2048 >= tiled.TILED_MIN_ELEMENTS > 33 * 33 * 8
    assert 8192 * 8193 > tiled.REFERENCE_MAX_WEIGHTS >= 33 * 33 * 8
    assert tiled.TILED_MIN_SPARSITY <= 0.75


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_explain_names_the_backend_that_runs(call, spy):
    q, k, v = _tensors(call)
    kwargs = call.kwargs(q.shape[2])

    decision = attnkit.explain(q, k, v, **kwargs)
    assert spy.calls == [], "explain() must not compute anything"
    spy.fake = not call.real
    out, weights = attnkit.attention(q, k, v, **kwargs)

    assert decision.backend == call.expect
    backends = [c for c in spy.calls if c != "weights-from-lse"]
    assert backends == [decision.backend]
    # On the tiled path, weights are rebuilt from the lse (and only when asked for).
    wants_weights = kwargs.get("return_weights", False)
    assert ("weights-from-lse" in spy.calls) == (decision.backend in LSE_WEIGHTS
                                                  and wants_weights)
    assert set(decision.refused) == set(BACKENDS) - {decision.backend}
    for backend, cause in call.causes.items():
        assert cause in decision.refused[backend], decision.refused
    assert out.shape == (q.shape[0], q.shape[1], q.shape[2], v.shape[3])
    assert (weights is not None) == wants_weights


@pytest.mark.parametrize("backend", backend_names())
def test_an_explicit_backend_runs_and_the_others_are_not_requested(backend, spy):
    q, k, v = _tensors(CALLS[0])

    decision = attnkit.explain(q, k, v, backend=backend)
    attnkit.attention(q, k, v, backend=backend)

    assert decision.backend == backend and spy.calls == [backend]
    assert decision.refused == {name: "not requested" for name in BACKENDS
                                if name != backend}
    assert str(decision).startswith(f"runs on: {backend}")


def test_a_refusal_beats_not_requested_in_the_report():
    q, k, v = _tensors(CALLS[0])
    decision = attnkit.explain(q, k, v, dropout_p=0.1, return_weights=True,
                               backend="reference")
    assert "return_weights" in decision.refused["sdpa"]
    assert "dropout" in decision.refused["tiled"]
    assert "dropout" in str(decision)


@pytest.mark.parametrize("fn", [attnkit.attention, attnkit.explain], ids=["attention", "explain"])
def test_tiled_with_dropout_raises_naming_dropout(fn, spy):
    q, k, v = _tensors(CALLS[0])
    with pytest.raises(ValueError, match=r"backend='tiled' cannot run this call: dropout_p"):
        fn(q, k, v, dropout_p=0.1, backend="tiled")
    assert spy.calls == []


@pytest.mark.parametrize("fn", [attnkit.attention, attnkit.explain], ids=["attention", "explain"])
@pytest.mark.parametrize("backend,error,match", [
    ("flash", ValueError, r"backend must be 'auto' or one of "
                          r"\['reference', 'sdpa', 'tiled', 'triton'\], got 'flash'"),
    ("Tiled", ValueError, "got 'Tiled'"),
    ("", ValueError, "got ''"),
    (None, TypeError, "backend must be a string, got NoneType"),
    (1, TypeError, "backend must be a string, got int"),
], ids=["unknown-name", "wrong-case", "empty", "none", "int"])
def test_unknown_backend_raises(fn, backend, error, match, spy):
    q, k, v = _tensors(CALLS[0])
    with pytest.raises(error, match=match):
        fn(q, k, v, backend=backend)
    assert spy.calls == []


def _string_constants(module) -> set[str]:
    """Every string literal in a module's code, docstrings left out."""
    tree = ast.parse(inspect.getsource(module))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings}


def test_the_auto_policy_and_attention_name_no_backend():
    # Adding a backend must not need an edit here: no registered name appears in the code.
    modules = [dispatch, importlib.import_module("attnkit.functional.attention")]
    for module in modules:
        assert not set(BACKENDS) & _string_constants(module), module.__name__


def _always(q, k, v, call):
    return torch.full((q.shape[0], q.shape[1], q.shape[2], v.shape[3]), 7.0), None


def test_a_new_registry_entry_is_used_by_attention_explain_and_auto(monkeypatch):
    entry = Backend(name="sevens", summary="test-only", refusal=lambda p: None, run=_always,
                    bid=lambda p: Bid(99, "always wins"))
    monkeypatch.setitem(BACKENDS, entry.name, entry)
    q = torch.randn(1, 2, 5, 4)

    decision = attnkit.explain(q, q, q)
    out, _ = attnkit.attention(q, q, q)

    assert decision.backend == "sevens" and "always wins" in decision.refused["sdpa"]
    assert torch.equal(out, torch.full_like(q, 7.0))
    assert attnkit.explain(q, q, q, backend="sevens").backend == "sevens"
    assert "sevens" in backend_names()
    refused = dataclasses.replace(entry, refusal=lambda p: "never on Tuesdays")
    monkeypatch.setitem(BACKENDS, entry.name, refused)
    assert attnkit.explain(q, q, q).backend == "sdpa"
    with pytest.raises(ValueError, match="backend='sevens' cannot run this call: never on"):
        attnkit.attention(q, q, q, backend="sevens")


def test_availability_of_each_backend_here():
    assert unavailable("reference") is None and unavailable("sdpa") is None
    assert unavailable("tiled") is None
    with pytest.raises(ValueError, match="backend must be one of"):
        unavailable("flash")


def test_triton_is_unavailable_without_a_gpu_or_the_interpreter(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = unavailable("triton")
    assert reason is not None and ("CUDA" in reason or "not installed" in reason)


def test_check_refuses_a_backend_that_cannot_run_here(monkeypatch):
    from attnkit.check import CheckCase, run_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    tiny = [CheckCase("tiny", batch=1, q_heads=1, kv_heads=1, q_len=3, kv_len=3, head_dim=4)]
    with pytest.raises(ValueError, match=r"backends: 'triton' cannot run on this machine"):
        run_check(tiny, dtypes=[torch.float32], backends=["triton"])
    with pytest.raises(ValueError, match=r"backends: 'flash' is not a backend"):
        run_check(tiny, dtypes=[torch.float32], backends=["flash"])
    rows = run_check(tiny, dtypes=[torch.float32])
    assert {row["backend"] for row in rows} == {"reference", "sdpa", "tiled"}
    assert all(row["ok"] for row in rows)


def test_cached_decisions_follow_registry_and_machine_changes(monkeypatch):
    """choose() caches per Problem; a replaced entry or a change in CUDA availability
    is a new question, and a cached answer is a copy the caller may not corrupt."""
    q = torch.randn(1, 2, 5, 4)
    first = attnkit.explain(q, q, q)
    first.refused.clear()  # the caller's copy; the cache keeps its own
    assert set(attnkit.explain(q, q, q).refused) == set(BACKENDS) - {first.backend}
    calls = []

    def counting(p):
        calls.append(p)
        return None

    entry = Backend(name="counted", summary="test-only", refusal=counting, run=_always,
                    bid=lambda p: Bid(-5, "never preferred"))
    monkeypatch.setitem(BACKENDS, entry.name, entry)
    for _ in range(3):
        attnkit.explain(q, q, q)
    assert len(calls) == 1  # asked once, then answered from the cache
    flipped = not torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: flipped)
    attnkit.explain(q, q, q)
    assert len(calls) == 2  # availability changed: asked again
    dispatch.clear_cache()
    attnkit.explain(q, q, q)
    assert len(calls) == 3
