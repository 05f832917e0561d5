"""Real images (Fashion-MNIST from IDX files) and sets composed from them.

* :mod:`~attnkit.data.images.idx` -- a checked reader of IDX files (plain or gzip).
* :mod:`~attnkit.data.images.fashion_mnist` -- the loader, class names, a validation split.
* :mod:`~attnkit.data.images.derived` -- translated and cluttered 60x60 images, and
  canvases of 2 to 4 items with captions and item boxes.
"""

from attnkit.data.images.derived import (
    BOS,
    CAPTION_VOCAB,
    EOS,
    PAD,
    CanvasSet,
    Composed,
    canvases,
    caption_text,
    class_token,
    cluttered,
    translated,
)
from attnkit.data.images.fashion_mnist import (
    CLASS_NAMES,
    ImageSet,
    find_fashion_mnist,
    load_fashion_mnist,
)
from attnkit.data.images.idx import IdxError, read_idx

__all__ = ["IdxError", "read_idx", "CLASS_NAMES", "ImageSet", "find_fashion_mnist",
           "load_fashion_mnist", "Composed", "CanvasSet", "CAPTION_VOCAB", "PAD", "BOS", "EOS",
           "translated", "cluttered", "canvases", "caption_text", "class_token"]
