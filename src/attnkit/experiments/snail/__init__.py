"""``attnkit snail``: few-shot classification of Unifont glyphs with SNAIL (Mishra et al.
2018, arXiv:1707.03141), its ablations (TC blocks only, attention blocks only) and a
prototypical network (Snell et al. 2017, arXiv:1703.05175) at an equal budget.

Data (:mod:`attnkit.data.glyphs`): GNU Unifont's bitmaps, Unicode blocks as alphabets,
disjoint training, validation and test alphabets, rotations as extra classes, and random
affine distortions as the "drawings" of a glyph (Unifont has one bitmap per glyph, Omniglot
20 drawings per character). Models: :mod:`attnkit.models.snail` and
:mod:`attnkit.models.protonet`, all on the same embedding CNN. Every model trains for the same
number of updates on the same episodes; the best validation evaluation is tested on 1000
test episodes with a 95% interval (:mod:`.run`); :mod:`.report` writes the report.
"""

from attnkit.experiments.snail.config import MODEL_KINDS, PRESETS, SnailRunConfig

__all__ = ["MODEL_KINDS", "PRESETS", "SnailRunConfig"]
