"""Token-budget batches of a parallel split, for :class:`attnkit.train.Trainer`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attnkit._validate import check_int
from attnkit.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

__all__ = ["TranslationBatches"]


class TranslationBatches:
    """Token-budget batches of a parallel split, as ``batch_fn(step, rank, world_size)``.

    Pairs are encoded once. Pairs longer than ``max_len`` tokens (source, or target + 1)
    are dropped and counted in :attr:`num_dropped`. The rest are sorted by padded length
    (ties in a seeded random order) and cut greedily into batches whose
    ``rows * max(source length, target length + 1)`` stays within ``max_tokens``. Batch
    contents are fixed; their order is reshuffled every epoch from ``(seed, epoch)``.

    A step's batch is the global batch; rank ``r`` of ``world_size`` takes the contiguous
    rows ``[r * n // world_size, (r + 1) * n // world_size)``, so the ranks' slices are
    disjoint and together cover the batch.

    Example::

        batches = TranslationBatches(corpus.train, tokenizer, max_tokens=4096)
        batch = batches(step=0)          # {"src", "src_lengths", "tgt_in", "tgt_out"}
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], tokenizer, *, max_tokens: int = 4096,
                 max_len: int | None = 128, seed: int = 0):
        """
        Args:
            pairs: N ``(source, target)`` string pairs.
            tokenizer: anything with ``encode_batch(list[str]) -> list[list[int]]``.
            max_tokens: padded-token budget of one global batch.
            max_len: longest source (and target + 1) kept, in tokens; None keeps all.
            seed: seed of the tie order and the per-epoch batch order.
        """
        check_int(max_tokens, "max_tokens", minimum=1)
        if max_len is not None:
            check_int(max_len, "max_len", minimum=1, maximum=max_tokens)
        check_int(seed, "seed", minimum=0)
        if not pairs:
            raise ValueError("pairs: expected at least one (source, target) pair, got none")
        for i, pair in enumerate(pairs):
            if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                    or not all(isinstance(text, str) for text in pair)):
                raise TypeError(f"pairs[{i}]: expected a (source, target) pair of str, got "
                                f"{pair!r:.80}")
        sources = tokenizer.encode_batch([p[0] for p in pairs])
        targets = tokenizer.encode_batch([p[1] for p in pairs])
        keep = [i for i in range(len(pairs)) if max_len is None
                or (len(sources[i]) <= max_len and len(targets[i]) + 1 <= max_len)]
        if not keep:
            raise ValueError(f"max_len: all {len(pairs)} pairs are longer than {max_len} "
                             f"tokens")
        self.num_dropped = len(pairs) - len(keep)  # pairs over max_len
        self.max_tokens, self.max_len, self.seed = max_tokens, max_len, seed
        self._sources = [sources[i] for i in keep]
        self._targets = [targets[i] for i in keep]
        src_len = np.array([len(s) for s in self._sources])
        width = np.maximum(src_len, np.array([len(t) + 1 for t in self._targets]))
        ties = np.random.default_rng(seed).permutation(len(keep))
        order = np.lexsort((ties, src_len, width))  # by width, then source length, then ties
        self._batches: list[np.ndarray] = []
        start = 0
        for end in range(1, len(order) + 1):
            if end == len(order) or (end + 1 - start) * width[order[end]] > max_tokens:
                self._batches.append(order[start:end])
                start = end
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self._batches)

    @property
    def num_pairs(self) -> int:
        """Pairs kept (after dropping those over ``max_len``)."""
        return len(self._sources)

    def batch_rows(self, step: int) -> np.ndarray:
        """Indices (into the kept pairs) of step ``step``'s global batch, shape (n,)."""
        step = check_int(int(step) if isinstance(step, np.integer) else step, "step",
                         minimum=0)
        epoch, index = divmod(int(step), len(self._batches))
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch_order = (epoch, rng.permutation(len(self._batches)))
        return self._batches[self._epoch_order[1][index]]

    def __call__(self, step: int, rank: int = 0, world_size: int = 1) -> dict:
        """Rank ``rank``'s share of step ``step``'s batch.

        Returns:
            ``src`` (b, S) long, PAD-padded source ids; ``src_lengths`` (b,) long;
            ``tgt_in`` (b, T) long = BOS + target; ``tgt_out`` (b, T) long = target + EOS,
            PAD elsewhere. b is about n / world_size for the global batch's n rows.
        """
        import torch

        check_int(world_size, "world_size", minimum=1)
        check_int(rank, "rank", minimum=0, maximum=world_size - 1)
        rows = self.batch_rows(step)
        if len(rows) < world_size:
            raise ValueError(f"world_size: step {step}'s batch has {len(rows)} rows, fewer "
                             f"than world_size={world_size}; raise max_tokens")
        mine = rows[rank * len(rows) // world_size:(rank + 1) * len(rows) // world_size]
        sources = [self._sources[i] for i in mine]
        targets = [self._targets[i] for i in mine]
        src = torch.full((len(mine), max(map(len, sources))), PAD_ID, dtype=torch.long)
        tgt_in = torch.full((len(mine), max(map(len, targets)) + 1), PAD_ID, dtype=torch.long)
        tgt_out = tgt_in.clone()
        for row, (source, target) in enumerate(zip(sources, targets, strict=True)):
            src[row, :len(source)] = torch.tensor(source, dtype=torch.long)
            tgt_in[row, :len(target) + 1] = torch.tensor([BOS_ID, *target], dtype=torch.long)
            tgt_out[row, :len(target) + 1] = torch.tensor([*target, EOS_ID], dtype=torch.long)
        src_lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)
        return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}
