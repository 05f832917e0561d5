"""One small collective before the real work, so that every rank refuses together.

A rank whose own arguments are wrong raises at once, but its peers would then block
in the next collective until the process group's timeout. :func:`agree` all-gathers a
few integers describing each rank's call (or a failure flag) first; every rank then
sees the same table and raises the same error, and none starts a transfer its peers
will not match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

__all__ = ["agree", "checked_agree", "SLOTS"]

SLOTS = 24  # integers one rank may describe itself with


def _device(group: dist.ProcessGroup | None) -> torch.device:
    """Where a collective's tensor must live: CUDA for NCCL, CPU otherwise."""
    if "nccl" in str(dist.get_backend(group)):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree(group: dist.ProcessGroup | None, who: str, values: Sequence[int] | None,
          ) -> list[list[int]]:
    """All-gather ``values`` (at most :data:`SLOTS` ints) from every rank of ``group``.

    Args:
        group: the process group (None: the default group).
        who: the argument named in the error a peer's failure raises here.
        values: this rank's description of its call, or None when this rank has already
            failed (it then calls ``agree`` only to tell its peers, and raises its own
            error afterwards).

    Returns:
        Every rank's ``values``, indexed by rank in ``group``.

    Raises:
        ValueError naming ``who`` when another rank passed None.
    """
    row = torch.zeros(SLOTS + 2, dtype=torch.int64)
    if values is not None:
        values = [int(v) for v in values]
        if len(values) > SLOTS:
            raise ValueError(f"agree: at most {SLOTS} values, got {len(values)}")
        row[0], row[1] = 1, len(values)
        row[2:2 + len(values)] = torch.tensor(values, dtype=torch.int64)
    row = row.to(_device(group))
    rows = [torch.empty_like(row) for _ in range(dist.get_world_size(group))]
    dist.all_gather(rows, row, group=group)
    table = [r.cpu().tolist() for r in rows]
    failed = [rank for rank, r in enumerate(table) if r[0] == 0]
    if values is not None and failed:
        raise ValueError(f"{who}: rank(s) {failed} refused their arguments (their own error "
                         f"says why); no rank started the call")
    return [r[2:2 + r[1]] for r in table]


def checked_agree(group: dist.ProcessGroup | None, who: str,
                  describe: Callable[[], Sequence[int]]) -> list[list[int]]:
    """Run this rank's own checks (``describe``), then :func:`agree` on the result.

    If ``describe`` raises, the peers are told first (so they raise too instead of
    waiting for this rank), then the error propagates here.
    """
    try:
        values = describe()
    except Exception:
        agree(group, who, None)
        raise
    return agree(group, who, values)
