"""Scoring: greedy decoding of test examples, token accuracy and exact match by source
length, accuracy by copy distance; the teacher-forced validation accuracy of the curve.

Token accuracy of an example is position by position: output token ``i`` is right when it
equals target token ``i``; a missing position (the output ended early) is wrong, extra
output tokens change nothing here but fail the exact match. Exact match: the whole output
(up to EOS) equals the target. Aggregates are over tokens (accuracy) or examples (exact
match) of the bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attnkit._validate import check_int
from attnkit.data import BOS_ID, EOS_ID, PAD_ID
from attnkit.experiments.longrange.data import (
    Example,
    bucket_index,
    bucket_label,
    buckets,
    collate,
    copy_distance,
    pad_mask,
)
from attnkit.train import greedy_decode

__all__ = ["decode", "score", "teacher_forced_accuracy"]


def decode(model: torch.nn.Module, examples: Sequence[Example], *,
           batch_size: int = 128) -> list[list[int]]:
    """Greedy outputs (ids, without BOS/EOS) of ``examples``, at most ``len(source) + 2``
    tokens each; examples are batched by length to limit padding."""
    check_int(batch_size, "batch_size", minimum=1)
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda k: len(examples[k].source))
    outputs: list[list[int]] = [[] for _ in examples]
    for first in range(0, len(order), batch_size):
        chunk = order[first:first + batch_size]
        batch = collate([examples[k] for k in chunk])
        result = greedy_decode(model, batch["src"].to(device), batch["src_lengths"].to(device),
                               max_len=batch["src_lengths"].to(device) + 3, bos_id=BOS_ID,
                               eos_id=EOS_ID, pad_id=PAD_ID)
        for k, tokens in zip(chunk, result.tokens, strict=True):
            outputs[k] = list(tokens)
    return outputs


def score(examples: Sequence[Example], outputs: Sequence[Sequence[int]], task: str, *,
          min_len: int, max_len: int, long_min: int) -> dict[str, Any]:
    """Accuracy of ``outputs`` against ``examples``' targets.

    Returns:
        ``token_accuracy``, ``exact_match`` and ``examples`` over all examples;
        ``by_length``: one entry per source-length bucket (``bucket``, ``examples``,
        ``tokens``, ``token_accuracy``, ``exact_match``); ``by_distance``: one per
        copy-distance bucket (``bucket``, ``tokens``, ``accuracy``); ``long``: the same
        totals over sources of at least ``long_min`` tokens (None if there are none).
    """
    if len(examples) != len(outputs):
        raise ValueError(f"outputs: expected {len(examples)} outputs, got {len(outputs)}")
    length_buckets = buckets(min_len, max_len)
    distance_buckets = buckets(1, 2 * max_len)
    by_length = [[0, 0, 0, 0] for _ in length_buckets]  # examples, exact, tokens, right
    by_distance = [[0, 0] for _ in distance_buckets]  # tokens, right
    long = [0, 0, 0, 0]
    for example, output in zip(examples, outputs, strict=True):
        length = len(example.source)
        right = [k < len(output) and output[k] == t for k, t in enumerate(example.target)]
        exact = list(output) == list(example.target)
        rows = [by_length[bucket_index(length, length_buckets)]]
        if length >= long_min:
            rows.append(long)
        for row in rows:
            row[0] += 1
            row[1] += exact
            row[2] += len(right)
            row[3] += sum(right)
        for position, ok in enumerate(right):
            cell = by_distance[bucket_index(copy_distance(task, position, length),
                                            distance_buckets)]
            cell[0] += 1
            cell[1] += ok
    tokens = sum(row[2] for row in by_length)
    return {
        "examples": len(examples),
        "token_accuracy": sum(row[3] for row in by_length) / max(tokens, 1),
        "exact_match": sum(row[1] for row in by_length) / max(len(examples), 1),
        "by_length": [{"bucket": bucket_label(b), "examples": n, "tokens": t,
                       "token_accuracy": r / t if t else None,
                       "exact_match": e / n if n else None}
                      for b, (n, e, t, r) in zip(length_buckets, by_length, strict=True)],
        "by_distance": [{"bucket": bucket_label(b), "tokens": t,
                         "accuracy": r / t if t else None}
                        for b, (t, r) in zip(distance_buckets, by_distance, strict=True) if t],
        "long": None if not long[0] else {
            "min_length": long_min, "examples": long[0], "tokens": long[2],
            "token_accuracy": long[3] / long[2], "exact_match": long[1] / long[0]},
    }


def teacher_forced_accuracy(model: torch.nn.Module, examples: Sequence[Example], *,
                            batch_size: int = 64) -> dict[str, float]:
    """Token accuracy and mean token loss with the gold prefix fed (the validation curve)."""
    check_int(batch_size, "batch_size", minimum=1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    right = total = 0
    loss = 0.0
    with torch.no_grad():
        for first in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[first:first + batch_size])
                     .items()}
            logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])  # (B, T, V)
            keep = pad_mask(batch)  # (B, T)
            right += int(((logits.argmax(-1) == batch["tgt_out"]) & keep).sum())
            total += int(keep.sum())
            loss += float(torch.nn.functional.cross_entropy(
                logits[keep], batch["tgt_out"][keep], reduction="sum"))
    model.train(was_training)
    return {"valid_accuracy": right / max(total, 1), "valid_loss": loss / max(total, 1)}
