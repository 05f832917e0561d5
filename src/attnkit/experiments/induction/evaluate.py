"""What is measured during training: the loss by position, the in-context learning score,
every head's prefix-matching, previous-token and copying scores; and the phase change.

In-context learning score (Olsson et al. 2022, "In-context Learning and Induction Heads",
arXiv:2209.11895, section 2): the loss at the 500th token of a context minus the loss at
the 50th, averaged over contexts; negative when later tokens are predicted better because
the model uses what it has read. Deviation: to halve the noise of a few dozen contexts, each
of the two losses is averaged over the ``2 w + 1`` positions centred on it (``w =
icl_halfwidth``, 5 by default; ``w = 0`` is the paper's definition). Position ``p`` is the
token predicted from the ``p`` tokens before it.

Head scores (:mod:`attnkit.interp.heads`): prefix matching is the ``induction`` detector on
a random sequence repeated twice (a ``<s>`` token first). Deviation from the paper's uniform
draw: the tokens are drawn from the ids seen often enough in the train files
(:data:`~attnkit.experiments.induction.run.PROBE_MIN_COUNT`), since ids the model never saw
keep their random embeddings. Copying is the OV-circuit eigenvalue score of Elhage et al.
2021 (direct path, LayerNorms not folded in).

Phase change (:func:`phase_change`): found in the data, as the measurement interval in which
the best head's prefix-matching score rises fastest (by more than :data:`MIN_RISE` between
two measurements; smaller changes are noise, not a phase change).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from attnkit.interp.heads import copying_scores, detect_heads

__all__ = ["position_losses", "icl_score", "head_scores", "measure", "phase_change",
           "steepest_drop", "MIN_RISE", "MIN_DROP"]

#: smallest rise of the best prefix-matching score between two measurements that counts
MIN_RISE = 0.05
#: smallest fall of the ICL score (nats) between two measurements that counts
MIN_DROP = 0.02


@torch.no_grad()
def position_losses(model: torch.nn.Module, contexts: torch.Tensor, *,
                    batch: int = 8) -> torch.Tensor:
    """Mean next-token loss at every position.

    Args:
        model: ``model(idx (B, T)) -> logits (B, T, V)``.
        contexts: ``(N, T + 1)`` long windows.
        batch: windows per forward pass.

    Returns:
        ``(T,)`` float64: entry ``i`` is the loss of predicting token ``i + 1`` (position
        ``p = i + 1``), averaged over the ``N`` contexts.
    """
    if contexts.dim() != 2 or contexts.shape[1] < 2:
        raise ValueError(f"contexts must be (N, T + 1) with T >= 1, got "
                         f"{tuple(contexts.shape)}")
    device = next(model.parameters()).device
    total = torch.zeros(contexts.shape[1] - 1, dtype=torch.float64)
    for chunk in contexts.split(batch):
        chunk = chunk.to(device)
        logits = model(chunk[:, :-1])  # (b, T, V)
        loss = F.cross_entropy(logits.transpose(1, 2).float(), chunk[:, 1:],
                               reduction="none")  # (b, T)
        total += loss.double().sum(0).cpu()
    return total / contexts.shape[0]


def icl_score(losses: torch.Tensor, *, early: int = 50, late: int = 500,
              halfwidth: int = 0) -> float:
    """``loss(late) - loss(early)`` from :func:`position_losses`' ``(T,)`` output, each the
    mean over positions ``p - halfwidth .. p + halfwidth``."""
    if late + halfwidth > losses.shape[0] or early - halfwidth < 1:
        raise ValueError(f"positions {early} and {late} (+- {halfwidth}) need a context of at "
                         f"least {late + halfwidth} predicted tokens, got {losses.shape[0]}")

    def around(p: int) -> float:
        return float(losses[p - 1 - halfwidth:p + halfwidth].mean())

    return around(late) - around(early)


@torch.no_grad()
def head_scores(model: torch.nn.Module, probe: torch.Tensor) -> dict[str, Any]:
    """Every head's prefix-matching, previous-token and copying score.

    Args:
        model: a GPT.
        probe: ``(B, 1 + 2 n)`` repeated random tokens (see
            :func:`attnkit.interp.repeated_random_tokens`).

    Returns:
        ``{"prefix_matching", "previous_token", "copying"}``, each ``{"layers": [...],
        "scores": [[...], ...]}`` (layers x heads), and ``"best_prefix_matching"``:
        ``{"layer", "head", "score"}``.
    """
    device = next(model.parameters()).device
    tables = detect_heads(model, probe.to(device), detectors=("induction", "previous_token"))
    out = {"prefix_matching": tables["induction"].to_dict(),
           "previous_token": tables["previous_token"].to_dict(),
           "copying": copying_scores(model).to_dict()}
    layer, head, score = tables["induction"].best()
    out["best_prefix_matching"] = {"layer": layer, "head": head, "score": score}
    return out


def measure(model: torch.nn.Module, contexts: torch.Tensor, probe: torch.Tensor, *,
            early: int, late: int, halfwidth: int) -> dict[str, Any]:
    """One measurement: validation loss, ICL score, loss by position, head scores."""
    losses = position_losses(model, contexts)
    return {"valid_loss": float(losses.mean()),
            "icl_score": icl_score(losses, early=early, late=late, halfwidth=halfwidth),
            "loss_by_position": [round(v, 5) for v in losses.tolist()],
            **head_scores(model, probe)}


def phase_change(steps: list[int], values: list[float], *,
                 min_rise: float = 0.0) -> dict[str, Any] | None:
    """The interval between consecutive measurements where ``values`` rises fastest per
    update: ``{"start", "end", "step" (midpoint), "rate", "before", "after"}``, or None
    with fewer than two measurements or when ``values`` never rises by more than
    ``min_rise`` from one measurement to the next (noise is no phase change)."""
    best = None
    for k in range(1, len(steps)):
        span = steps[k] - steps[k - 1]
        if span <= 0 or not (math.isfinite(values[k]) and math.isfinite(values[k - 1])):
            continue
        rate = (values[k] - values[k - 1]) / span
        if values[k] - values[k - 1] > min_rise and (best is None or rate > best["rate"]):
            best = {"start": steps[k - 1], "end": steps[k], "step": (steps[k - 1] + steps[k]) / 2,
                    "rate": rate, "before": values[k - 1], "after": values[k]}
    return best


def steepest_drop(steps: list[int], values: list[float], *,
                  min_drop: float = 0.0) -> dict[str, Any] | None:
    """:func:`phase_change` of ``-values``: where ``values`` falls fastest (same keys, with
    ``rate`` the fall per update and ``before``/``after`` the values themselves)."""
    found = phase_change(steps, [-v for v in values], min_rise=min_drop)
    if found is not None:
        found["before"], found["after"] = -found["before"], -found["after"]
    return found
