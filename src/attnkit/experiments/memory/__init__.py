"""``attnkit memory``: end-to-end memory networks (Sukhbaatar et al. 2015, arXiv 1503.08895)
trained jointly on generated bAbI-style tasks (:mod:`attnkit.data.babi`, not the official
data), 1 hop against 3 hops at equal epochs, per-task error beside the paper's Table 1."""

from attnkit.experiments.memory.config import PRESETS, MemoryConfig

__all__ = ["MemoryConfig", "PRESETS"]
