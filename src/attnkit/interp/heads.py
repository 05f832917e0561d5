"""Head detectors: which attention heads look at the previous token, at earlier copies of
the current token, at what followed those copies (induction), and which heads copy.

Attention-pattern detectors score a pattern ``(B, H, Lq, Lk)`` against a set of target
keys per query row: a head's score is its attention weight on the targets, summed over the
targets of a row and averaged over every row that has a target (rows without one are left
out). A score is in ``[0, 1]``; 1 means all of the head's attention sits on the targets.

* previous-token: the target of row ``t`` is key ``t - 1``;
* duplicate-token: keys ``j < t`` holding the same token as position ``t``;
* induction: keys ``j`` with ``1 <= j < t`` whose *preceding* token equals token ``t``
  (``[A][B] ... [A] -> [B]``). On a random sequence repeated twice this is the
  prefix-matching score of Olsson et al. 2022, "In-context Learning and Induction Heads"
  (arXiv:2209.11895): row ``t`` of the second copy targets ``t - n + 1``.

The copying score is a property of the weights, not of a pattern: the OV circuit of head
``h`` maps a token to logits through ``W_U W_O^h W_V^h W_E^T`` (Elhage et al. 2021, "A
Mathematical Framework for Transformer Circuits", transformer-circuits.pub; no arXiv id).
A copying head raises the logit of the token it attends to, so the circuit's eigenvalues
are mostly positive; the score is ``sum(lambda) / sum(|lambda|)`` in ``[-1, 1]``. The
non-zero eigenvalues of the ``V x V`` circuit are those of the ``Dh x Dh`` matrix
``W_V^h W_E^T W_U W_O^h``, which is what is computed. Deviation from the paper: only the
direct path is scored, and LayerNorms are left out (their scales are not folded in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from attnkit._validate import check_int
from attnkit.interp.capture import attention_modules, capture
from attnkit.nn.multihead import MultiHeadAttention

__all__ = ["HeadTable", "previous_token_targets", "duplicate_token_targets",
           "induction_targets", "pattern_score", "repeated_random_tokens", "pattern_table",
           "copying_scores", "detect_heads", "DETECTORS"]


@dataclass(frozen=True)
class HeadTable:
    """Scores of one detector for every head: a layers x heads table.

    Attributes:
        detector: the detector's name.
        layers: the row labels (attention module paths).
        scores: ``(len(layers), max heads)`` float64; NaN where a layer has fewer heads.
    """

    detector: str
    layers: tuple[str, ...]
    scores: torch.Tensor

    def __post_init__(self) -> None:
        if self.scores.dim() != 2 or self.scores.shape[0] != len(self.layers):
            raise ValueError(f"scores must be (layers, heads) = ({len(self.layers)}, H), got "
                             f"{tuple(self.scores.shape)}")

    def __getitem__(self, key: tuple[str | int, int]) -> float:
        """``table[layer, head]``: ``layer`` a module path or a row index."""
        layer, head = key
        row = self.layers.index(layer) if isinstance(layer, str) else layer
        return float(self.scores[row, head])

    def best(self) -> tuple[str, int, float]:
        """``(layer, head, score)`` of the highest score."""
        filled = torch.nan_to_num(self.scores, nan=float("-inf"))
        index = int(filled.argmax())
        row, head = divmod(index, self.scores.shape[1])
        return self.layers[row], head, float(self.scores[row, head])

    def to_dict(self) -> dict:
        """JSON-able: ``{"detector", "layers", "scores": [[...], ...]}`` (None for NaN)."""
        return {"detector": self.detector, "layers": list(self.layers),
                "scores": [[None if v != v else round(v, 6) for v in row]
                           for row in self.scores.tolist()]}

    def format(self, digits: int = 2) -> str:
        """A plain-text table, one row per layer, one column per head."""
        check_int(digits, "digits", minimum=0, maximum=8)
        width = max(len(name) for name in self.layers)
        header = " " * width + "".join(f"{'h' + str(h):>{digits + 4}}"
                                       for h in range(self.scores.shape[1]))
        lines = [self.detector, header]
        for name, row in zip(self.layers, self.scores.tolist(), strict=True):
            cells = "".join(f"{'-':>{digits + 4}}" if v != v else f"{v:>{digits + 4}.{digits}f}"
                            for v in row)
            lines.append(f"{name:<{width}}{cells}")
        return "\n".join(lines)


def _check_tokens(tokens: object, length: int | None = None) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise TypeError(f"tokens must be an integer tensor (B, L), got {got}")
    if length is not None and tokens.shape[1] != length:
        raise ValueError(f"tokens has length {tokens.shape[1]} but the pattern has {length} "
                         f"query rows and keys")
    return tokens


def previous_token_targets(length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(1, L, L)`` bool: row ``t`` targets key ``t - 1``."""
    check_int(length, "length", minimum=1)
    return torch.ones(length - 1, dtype=torch.bool, device=device).diag(-1)[None]


def duplicate_token_targets(tokens: torch.Tensor) -> torch.Tensor:
    """``tokens (B, L)`` -> ``(B, L, L)`` bool: row ``t`` targets keys ``j < t`` with
    ``tokens[j] == tokens[t]``."""
    tokens = _check_tokens(tokens)
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, L, L)
    return same.tril(-1)


def induction_targets(tokens: torch.Tensor) -> torch.Tensor:
    """``tokens (B, L)`` -> ``(B, L, L)`` bool: row ``t`` targets keys ``1 <= j < t`` with
    ``tokens[j - 1] == tokens[t]``."""
    tokens = _check_tokens(tokens)
    B, L = tokens.shape
    targets = torch.zeros(B, L, L, dtype=torch.bool, device=tokens.device)
    targets[:, :, 1:] = tokens[:, :, None] == tokens[:, None, :-1]  # key j: token j - 1
    return targets.tril(-1)


def pattern_score(pattern: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean attention on the targets, per head.

    Args:
        pattern: ``(B, H, Lq, Lk)`` attention weights.
        targets: bool, broadcastable to ``(B, Lq, Lk)``.

    Returns:
        ``(H,)`` float64: for each head, the weight on a row's targets averaged over the
        ``(b, row)`` pairs that have a target; NaN if no row has one.
    """
    if not isinstance(pattern, torch.Tensor) or pattern.dim() != 4:
        got = tuple(pattern.shape) if isinstance(pattern, torch.Tensor) else type(pattern)
        raise ValueError(f"pattern must be (B, H, Lq, Lk), got {got}")
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.bool:
        raise TypeError("targets must be a bool tensor broadcastable to (B, Lq, Lk)")
    B, H, Lq, Lk = pattern.shape
    targets = torch.broadcast_to(targets.to(pattern.device), (B, Lq, Lk))
    has_target = targets.any(-1)  # (B, Lq)
    on_target = (pattern.double() * targets[:, None]).sum(-1)  # (B, H, Lq)
    count = has_target.sum()
    if count == 0:
        return torch.full((H,), float("nan"), dtype=torch.float64)
    return (on_target * has_target[:, None]).sum((0, 2)).cpu() / count.item()


def repeated_random_tokens(vocab_size: int, length: int, *, batch: int = 1,
                           generator: torch.Generator | None = None, low: int = 0,
                           prefix: Sequence[int] = (),
                           choices: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """A synthetic probe: ``batch`` random sequences of ``length`` tokens, each repeated once.

    Args:
        vocab_size: tokens are drawn uniformly from ``[low, vocab_size)``.
        length: ``n``, tokens per copy.
        batch: sequences.
        generator: for reproducible draws.
        low: the smallest id drawn (e.g. to keep special tokens out).
        prefix: ids put before every sequence (e.g. a BOS token).
        choices: ``(C,)`` ids to draw from uniformly instead of ``[low, vocab_size)``, e.g.
            the tokens a model saw in training (a token it never saw has an untrained
            embedding, and a head's score on it says nothing about the head).

    Returns:
        ``(batch, len(prefix) + 2 n)`` long.
    """
    check_int(vocab_size, "vocab_size", minimum=1)
    check_int(length, "length", minimum=1)
    check_int(batch, "batch", minimum=1)
    check_int(low, "low", minimum=0, maximum=vocab_size - 1)
    if choices is None:
        half = torch.randint(low, vocab_size, (batch, length), generator=generator)
    else:
        pool = torch.as_tensor(choices)
        if pool.dim() != 1 or pool.numel() == 0 or pool.is_floating_point() \
                or pool.dtype == torch.bool:
            raise ValueError(f"choices must be a non-empty 1-D set of token ids, got "
                             f"{tuple(pool.shape)} {pool.dtype}")
        if int(pool.min()) < 0 or int(pool.max()) >= vocab_size:
            raise ValueError(f"choices must lie in [0, {vocab_size}), got ids "
                             f"{int(pool.min())}..{int(pool.max())}")
        pick = torch.randint(0, pool.numel(), (batch, length), generator=generator)
        half = pool.long()[pick]  # (batch, n)
    start = torch.tensor(list(prefix), dtype=torch.long).expand(batch, -1)
    return torch.cat([start, half, half], dim=1)


DETECTORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "previous_token": lambda tokens: previous_token_targets(tokens.shape[1], tokens.device),
    "duplicate_token": duplicate_token_targets,
    "induction": induction_targets,
}


def _table(detector: str, rows: dict[str, torch.Tensor]) -> HeadTable:
    width = max(len(r) for r in rows.values())
    scores = torch.full((len(rows), width), float("nan"), dtype=torch.float64)
    for i, row in enumerate(rows.values()):
        scores[i, :len(row)] = row
    return HeadTable(detector, tuple(rows), scores)


def pattern_table(patterns: dict[str, torch.Tensor], tokens: torch.Tensor,
                  detector: str) -> HeadTable:
    """One pattern detector over several layers.

    Args:
        patterns: ``{layer: (B, H, L, L)}`` self-attention weights of all heads and rows
            (e.g. ``Capture.patterns()``).
        tokens: ``(B, L)`` the input the patterns came from.
        detector: ``"previous_token"``, ``"duplicate_token"`` or ``"induction"``.

    Returns:
        a :class:`HeadTable`.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {sorted(DETECTORS)}, got {detector!r}")
    if not patterns:
        raise ValueError("patterns must hold at least one layer")
    rows = {}
    for name, pattern in patterns.items():
        if pattern.dim() != 4 or pattern.shape[2] != pattern.shape[3]:
            raise ValueError(f"patterns[{name!r}] must be square self-attention weights "
                             f"(B, H, L, L), got {tuple(pattern.shape)}; leave cross-attention "
                             f"out (capture(..., layers=...))")
        _check_tokens(tokens, pattern.shape[2])
        rows[name] = pattern_score(pattern, DETECTORS[detector](tokens))
    return _table(detector, rows)


def copying_scores(model: nn.Module, *, embedding: torch.Tensor | None = None,
                   unembedding: torch.Tensor | None = None,
                   layers: Sequence[str] | None = None) -> HeadTable:
    """The OV-circuit copying score of every head (module docstring).

    Args:
        model: a model with :class:`~attnkit.nn.MultiHeadAttention` modules whose values
            read the token embeddings' space (``vdim == E``).
        embedding: ``W_E (V, E)``; default ``model.embed.token.weight`` (GPT).
        unembedding: ``W_U (V, E)`` (logits ``= x W_U^T``); default ``model.lm_head.weight``.
        layers: module paths to score (default: every MultiHeadAttention).

    Returns:
        a :class:`HeadTable` named ``"copying"``, scores in ``[-1, 1]`` (0 for a head whose
        circuit is zero).
    """
    if embedding is None:
        embedding = getattr(getattr(getattr(model, "embed", None), "token", None), "weight",
                            None)
    if unembedding is None:
        unembedding = getattr(getattr(model, "lm_head", None), "weight", None)
    for name, value in (("embedding", embedding), ("unembedding", unembedding)):
        if not isinstance(value, torch.Tensor) or value.dim() != 2:
            raise ValueError(f"{name}: pass the (V, E) matrix; it could not be found on "
                             f"{type(model).__name__} (only GPT's are found by default)")
    if embedding.shape != unembedding.shape:
        raise ValueError(f"embedding {tuple(embedding.shape)} and unembedding "
                         f"{tuple(unembedding.shape)} must both be (V, E)")
    modules = {name: m for name, m in attention_modules(model).items()
               if isinstance(m, MultiHeadAttention)}
    if layers is not None:
        missing = [name for name in layers if name not in modules]
        if missing:
            raise ValueError(f"layers: {missing} are not MultiHeadAttention modules of the "
                             f"model; it has {list(modules)}")
        modules = {name: modules[name] for name in layers}
    if not modules:
        raise ValueError("model has no MultiHeadAttention module to score")
    with torch.no_grad():
        middle = embedding.double().T @ unembedding.double()  # (E, E) = W_E^T W_U
        rows = {}
        for name, module in modules.items():
            if module.vdim != middle.shape[0]:
                raise ValueError(f"{name!r}: values read {module.vdim} features but the "
                                 f"embedding has {middle.shape[0]}")
            rows[name] = _head_copying(module, middle)
    return _table("copying", rows)


def _head_copying(module: MultiHeadAttention, middle: torch.Tensor) -> torch.Tensor:
    Dh, group = module.head_dim, module.num_heads // module.num_kv_heads
    w_v = module.v_proj.weight.double()  # (Hkv Dh, E)
    w_o = module.out_proj.weight.double()  # (E, Hq Dh)
    scores = []
    for head in range(module.num_heads):
        kv = head // group
        circuit = w_v[kv * Dh:(kv + 1) * Dh] @ middle @ w_o[:, head * Dh:(head + 1) * Dh]
        eig = torch.linalg.eigvals(circuit)  # (Dh,) complex
        total = eig.abs().sum().item()
        scores.append(eig.real.sum().item() / total if total > 0 else 0.0)
    return torch.tensor(scores, dtype=torch.float64)


def detect_heads(model: nn.Module, tokens: torch.Tensor, *,
                 forward: Callable[[torch.Tensor], object] | None = None,
                 layers: Sequence[str | int] | None = None,
                 detectors: Sequence[str] = tuple(DETECTORS)) -> dict[str, HeadTable]:
    """Run ``model`` on ``tokens`` under :func:`capture` and score every head.

    Args:
        model: a model of self-attention layers (GPT, an encoder, a custom stack).
        tokens: ``(B, L)`` long, e.g. :func:`repeated_random_tokens`.
        forward: ``forward(tokens)`` runs the model (default ``model(tokens)``).
        layers: the self-attention modules to score (default: all attention modules).
        detectors: names in :data:`DETECTORS`.

    Returns:
        ``{detector: HeadTable}``. Runs under ``torch.no_grad()``; the model's mode is
        left as it is (call ``model.eval()`` to switch dropout off).
    """
    tokens = _check_tokens(tokens)
    unknown = sorted(set(detectors) - set(DETECTORS))
    if unknown or not detectors:
        raise ValueError(f"detectors must be a non-empty subset of {sorted(DETECTORS)}, got "
                         f"{list(detectors)}")
    run = model if forward is None else forward
    with torch.no_grad(), capture(model, layers=layers, store=("weights",)) as cap:
        run(tokens)
    patterns = cap.patterns()
    return {name: pattern_table(patterns, tokens, name) for name in detectors}
