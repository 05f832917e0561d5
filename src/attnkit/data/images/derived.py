"""Derived image sets, each a composition of real Fashion-MNIST images, deterministic by seed.

Nothing here is synthetic content: every pixel comes from a real image of the source set;
only positions are drawn at random (``numpy.random.default_rng(seed)``, so the same source,
size and seed give the same set, byte for byte). Pixels are combined by a maximum, as the
images are bright items on a black (0) background.

* :func:`translated` -- the 28x28 image pasted at a uniformly random position of a blank
  ``size x size`` canvas (60x60 by default), as the "translated MNIST" of Mnih, Heess, Graves
  & Kavukcuoglu, "Recurrent Models of Visual Attention", 2014, arXiv:1406.6247.
* :func:`cluttered` -- the same, plus ``fragments`` random ``fragment_size x
  fragment_size`` crops (4 of 8x8 by default, as the paper's cluttered 60x60) of *other*
  images of the set at random positions: clutter that looks locally like an item.
* :func:`canvases` -- 2 to 4 images in a row, left to right with random gaps and vertical
  jitter, whose caption is the items' class names in reading order, with each item's box
  (so a captioner's attention can be scored by pointing accuracy).

Deviation from the paper: the source images are Fashion-MNIST, not MNIST digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnkit.data.images.fashion_mnist import CLASS_NAMES, ImageSet

__all__ = ["Composed", "CanvasSet", "CAPTION_VOCAB", "PAD", "BOS", "EOS", "translated",
           "cluttered", "canvases", "caption_text", "class_token"]

#: caption vocabulary: three specials, then one token per class name (id ``3 + label``)
CAPTION_VOCAB: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", *CLASS_NAMES)
PAD, BOS, EOS = 0, 1, 2


def class_token(label: int) -> int:
    """The caption token id of class ``label``."""
    return 3 + int(label)


@dataclass(frozen=True)
class Composed:
    """Images with one item each.

    Attributes:
        images: ``(N, S, S)`` uint8.
        labels: ``(N,)`` int64, the item's class.
        boxes: ``(N, 4)`` int64 ``(x0, y0, x1, y1)`` of the pasted item's 28x28 square,
            ``x1``/``y1`` exclusive (pixel columns/rows).
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class CanvasSet:
    """Canvases of 2 to 4 items in a row.

    Attributes:
        images: ``(N, H, W)`` uint8.
        num_items: ``(N,)`` int64, items per canvas.
        labels: ``(N, max_items)`` int64 classes in reading (left-to-right) order, -1 padded.
        boxes: ``(N, max_items, 4)`` int64 ``(x0, y0, x1, y1)`` per item (exclusive ends),
            -1 padded.
        tokens: ``(N, max_items + 2)`` int64 caption ``<bos> name ... <eos>``, ``<pad>`` after.
    """

    images: np.ndarray
    num_items: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    tokens: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def caption(self, index: int) -> str:
        """The caption of canvas ``index`` as text."""
        return caption_text(self.tokens[index])


def caption_text(tokens: np.ndarray | list[int]) -> str:
    """Class names of a token row joined by spaces, stopping at ``<eos>`` (specials dropped)."""
    words = []
    for token in np.asarray(tokens).tolist():
        if token == EOS:
            break
        if token >= 3:
            words.append(CAPTION_VOCAB[token])
    return " ".join(words)


def _check(source: ImageSet, size: int, name: str = "size") -> tuple[int, int]:
    if not isinstance(source, ImageSet) or len(source) == 0:
        raise TypeError(f"source must be a non-empty ImageSet, got {type(source).__name__}")
    height, width = source.images.shape[1:]
    if isinstance(size, bool) or not isinstance(size, int) or size < max(height, width):
        raise ValueError(f"{name} must be an int >= the item size {max(height, width)}, got "
                         f"{size!r}")
    return height, width


def _count(count: int | None, source: ImageSet) -> int:
    if count is None:
        return len(source)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int or None, got {count!r}")
    return count


def _paste(source: ImageSet, size: int, count: int | None,
           rng: np.random.Generator) -> tuple[Composed, np.ndarray]:
    height, width = _check(source, size)
    count = _count(count, source)
    # count == len(source): each image once, in order; otherwise drawn with replacement
    index = np.arange(count) if count == len(source) else rng.integers(0, len(source), count)
    x0 = rng.integers(0, size - width + 1, count)
    y0 = rng.integers(0, size - height + 1, count)
    images = np.zeros((count, size, size), dtype=np.uint8)
    for n in range(count):
        images[n, y0[n]:y0[n] + height, x0[n]:x0[n] + width] = source.images[index[n]]
    boxes = np.stack([x0, y0, x0 + width, y0 + height], axis=1).astype(np.int64)
    return Composed(images, source.labels[index].astype(np.int64), boxes), index


def translated(source: ImageSet, *, size: int = 60, count: int | None = None,
               seed: int = 0) -> Composed:
    """Each image at a random position of a blank ``size x size`` canvas.

    Args:
        source: the real images (``(N, 28, 28)``).
        size: canvas side, at least the image side.
        count: images to make (None: one per source image, in order; otherwise drawn with
            replacement).
        seed: positions (and the draw).

    Returns:
        :class:`Composed` with ``images (count, size, size)``.
    """
    return _paste(source, size, count, np.random.default_rng(seed))[0]


def cluttered(source: ImageSet, *, size: int = 60, fragments: int = 4,
              fragment_size: int = 8, count: int | None = None, seed: int = 0) -> Composed:
    """:func:`translated`, plus ``fragments`` random crops of other images as clutter.

    Each fragment is a random ``fragment_size`` square of a random image of ``source``
    (never the item's own image when the set has more than one) pasted at a random position
    (it may overlap the item; pixels combine by maximum).

    Returns:
        :class:`Composed` with ``images (count, size, size)``; ``boxes`` is the item's square.
    """
    if isinstance(fragments, bool) or not isinstance(fragments, int) or fragments < 0:
        raise ValueError(f"fragments must be an int >= 0, got {fragments!r}")
    height, width = _check(source, size)
    if isinstance(fragment_size, bool) or not isinstance(fragment_size, int) or \
            not 1 <= fragment_size <= min(height, width):
        raise ValueError(f"fragment_size must be an int in [1, {min(height, width)}], got "
                         f"{fragment_size!r}")
    rng = np.random.default_rng(seed)
    base, index = _paste(source, size, count, rng)
    count, side = len(base), fragment_size
    other = rng.integers(0, len(source), (count, fragments))
    if len(source) > 1:  # shift a draw of the item itself onto the next image
        other = np.where(other == index[:, None], (other + 1) % len(source), other)
    crop_x = rng.integers(0, width - side + 1, (count, fragments))
    crop_y = rng.integers(0, height - side + 1, (count, fragments))
    put_x = rng.integers(0, size - side + 1, (count, fragments))
    put_y = rng.integers(0, size - side + 1, (count, fragments))
    images = base.images
    for n in range(count):
        for f in range(fragments):
            piece = source.images[other[n, f], crop_y[n, f]:crop_y[n, f] + side,
                                  crop_x[n, f]:crop_x[n, f] + side]
            window = images[n, put_y[n, f]:put_y[n, f] + side, put_x[n, f]:put_x[n, f] + side]
            np.maximum(window, piece, out=window)
    return base


def canvases(source: ImageSet, *, count: int, min_items: int = 2, max_items: int = 4,
             height: int = 36, width: int = 128, seed: int = 0) -> CanvasSet:
    """Canvases of ``min_items`` to ``max_items`` images in a row, with their captions.

    The item count is uniform in ``[min_items, max_items]``; items are drawn with replacement
    from ``source``; the free width ``width - n * 28`` is split into ``n + 1`` random gaps
    (so items never overlap and keep their left-to-right order), and each item is placed at a
    random row offset in ``[0, height - 28]``.

    Returns:
        :class:`CanvasSet` with ``images (count, height, width)``.
    """
    count = _count(count, source)
    item_h, item_w = _check(source, height, "height")
    for name, value in (("min_items", min_items), ("max_items", max_items)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if min_items > max_items:
        raise ValueError(f"min_items ({min_items}) exceeds max_items ({max_items})")
    if isinstance(width, bool) or not isinstance(width, int) or width < max_items * item_w:
        raise ValueError(f"width must be an int >= max_items * {item_w} = "
                         f"{max_items * item_w}, got {width!r}")
    rng = np.random.default_rng(seed)
    num_items = rng.integers(min_items, max_items + 1, count)
    images = np.zeros((count, height, width), dtype=np.uint8)
    labels = np.full((count, max_items), -1, dtype=np.int64)
    boxes = np.full((count, max_items, 4), -1, dtype=np.int64)
    tokens = np.full((count, max_items + 2), PAD, dtype=np.int64)
    for n in range(count):
        items = int(num_items[n])
        chosen = rng.integers(0, len(source), items)
        slack = width - items * item_w
        cuts = np.sort(rng.integers(0, slack + 1, items))  # gap k ends at cuts[k]
        rows = rng.integers(0, height - item_h + 1, items)
        tokens[n, 0] = BOS
        for k in range(items):
            x0, y0 = int(cuts[k]) + k * item_w, int(rows[k])
            images[n, y0:y0 + item_h, x0:x0 + item_w] = source.images[chosen[k]]
            labels[n, k] = source.labels[chosen[k]]
            boxes[n, k] = (x0, y0, x0 + item_w, y0 + item_h)
            tokens[n, 1 + k] = class_token(labels[n, k])
        tokens[n, 1 + items] = EOS
    return CanvasSet(images, num_items.astype(np.int64), labels, boxes, tokens)
