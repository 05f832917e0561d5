"""The trivial-feature baseline: how far length and copied tokens go without reading words.

A logistic regression on six surface features of an (English, French) pair, none of which
needs to know a French word: the log length ratio in characters and in words (and their
squares), whether the placeholders and numbers (``%s``, ``{name}``, ``42``) match as
multisets, the share of English words copied verbatim into the French (names, acronyms), and
whether both end in the same punctuation. Whatever a model reaches above this line it owes to
reading the words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

from attnkit.data.translation.pairs import PairExample

__all__ = ["FEATURES", "features", "fit_logistic", "accuracy"]

FEATURES = ("log char ratio", "log char ratio^2", "log word ratio", "log word ratio^2",
            "placeholders and numbers match", "English words copied", "same end punctuation")
_SLOT = re.compile(r"%(?:\d+\$)?[-+ #0]*\d*(?:\.\d+)?[a-zA-Z]|\{[^{}\s]*\}|\d+")
_WORD = re.compile(r"\w+")


def _end(text: str) -> str:
    text = text.rstrip()
    return text[-1] if text and text[-1] in ".:?!…)" else ""


def features(example: PairExample) -> list[float]:
    """The :data:`FEATURES` of one example."""
    en, fr = example.english, example.french
    chars = math.log((len(fr) + 1) / (len(en) + 1))
    en_words, fr_words = _WORD.findall(en), _WORD.findall(fr)
    words = math.log((len(fr_words) + 1) / (len(en_words) + 1))
    slots = float(Counter(_SLOT.findall(en)) == Counter(_SLOT.findall(fr)))
    fr_set = set(fr_words)
    copied = sum(w in fr_set for w in en_words) / max(len(en_words), 1)
    return [chars, chars * chars, words, words * words, slots, copied,
            float(_end(en) == _end(fr))]


def _matrix(examples: Sequence[PairExample]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([features(e) for e in examples], dtype=torch.float64)  # (N, F)
    y = torch.tensor([float(e.label) for e in examples], dtype=torch.float64)  # (N,)
    return x, y


def fit_logistic(train: Sequence[PairExample], *, steps: int = 200):
    """Fit the regression on ``train`` (standardized features, L-BFGS, a small L2 penalty);
    returns ``predict(examples) -> (N,) probabilities`` and the weights by feature name."""
    x, y = _matrix(train)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = z @ w[:-1] + w[-1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) \
            + 1e-4 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    weights = w.detach()

    def predict(examples: Sequence[PairExample]) -> torch.Tensor:
        xe, _ = _matrix(examples)
        return torch.sigmoid(((xe - mean) / std) @ weights[:-1] + weights[-1])

    return predict, dict(zip([*FEATURES, "bias"], weights.tolist(), strict=True))


def accuracy(probabilities: torch.Tensor, examples: Sequence[PairExample]) -> float:
    """Share of ``examples`` whose probability is on the side of 0.5 of its label."""
    labels = torch.tensor([e.label for e in examples])
    return float(((probabilities > 0.5).long() == labels).float().mean())
