"""Published bAbI test error rates (%) of MemN2N: Sukhbaatar et al. (2015), arXiv 1503.08895,
Table 1, 1k training examples, jointly trained models, tasks 1..20 in order.

These are errors on the official bAbI data; ours are on generated data (see
:mod:`attnkit.data.babi`), so they compare in kind only. Transcribed from the table; each
column's mean reproduces the mean the paper prints for it (12.4 and 25.8).
"""

from __future__ import annotations

__all__ = ["PAPER_1K", "paper_mean"]

#: column name -> 20 errors (%) for tasks 1..20
PAPER_1K: dict[str, list[float]] = {
    "PE LS RN joint, 3 hops": [0.0, 11.4, 21.9, 13.4, 14.4, 2.8, 18.3, 9.3, 1.9, 6.5, 0.3,
                               0.1, 0.2, 6.9, 0.0, 2.7, 40.4, 9.4, 88.0, 0.0],
    "PE LS joint, 1 hop": [0.8, 62.0, 76.9, 22.8, 11.0, 7.2, 15.9, 13.2, 5.1, 10.6, 8.4, 0.4,
                           6.3, 36.9, 46.4, 47.4, 44.4, 9.6, 90.7, 0.0],
}


def paper_mean(column: str, tasks: list[int]) -> float:
    """The mean error of ``column`` over ``tasks`` (numbers 1..20)."""
    values = PAPER_1K[column]
    return sum(values[t - 1] for t in tasks) / len(tasks)
