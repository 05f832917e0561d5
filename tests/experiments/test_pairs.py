"""`attnkit pairs`: the bootstrap intervals, the trivial features, the equal time budget per
model, the config checks, bad flags (exit 2 before any work) and the --quick run end to end
on the tiny test corpus."""

from __future__ import annotations

import json

import pytest
import torch
from _translate_helpers import run_cli

from attnkit.data.translation.pairs import PairExample
from attnkit.experiments.pairs import MODEL_KINDS, PRESETS, PairsConfig
from attnkit.experiments.pairs.data import EncodedSplit
from attnkit.experiments.pairs.shortcuts import FEATURES, features, fit_logistic
from attnkit.experiments.pairs.train import (
    bootstrap_accuracy,
    build_model,
    paired_bootstrap,
    train_model,
)
from attnkit.experiments.report import REPORT_FILES


def test_bootstrap_interval_holds_the_accuracy_and_resamples_whole_groups():
    correct = torch.tensor([1, 1, 1, 0] * 50)
    groups = torch.arange(200) // 2  # two examples per English sentence
    low, high = bootstrap_accuracy(correct, groups, resamples=400)
    assert low < 0.75 < high and high - low < 0.2
    assert bootstrap_accuracy(torch.ones(10), torch.arange(10), resamples=50) == (1.0, 1.0)
    diff = paired_bootstrap(torch.ones(200), correct, groups, resamples=400)
    assert diff["difference"] == pytest.approx(0.25)
    assert 0 < diff["low"] < 0.25 < diff["high"] and diff["p_not_above"] == 0.0


def test_trivial_features_see_placeholders_lengths_and_copies():
    good = PairExample("Copy %s to GIMP?", "Copier %s vers GIMP ?", 1, 0, 0)
    bad = PairExample("Copy %s to GIMP?", "Fichier introuvable.", 0, 0, 1)
    f_good = dict(zip(FEATURES, features(good), strict=True))
    f_bad = dict(zip(FEATURES, features(bad), strict=True))
    assert f_good["placeholders and numbers match"] == 1.0
    assert f_bad["placeholders and numbers match"] == 0.0
    assert f_good["English words copied"] == pytest.approx(2 / 4)  # GIMP and the s of %s
    assert f_good["same end punctuation"] == 1.0 and f_bad["same end punctuation"] == 0.0
    predict, weights = fit_logistic([good, bad] * 5)
    assert set(weights) == {*FEATURES, "bias"}
    probabilities = predict([good, bad])
    assert probabilities[0] > 0.5 > probabilities[1]


def _tiny_split(n: int) -> EncodedSplit:
    examples = [PairExample(f"e{k}", f"f{k}", k % 2, k // 2, k // 2) for k in range(n)]
    return EncodedSplit(english=[[5 + k % 7, 6] for k in range(n)],
                        french=[[5 + k % 5] for k in range(n)],
                        labels=torch.tensor([float(k % 2) for k in range(n)]),
                        pairs=torch.arange(n) // 2, examples=examples)


def test_the_default_is_an_equal_cpu_budget_per_model_with_epochs_only_a_cap():
    config = PairsConfig()
    # CPU time runs at least as fast as wall time on free cores: this bounds the wall time
    assert config.clock == "cpu" and len(config.models) * config.minutes <= 8.0
    assert config.epochs >= 100  # the budget, not the epochs, ends a default run
    # the options chosen on valid apply to every model alike (TUNING.md)
    assert config.exact_match and config.models == ["decomposable", "bigru"]
    assert build_model("bigru", 50, config).config.exact_match
    assert build_model("decomposable", 50, config).config.exact_match
    with pytest.raises(ValueError, match="clock"):
        PairsConfig(clock="gpu")


def test_training_stops_when_its_own_budget_is_spent():
    config = PairsConfig(epochs=50, batch_size=4, embed_dim=8, hidden=8, progress=False)
    train, valid = _tiny_split(64), _tiny_split(8)
    model = build_model("decomposable", 16, config)
    record = train_model(model, train, valid, config, budget_s=0.0)
    # the clock is read after every update: a spent budget stops after the first one
    assert record["stopped_by"] == "budget" and record["steps"] == 1
    assert record["epochs"] == pytest.approx(1 / 16) and record["curve"][-1]["step"] == 1
    assert record["budget_s"] == 0.0 and record["cpu_s"] >= 0.0
    record = train_model(build_model("decomposable", 16, config), train, valid,
                         PairsConfig(epochs=2, batch_size=4, embed_dim=8, hidden=8,
                                     progress=False), budget_s=600.0)
    assert record["stopped_by"] == "epochs" and record["epochs"] == pytest.approx(2.0)
    capped = PairsConfig(epochs=50, batch_size=4, embed_dim=8, hidden=8, progress=False,
                         clock="cpu", max_minutes=1e-9)
    record = train_model(build_model("decomposable", 16, capped), train, valid, capped,
                         budget_s=600.0)
    assert record["stopped_by"] == "wall cap" and record["steps"] == 1


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="models"):
        PairsConfig(models=["transformer"])
    with pytest.raises(ValueError, match="models"):
        PairsConfig(models=["bigru", "bigru"])
    with pytest.raises(ValueError, match="epochs"):
        PairsConfig(epochs=0)
    with pytest.raises(TypeError, match="out"):
        PairsConfig(out=None)


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs"),
    (["--models", "transformer"], "--models"),
    (["--models", "bigru", "bigru"], "--models"),
    (["--lr", "0"], "--lr"),
    (["--train-pairs", "1"], "--train-pairs"),
    (["--minutes", "nan"], "--minutes"),
    (["--clock", "gpu"], "--clock"),
    (["--max-minutes", "0"], "--max-minutes"),
    (["--dropout", "1"], "--dropout"),
    (["--exact-match", "yes"], "--exact-match"),
    (["--aggregate", "mean"], "--aggregate"),
])
def test_bad_flags_exit_2_with_one_line(flags, message, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli(["pairs", *flags, "--out", str(out)], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_an_unusable_out_exits_2_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(["pairs", "--quick", "--out", str(blocker / "report"),
                            "--data-dir", str(tmp_path / "no-data")], capsys)
    assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no-data").exists()


def test_quick_run_end_to_end(data_dir, tmp_path, capsys):
    out = tmp_path / "pairs"
    # a 10-minute budget so the epoch, not a loaded machine's speed, ends training
    code, stdout, err = run_cli(["pairs", "--quick", "--vocab-size", "300", "--no-progress",
                                 "--minutes", "10", "--data-dir", str(data_dir),
                                 "--out", str(out)], capsys)
    assert code == 0, err
    for name in (*REPORT_FILES, "valid_curve.png", "alignment_0.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["train_pairs"] == PRESETS["quick"]["train_pairs"]
    assert metrics["config"]["clock"] == "cpu"
    assert list(metrics["models"]) == list(MODEL_KINDS)
    examples = metrics["data"]["examples"]
    assert all(n > 0 and n % 2 == 0 for n in examples.values())
    for kind, r in metrics["models"].items():
        assert r["training"]["epochs"] == pytest.approx(1.0) and r["training"]["steps"] >= 1
        # equal compute: every model gets the same budget, none inherits what another left
        assert r["training"]["stopped_by"] == "epochs" and r["training"]["budget_s"] == 600.0
        assert r["training"]["cpu_s"] > 0 and len(r["training"]["load_average_1min"]) == 2
        test = r["test"]
        assert test["examples"] == examples["test"] and len(test["correct"]) == examples["test"]
        assert test["ci95"][0] <= test["accuracy"] <= test["ci95"][1]
        assert r["training"]["best"]["valid_accuracy"] == max(
            p["valid_accuracy"] for p in r["training"]["curve"]), kind
    assert metrics["selected"] in ("decomposable", "decomposable-intra")
    goal = metrics["goal"]
    assert goal["model"] == metrics["selected"] and goal["baseline"] == "bigru"
    params = {k: r["parameters"]["total"] for k, r in metrics["models"].items()}
    assert goal["parameter_ratio"] == pytest.approx(params[goal["model"]] / params["bigru"])
    heatmap = metrics["heatmaps"][0]
    weights = torch.tensor(heatmap["weights"])
    assert weights.shape == (len(heatmap["english_tokens"]), len(heatmap["french_tokens"]))
    torch.testing.assert_close(weights.sum(1), torch.ones(len(weights)), atol=1e-3, rtol=0)
    assert "trivial features" in (out / "README.md").read_text()
    assert "goal" in stdout


def test_the_option_flags_reach_the_config():
    import argparse

    from attnkit.experiments.pairs.cli import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["pairs", "--exact-match", "off", "--aggregate", "sum+max",
                              "--dropout", "0.1"])
    config = config_from_args(args)
    assert not config.exact_match and config.aggregate == "sum+max" and config.dropout == 0.1
    assert config_from_args(parser.parse_args(["pairs"])).exact_match
