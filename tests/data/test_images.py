"""Image data: the IDX reader's checks, the Fashion-MNIST loader and the derived sets."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from attnkit.data.errors import DataError
from attnkit.data.images import (
    BOS,
    CAPTION_VOCAB,
    CLASS_NAMES,
    EOS,
    PAD,
    IdxError,
    ImageSet,
    canvases,
    cluttered,
    fashion_mnist,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
    translated,
)
from attnkit.data.images.idx import encode_idx, parse_idx
from attnkit.errors import UserError


def _source(count: int = 12, seed: int = 0) -> ImageSet:
    """Small stand-in images: item n is filled with the value n + 1 (so pixels identify it)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    for n in range(count):
        images[n, 2:26, 4:24] = n + 1
    return ImageSet(images, rng.integers(0, 10, count).astype(np.int64))


# --- IDX --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_idx_round_trip(dtype):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    back = parse_idx(encode_idx(array))
    assert back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)


def test_idx_reads_gzip_and_plain(tmp_path):
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    (tmp_path / "a.gz").write_bytes(gzip.compress(encode_idx(array)))
    (tmp_path / "a").write_bytes(encode_idx(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz", ndim=3, dtype=np.uint8), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b"\x01" + b[1:], "magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "magic"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: b[:9], "truncated header"),
    (lambda b: b[:3], "shorter than"),
])
def test_idx_refuses_corrupt_files(mangle, message):
    payload = encode_idx(np.zeros((2, 3, 4), dtype=np.uint8))
    with pytest.raises(IdxError, match=message):
        parse_idx(mangle(payload), name="x")


def test_idx_checks_expected_dims_and_type():
    payload = encode_idx(np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(IdxError, match="expected 3 dimensions"):
        parse_idx(payload, ndim=3)
    with pytest.raises(IdxError, match="type"):
        parse_idx(payload, dtype=np.float32)


def test_idx_truncated_gzip_is_a_user_error(tmp_path):
    blob = gzip.compress(encode_idx(np.arange(4000, dtype=np.int32)))
    (tmp_path / "t.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IdxError, match="gzip") as info:
        read_idx(tmp_path / "t.gz")
    assert isinstance(info.value, UserError)
    with pytest.raises(IdxError, match="cannot read"):
        read_idx(tmp_path / "missing.gz")


# --- Fashion-MNIST loader ----------------------------------------------------------------

def _write_fake(folder, train: int, test: int, *, labels_short: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, 28, 28)).astype(np.uint8)
        labels = (np.arange(count - labels_short) % 10).astype(np.uint8)
        (folder / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(encode_idx(images)))
        (folder / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FILES", {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 50),
        "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 20)})
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", fashion_mnist.Path("/nonexistent-x"))
    fashion_mnist._load_part.cache_clear()
    yield
    fashion_mnist._load_part.cache_clear()


def test_loader_splits_and_validation_carve(tmp_path, small_counts):
    _write_fake(tmp_path / "fashion-mnist", 50, 20)
    train = load_fashion_mnist("train", tmp_path, val_size=10)
    val = load_fashion_mnist("val", tmp_path, val_size=10)
    test = load_fashion_mnist("test", tmp_path, val_size=10)
    full = load_fashion_mnist("train-full", tmp_path, val_size=10)
    assert (len(train), len(val), len(test), len(full)) == (40, 10, 20, 50)
    # train and val partition the training images
    rows = {img.tobytes() for img in full.images}
    assert {img.tobytes() for img in train.images} | {img.tobytes() for img in val.images} \
        == rows
    assert not {img.tobytes() for img in train.images} & {img.tobytes() for img in val.images}
    again = load_fashion_mnist("val", tmp_path, val_size=10)
    np.testing.assert_array_equal(again.images, val.images)
    assert val.labels.dtype == np.int64 and val.images.dtype == np.uint8


def test_loader_refuses_mismatched_counts(tmp_path, small_counts):
    _write_fake(tmp_path / "fashion-mnist", 50, 20, labels_short=True)
    with pytest.raises(IdxError, match="expected 50 labels"):
        load_fashion_mnist("train", tmp_path, val_size=10)


def test_missing_dataset_says_how_to_fetch(tmp_path, small_counts):
    with pytest.raises(DataError, match="attnkit data fetch --images"):
        find_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("dev", tmp_path)


def test_real_fashion_mnist_when_installed():
    try:
        folder = find_fashion_mnist()
    except DataError:
        if os.environ.get("CI"):  # .ci/run fetches it: missing there is a failure
            pytest.fail("Fashion-MNIST missing under CI (.ci/run runs attnkit data fetch --images)")
        pytest.skip("Fashion-MNIST is not installed (attnkit data fetch --images)")
    del folder
    test = load_fashion_mnist("test")
    assert test.images.shape == (10_000, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert len(load_fashion_mnist("train")) + len(load_fashion_mnist("val")) == 60_000
    assert len(CLASS_NAMES) == 10


# --- derived sets ------------------------------------------------------------------------

def test_translated_places_the_whole_item_in_its_box():
    source = _source()
    out = translated(source, size=60, seed=3)
    assert out.images.shape == (12, 60, 60)
    np.testing.assert_array_equal(out.labels, source.labels)
    for n in range(12):
        x0, y0, x1, y1 = out.boxes[n]
        assert (x1 - x0, y1 - y0) == (28, 28) and 0 <= x0 <= 32 and 0 <= y0 <= 32
        np.testing.assert_array_equal(out.images[n, y0:y1, x0:x1], source.images[n])
        outside = out.images[n].copy()
        outside[y0:y1, x0:x1] = 0
        assert outside.max() == 0


def test_derived_sets_are_deterministic_by_seed():
    source = _source()
    a = cluttered(source, seed=5)
    b = cluttered(source, seed=5)
    c = cluttered(source, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    x = canvases(source, count=7, seed=1)
    y = canvases(source, count=7, seed=1)
    np.testing.assert_array_equal(x.images, y.images)
    np.testing.assert_array_equal(x.tokens, y.tokens)


def test_cluttered_fragments_come_from_other_images():
    source = _source(count=12)
    out = cluttered(source, size=60, fragments=4, fragment_size=8, seed=2)
    for n in range(len(out)):
        x0, y0, x1, y1 = out.boxes[n]
        outside = out.images[n].copy()
        outside[y0:y1, x0:x1] = 0
        values = set(np.unique(outside).tolist()) - {0}
        # clutter outside the item: values of other images only, at most 4 * 64 pixels
        assert n + 1 not in values
        assert (outside > 0).sum() <= 4 * 64
        # the item itself is intact under a max-composition
        assert (out.images[n, y0:y1, x0:x1] >= source.images[n]).all()
    lit = sum(int(((out.images[n] > 0) & (out.images[n] != n + 1)).sum()) for n in range(12))
    assert lit > 0  # some clutter is visible
    assert len(cluttered(source, count=30, seed=0)) == 30


def test_canvas_boxes_tokens_and_order():
    source = _source(count=12)
    sets = canvases(source, count=40, min_items=2, max_items=4, height=36, width=128, seed=0)
    assert sets.images.shape == (40, 36, 128)
    assert set(sets.num_items.tolist()) <= {2, 3, 4}
    assert len(set(sets.num_items.tolist())) > 1
    for n in range(40):
        items = int(sets.num_items[n])
        row = sets.tokens[n]
        assert row[0] == BOS and row[items + 1] == EOS and (row[items + 2:] == PAD).all()
        assert (sets.labels[n, items:] == -1).all() and (sets.boxes[n, items:] == -1).all()
        words = sets.caption(n).split(" ")
        names = [CAPTION_VOCAB[3 + int(c)] for c in sets.labels[n, :items]]
        assert len(sets.caption(n)) == len(" ".join(names))
        assert len(words) >= items
        for k in range(items):
            x0, y0, x1, y1 = sets.boxes[n, k]
            assert x1 - x0 == 28 and y1 - y0 == 28 and 0 <= y0 <= 8 and x1 <= 128
            if k:
                assert x0 >= sets.boxes[n, k - 1, 2]  # left to right, no overlap
            crop = sets.images[n, y0:y1, x0:x1]
            value = int(crop.max())  # which source image sits in the box
            np.testing.assert_array_equal(crop, source.images[value - 1])
            assert sets.labels[n, k] == source.labels[value - 1]
            assert row[1 + k] == 3 + sets.labels[n, k]


def test_derived_argument_errors():
    source = _source()
    with pytest.raises(ValueError, match="size"):
        translated(source, size=20)
    with pytest.raises(ValueError, match="fragment_size"):
        cluttered(source, fragment_size=40)
    with pytest.raises(ValueError, match="width"):
        canvases(source, count=3, width=100)
    with pytest.raises(ValueError, match="min_items"):
        canvases(source, count=3, min_items=3, max_items=2)
