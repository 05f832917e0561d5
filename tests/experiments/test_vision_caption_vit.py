"""`attnkit vision caption` and `attnkit vision vit`: the scoring helpers on hand-made inputs,
flag checks (exit 2 before any work) and the --quick runs end to end on a small fake
Fashion-MNIST written by the test."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from _translate_helpers import run_cli

from attnkit.data.images import fashion_mnist
from attnkit.data.images.idx import encode_idx
from attnkit.experiments.report import REPORT_FILES
from attnkit.experiments.vision._caption_report import item_accuracy_needed, sequence_ceiling
from attnkit.experiments.vision._caption_run import pointing_hits, upsample_maps
from attnkit.experiments.vision._vit_run import foreground_share

TRAIN, TEST = 5200, 100  # the loader keeps 5,000 training images for validation


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    """A data dir with a small Fashion-MNIST: items are class-dependent blocks of ink."""
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, count in (("train", TRAIN), ("t10k", TEST)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = np.zeros((count, 28, 28), dtype=np.uint8)
        for n, label in enumerate(labels):
            images[n, 4:24, 2 + 2 * label:8 + 2 * label] = 200
        (folder / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(encode_idx(images)))
        (folder / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
    monkeypatch.setattr(fashion_mnist, "FILES", {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", TRAIN),
        "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", TEST)})
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", fashion_mnist.Path("/nonexistent-x"))
    fashion_mnist._load_part.cache_clear()
    yield tmp_path / "data"
    fashion_mnist._load_part.cache_clear()


# --- scoring helpers ----------------------------------------------------------------------

def test_upsample_maps_places_cells_on_the_canvas():
    alphas = torch.zeros(1, 1, 4 * 16)
    alphas[0, 0, 2 * 16 + 5] = 1.0  # row 2, column 5: pixels 16..23 x 40..47
    maps = upsample_maps(alphas, (4, 16), (36, 128))
    assert maps.shape == (1, 1, 36, 128)
    y, x = divmod(int(maps[0, 0].argmax()), 128)
    assert 16 <= y < 24 and 40 <= x < 48
    assert maps[0, 0, 32:].abs().sum() == 0  # rows the poolings dropped stay empty


def test_pointing_hits_counts_words_inside_their_boxes():
    boxes = np.array([[[0, 0, 28, 28], [40, 4, 68, 32], [-1, -1, -1, -1]]])
    num_items = np.array([2])
    alphas = torch.zeros(1, 3, 64)
    alphas[0, 0, 1 * 16 + 1] = 1.0  # pixel ~ (12, 12): inside item 0
    alphas[0, 1, 1 * 16 + 12] = 1.0  # pixel ~ (12, 100): outside item 1
    alphas[0, 2, 0] = 1.0  # the <eos> step: not a word
    assert pointing_hits(alphas, (4, 16), boxes, num_items, (36, 128)) == (1, 2)
    alphas[0, 1] = 0.0
    alphas[0, 1, 2 * 16 + 6] = 1.0  # pixel ~ (20, 52): inside item 1
    assert pointing_hits(alphas, (4, 16), boxes, num_items, (36, 128)) == (2, 2)


def test_sequence_ceiling_and_the_item_accuracy_it_needs():
    # Uniform 2-4 items: the mean of p^2, p^3, p^4.
    assert sequence_ceiling(0.9) == pytest.approx((0.81 + 0.729 + 0.6561) / 3)
    assert sequence_ceiling(1.0) == 1.0 and sequence_ceiling(0.0) == 0.0
    assert sequence_ceiling(0.5, counts=(1,)) == 0.5
    needed = item_accuracy_needed(0.95)
    assert sequence_ceiling(needed) == pytest.approx(0.95, abs=1e-9)
    assert 0.98 < needed < 0.985  # 95% of 2-4-item captions needs > 98% per item
    assert item_accuracy_needed(0.5, counts=(1,)) == pytest.approx(0.5)


def test_foreground_share_against_uniform():
    images = torch.zeros(1, 1, 28, 28)
    images[0, 0, :14, :14] = 1.0  # the top-left quarter of the patches (grid 2 x 2)
    on_item = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    uniform = torch.full((1, 2, 2), 0.25)
    assert foreground_share(on_item, images, 14) == (1.0, 0.25)
    assert foreground_share(uniform, images, 14) == (0.25, 0.25)


# --- command line -------------------------------------------------------------------------

@pytest.mark.parametrize("part, flags", [
    ("caption", ["--epochs", "0"]),
    ("caption", ["--seeds", "1", "1"]),
    ("caption", ["--attention", "glimpse"]),
    ("caption", ["--minutes", "-1"]),
    ("vit", ["--patch-size", "5"]),
    ("vit", ["--train-images", "0"]),
    ("vit", ["--seeds", "3", "3"]),
])
def test_bad_flags_exit_2_with_one_line(part, flags, capsys, tmp_path):
    code, _, err = run_cli(["vision", part, *flags, "--out", str(tmp_path / "r")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) <= 3 and err.strip()


@pytest.mark.parametrize("part", ["caption", "vit"])
def test_out_is_a_file_or_data_missing_exit_2(part, capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(["vision", part, "--quick", "--out", str(blocker)], capsys)
    assert code == 2 and "--out" in err
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", fashion_mnist.Path("/nonexistent-x"))
    code, _, err = run_cli(["vision", part, "--quick", "--out", str(tmp_path / "r"),
                            "--data-dir", str(tmp_path / "empty")], capsys)
    assert code == 2 and "Fashion-MNIST" in err


def test_caption_quick_end_to_end(fake_data, tmp_path, capsys):
    out = tmp_path / "caption"
    code, stdout, err = run_cli(["vision", "caption", "--quick", "--threads", "1",
                                 "--data-dir", str(fake_data), "--out", str(out),
                                 "--no-progress"], capsys)
    assert code == 0, err
    assert "goal soft pointing accuracy" in stdout
    for name in (*REPORT_FILES, "overlay_soft.png", "overlay_hard.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["summary"]) == {"soft", "hard"}
    for kind in ("soft", "hard"):
        for split in ("val", "test"):
            for value in metrics["summary"][kind][split].values():
                assert 0.0 <= value["mean"] <= 1.0
    assert [g["name"] for g in metrics["goals"]] == ["soft sequence accuracy (test)",
                                                     "soft pointing accuracy (test)"]
    assert "Goals" in (out / "README.md").read_text()


def test_vit_quick_end_to_end(fake_data, tmp_path, capsys):
    out = tmp_path / "vit"
    code, stdout, err = run_cli(["vision", "vit", "--quick", "--threads", "1", "--data-dir",
                                 str(fake_data), "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    assert "test accuracy" in stdout
    for name in (*REPORT_FILES, "rollout.png", "curves.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["summary"]
    assert 0.0 <= summary["test_accuracy"]["mean"] <= 1.0
    assert 0.0 < summary["rollout_on_item"]["mean"] <= 1.0
    assert metrics["data"] == {"train": TRAIN - 5000, "val": 500, "test": TEST}
