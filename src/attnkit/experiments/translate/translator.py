"""A trained translation model with its tokenizer: text in, text and alignments out.

:func:`load_translator` rebuilds one from a report directory, its ``checkpoints/`` folder or
a ``ckpt-*`` folder (safetensors + JSON, nothing unpickled); :func:`translate_text`
translates one sentence. Decoding is beam search with the GNMT length penalty
(:func:`attnkit.train.beam_search`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from attnkit._validate import check_float, check_int
from attnkit.data import load_tokenizer
from attnkit.errors import UserError
from attnkit.experiments.translate.config import MAX_BEAM, MODEL_KINDS, SIZES
from attnkit.experiments.translate.model import build_model, max_source_tokens
from attnkit.interp import Alignment
from attnkit.train import CheckpointError, beam_search, latest_checkpoint, load_checkpoint

__all__ = ["Translator", "load_translator", "resolve_checkpoint", "translate_text"]


class Translator:
    """A model and its tokenizer.

    Args:
        model: a seq2seq model of :mod:`attnkit.models` (the decoding protocol).
        tokenizer: the joint tokenizer it was trained with.
        kind: its name in MODEL_KINDS (used as the plot title).
        beam_size: hypotheses kept per sentence (1: greedy).
        length_penalty: GNMT alpha, >= 0.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, kind: str, *, beam_size: int = 4,
                 length_penalty: float = 0.6) -> None:
        self.model, self.tokenizer, self.kind = model, tokenizer, kind
        self.beam_size, self.length_penalty = beam_size, length_penalty

    @property
    def max_source_tokens(self) -> int | None:
        """The longest source (in tokens) the model has positions for; None: no limit."""
        return max_source_tokens(self.model)

    @torch.no_grad()
    def translate(self, sentences: Sequence[str], *, batch_size: int = 64,
                  return_alignment: bool = False):
        """Translate N sentences.

        Args:
            sentences: N English sentences; each must fit :attr:`max_source_tokens`.
            batch_size: sentences decoded together (sorted by length first).
            return_alignment: also return each sentence's (T, S) attention matrix.

        Returns:
            (N translations, N :class:`~attnkit.interp.Alignment` or None).
        """
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise TypeError("sentences: expected a list of str")
        check_int(batch_size, "batch_size", minimum=1)
        check_int(self.beam_size, "beam_size", minimum=1, maximum=MAX_BEAM)
        check_float(self.length_penalty, "length_penalty", low=0.0)
        encoded = self.tokenizer.encode_batch(list(sentences))
        limit = self.max_source_tokens
        if limit is not None:
            for i, ids in enumerate(encoded):
                if len(ids) > limit:
                    raise ValueError(f"sentences[{i}]: {len(ids)} tokens, but this {self.kind} "
                                     f"has positions for {limit}; split the sentence")
        self.model.eval()
        device = next(self.model.parameters()).device
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        outputs: list[str] = [""] * len(encoded)
        alignments: list[Any] = [None] * len(encoded)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            lengths = torch.tensor([max(len(encoded[i]), 1) for i in rows])
            src = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)  # (B, S)
            for r, i in enumerate(rows):
                src[r, :len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long)
            result = beam_search(self.model, src.to(device), lengths.to(device),
                                 beam_size=self.beam_size,
                                 max_len=self._step_limit(limit),
                                 length_penalty=self.length_penalty,
                                 return_alignment=return_alignment)
            for r, i in enumerate(rows):
                outputs[i] = self.tokenizer.decode(result.tokens[r])
                if return_alignment:
                    alignments[i] = self._alignment(result, r, encoded[i])
        return outputs, (alignments if return_alignment else None)

    @staticmethod
    def _step_limit(limit: int | None):
        """Output steps allowed for sources of given lengths: twice the source plus ten,
        within the model's positions."""
        if limit is None:
            return lambda n: 2 * n + 10
        return lambda n: torch.clamp(2 * n + 10, max=limit)

    def _alignment(self, result, row: int, source_ids: list[int]) -> Alignment:
        weights = None if result.alignments is None else result.alignments[row]
        target = self.tokenizer.tokens(result.tokens[row])
        if result.reached_eos[row]:  # the EOS step has an alignment row too
            target.append("</s>")
        source = self.tokenizer.tokens(source_ids)
        if weights is not None:
            weights = weights[:len(target), :len(source)].float().cpu()  # (T, S)
        return Alignment(source, target, weights, title=self.kind)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The ``ckpt-*`` folder that ``path`` names: itself, or the newest one in a report
    directory or its ``checkpoints/`` folder. :class:`UserError` when there is none."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"checkpoint: {path} does not exist")
    if (path / "checkpoints").is_dir():  # a report directory
        path = path / "checkpoints"
    if not (path / "state.json").is_file():  # a checkpoints folder: take the newest
        newest = latest_checkpoint(path) if path.is_dir() else None
        if newest is None:
            raise UserError(f"checkpoint: {path} holds no checkpoint (expected a report "
                            f"directory, its checkpoints/ folder or a ckpt-* folder)")
        path = Path(newest)
    return path


def load_translator(path: str | os.PathLike) -> tuple[Translator, dict[str, Any]]:
    """A :class:`Translator` from a report directory, a checkpoints folder or a ckpt-* folder.

    Returns:
        the translator and the checkpoint's ``model_config`` (with its TranslateConfig under
        ``"translate_config"``).

    Raises:
        UserError: no checkpoint there, a corrupt one, or one not written by
            ``attnkit translate``.
    """
    ckpt_dir = resolve_checkpoint(path)
    try:
        checkpoint = load_checkpoint(ckpt_dir)
    except CheckpointError as exc:
        raise UserError(f"checkpoint: {exc}") from None
    model_config = checkpoint.state.get("model_config") or {}
    kind, size = model_config.get("kind"), model_config.get("size")
    if kind not in MODEL_KINDS or size not in SIZES:
        raise UserError(f"checkpoint: {ckpt_dir} was not written by `attnkit translate` "
                        f"(its model_config names no known model)")
    tokenizer_path = next((p / "tokenizer.json" for p in (ckpt_dir, ckpt_dir.parent)
                           if (p / "tokenizer.json").is_file()), None)
    if tokenizer_path is None:
        raise UserError(f"checkpoint: no tokenizer.json in {ckpt_dir} or its parent")
    tokenizer = load_tokenizer(tokenizer_path)  # a corrupt file raises DataError (a UserError)
    if tokenizer.vocab_size != model_config.get("vocab_size"):
        raise UserError(f"checkpoint: {tokenizer_path} has {tokenizer.vocab_size} tokens "
                        f"but the model was trained with {model_config.get('vocab_size')}")
    shape = model_config.get("translate_config") or {}
    try:
        model, _ = build_model(kind, tokenizer.vocab_size, size, width=shape.get("width"),
                               layers=shape.get("layers"), dropout=shape.get("dropout"))
    except (TypeError, ValueError) as exc:  # a damaged or hand-edited model_config
        raise UserError(f"checkpoint: {ckpt_dir} holds an invalid model shape ({exc})") \
            from None
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as exc:
        raise UserError(f"checkpoint: weights in {ckpt_dir} do not fit a {kind} "
                        f"({str(exc).splitlines()[0]})") from None
    return Translator(model.eval(), tokenizer, kind), model_config


def translate_text(path: str | os.PathLike, text: str, *,
                   beam_size: int = 4) -> tuple[str, Alignment]:
    """Translate one sentence with a checkpoint; returns (translation, Alignment).

    A sentence longer than the model's positions is refused (:class:`UserError` naming the
    limit) rather than cut, so that nothing is silently dropped.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    if not text.strip():
        raise UserError("text: expected a non-empty sentence")
    check_int(beam_size, "beam_size", minimum=1, maximum=MAX_BEAM)
    translator, _ = load_translator(path)
    translator.beam_size = beam_size
    limit = translator.max_source_tokens
    length = len(translator.tokenizer.encode_batch([text])[0])
    if limit is not None and length > limit:
        raise UserError(f"text: {length} tokens, but this {translator.kind} has positions "
                        f"for {limit}; split the sentence")
    outputs, alignments = translator.translate([text], return_alignment=True)
    return outputs[0], alignments[0]
