"""``attnkit vision channel`` and ``attnkit vision glimpse``: the command line, the --quick
runs end to end on a small stand-in of Fashion-MNIST, and the reports."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from attnkit.cli import COMMANDS, main
from attnkit.data.images import fashion_mnist
from attnkit.data.images.idx import encode_idx
from attnkit.experiments.report import REPORT_FILES
from attnkit.experiments.vision import cli as vision_cli
from attnkit.experiments.vision.config import PRESETS, ChannelConfig, GlimpseConfig

TRAIN, TEST = 5600, 400  # the loader carves 5,000 validation images out of TRAIN


def _images(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Learnable stand-ins: class c is a bright block in row band c, plus noise."""
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
    for n, c in enumerate(labels):
        images[n, 2 + 2 * c:6 + 2 * c, 4:24] = 220
    return images, labels


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    folder = root / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for part, count in (("train", TRAIN), ("t10k", TEST)):
        images, labels = _images(count, rng)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            (folder / f"{part}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(encode_idx(array), compresslevel=1))
    return root


@pytest.fixture(autouse=True)
def small_dataset(monkeypatch):
    monkeypatch.setitem(COMMANDS, "vision", "attnkit.experiments.vision.cli")
    monkeypatch.setattr(fashion_mnist, "FILES", {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", TRAIN),
        "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", TEST)})
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", fashion_mnist.Path("/nonexistent-x"))
    fashion_mnist._load_part.cache_clear()
    yield
    fashion_mnist._load_part.cache_clear()


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_parts(capsys):
    code, out, _ = _run(["vision", "--help"], capsys)
    assert code == 0 and "channel" in out and "glimpse" in out
    code, out, _ = _run(["vision", "glimpse", "--help"], capsys)
    assert code == 0 and "--ram-epochs" in out and "--quick" in out


@pytest.mark.parametrize("argv, flag", [
    (["vision", "channel", "--epochs", "0"], "--epochs"),
    (["vision", "channel", "--lr", "nan"], "--lr"),
    (["vision", "glimpse", "--seeds", "x"], "--seeds"),
    (["vision", "channel", "--models", "cnn", "cnn"], "--models"),
    (["vision", "nosuchpart"], "nosuchpart"),
    (["vision", "glimpse", "--cnn-widths", "0", "8"], "--cnn-widths"),
    (["vision", "glimpse", "--cnn-widths", "a"], "--cnn-widths"),
    (["vision", "glimpse", "--widths", "-4"], "--widths"),
    (["vision", "glimpse", "--ram-hidden", "1"], "--ram-hidden"),
])
def test_bad_arguments_exit_2_with_one_line(argv, flag, capsys, tmp_path):
    code, _, err = _run([*argv, "--out", str(tmp_path / "o")] if len(argv) > 2 else argv,
                        capsys)
    assert code == 2
    assert flag in err and len(err.strip().splitlines()) <= 2  # usage line + the error
    assert not (tmp_path / "o").exists()


def test_missing_part_is_reported_not_fatal(monkeypatch, capsys):
    monkeypatch.setattr(vision_cli, "PARTS", ("channel", "notyet"))
    code, out, _ = _run(["vision", "--help"], capsys)
    assert code == 0 and "unavailable" in out
    code, _, err = _run(["vision", "notyet"], capsys)
    assert code == 2 and "notyet" in err and "not installed" in err


def test_missing_dataset_is_a_user_error(tmp_path, capsys):
    code, _, err = _run(["vision", "channel", "--quick", "--data-dir", str(tmp_path / "none"),
                         "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "attnkit data fetch --images" in err


def test_channel_quick_end_to_end(fashion_dir, tmp_path, capsys):
    out = tmp_path / "channel"
    code, stdout, err = _run(["vision", "channel", "--quick", "--no-progress", "--data-dir",
                              str(fashion_dir), "--out", str(out)], capsys)
    assert code == 0, err
    assert "goal: CBAM" in stdout
    for name in (*REPORT_FILES, "val_curves.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    quick = PRESETS["channel"]
    assert set(metrics["summary"]) == {"cnn", "cnn-se", "cnn-cbam"}
    assert len(metrics["runs"]) == 3 * quick["seeds"]
    assert metrics["data"]["train_images"] == quick["train_size"]
    assert metrics["data"]["test_images"] == TEST
    params = {k: v["parameters"] for k, v in metrics["summary"].items()}
    assert params["cnn"] < params["cnn-se"] < params["cnn-cbam"]
    for run in metrics["runs"]:
        assert run["epochs_done"] == quick["epochs"] and 0 <= run["test_accuracy"] <= 1
    cnn = [r["test_accuracy"] for r in metrics["runs"] if r["model"] == "cnn"]
    assert metrics["summary"]["cnn"]["test_accuracy"]["mean"] == pytest.approx(np.mean(cnn))
    assert "CBAM - CNN" in (out / "README.md").read_text()
    for name in ("cnn", "cnn-se", "cnn-cbam"):
        assert (out / "checkpoints" / f"{name}-seed0" / "model.safetensors").is_file()


def test_glimpse_quick_end_to_end(fashion_dir, tmp_path, capsys):
    out = tmp_path / "glimpse"
    code, stdout, err = _run(["vision", "glimpse", "--quick", "--no-progress", "--data-dir",
                              str(fashion_dir), "--out", str(out)], capsys)
    assert code == 0, err
    assert "goal ram" in stdout and "goal soft" in stdout
    for name in (*REPORT_FILES, "val_curves.png", "glimpse_paths.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["summary"]
    assert set(summary) == {"cnn", "soft", "ram"}
    assert summary["cnn"]["parameters"] >= max(summary["soft"]["parameters"],
                                                 summary["ram"]["parameters"])
    for check in metrics["goal"]["checks"]:
        assert check["parameters_ok"]
        assert check["met"] == (check["error"] <= check["cnn_error"])
    assert "parameters" in stdout and "<= CNN" in stdout
    readme = (out / "README.md").read_text()
    assert "no more parameters than the CNN" in readme and "256,781 parameters" in readme
    assert 0 <= summary["ram"]["attention"]["glimpses_on_item"] <= 1
    assert 0 <= summary["soft"]["attention"]["attention_mass_on_item"] <= 1
    ram_runs = [r for r in metrics["runs"] if r["model"] == "ram"]
    assert len(ram_runs[0]["attention"]["glimpses_on_item_by_step"]) == \
        PRESETS["glimpse"]["glimpses"]
    assert [c["model"] for c in metrics["goal"]["checks"]] == ["soft", "ram"]
    assert (out / "checkpoints" / "ram-seed0" / "model.safetensors").is_file()


def test_configs_refuse_bad_values():
    with pytest.raises(ValueError, match="models"):
        ChannelConfig(models=["vgg"])
    with pytest.raises(ValueError, match="epochs"):
        GlimpseConfig(epochs=0)
    with pytest.raises(ValueError, match="widths"):
        ChannelConfig(widths=[])
    with pytest.raises(ValueError, match="cnn_widths"):
        GlimpseConfig(cnn_widths=[])
    with pytest.raises(ValueError, match="cnn_widths"):
        GlimpseConfig(cnn_widths=[8, True])
    with pytest.raises(ValueError, match="cnn_widths"):
        GlimpseConfig(cnn_widths="12")


@pytest.mark.parametrize("preset", [{}, PRESETS["glimpse"]])
def test_cnn_has_at_least_the_parameters_of_each_attention_model(preset):
    """The comparison is fair to the CNN at the default and --quick sizes."""
    from attnkit.experiments.vision.common import count_parameters
    from attnkit.experiments.vision.glimpse_run import build_model

    config = GlimpseConfig(**preset)
    counts = {name: count_parameters(build_model(name, config)) for name in
              ("cnn", "soft", "ram")}
    assert counts["soft"] <= counts["cnn"] and counts["ram"] <= counts["cnn"], counts
    if not preset:  # the default sizes, as stated in the report and the config
        assert counts == {"cnn": 13726, "soft": 11906, "ram": 10605}


def test_goal_needs_both_lower_error_and_no_more_parameters():
    from attnkit.experiments.vision.glimpse_run import _metrics

    def run(model, error, parameters):
        return {"model": model, "test_error": error, "val_curve": [0.5], "parameters": parameters,
                "epochs_done": 1, "attention": {}}

    config = GlimpseConfig(seeds=1)
    runs = [run("cnn", 0.5, 1000), run("soft", 0.3, 1001), run("ram", 0.4, 1000)]
    checks = {c["model"]: c for c in _metrics(config, runs, {})["goal"]["checks"]}
    assert checks["soft"]["error_ok"] and not checks["soft"]["parameters_ok"]
    assert not checks["soft"]["met"]  # lower error, but one parameter more than the CNN
    assert checks["ram"]["met"]  # lower error and as many parameters
    runs[2] = run("ram", 0.6, 10)
    checks = {c["model"]: c for c in _metrics(config, runs, {})["goal"]["checks"]}
    assert checks["ram"]["parameters_ok"] and not checks["ram"]["met"]
