"""`attnkit translate` end to end on a tiny corpus the tests compile from .mo catalogs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _translate_helpers import corpus_entries, run_cli, train_args

from attnkit.data import load_corpus
from attnkit.errors import UserError
from attnkit.experiments.translate import MODEL_KINDS, PRESETS, CompareConfig, TranslateConfig
from attnkit.experiments.translate.translator import load_translator


def test_train_writes_the_report(trained):
    for name in ("metrics.json", "README.md", "report.html", "alignments.png", "tokenizer.json"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["model"] == "transformer" and metrics["training"]["step"] == 6
    assert 0.0 <= metrics["bleu"] <= 100.0 and 0.0 <= metrics["chrf"] <= 100.0
    assert metrics["bleu_signature"].startswith("nrefs:1")
    assert sum(b["sentences"] for b in metrics["by_length"]) == metrics["test_sentences"]
    assert metrics["test_sentences"] == min(4, metrics["corpus"]["pairs"]["test"])
    assert "valid_loss" in metrics["training"]
    curve = metrics["training"]["curve"]  # evaluations at updates 3 and 6
    assert [p["step"] for p in curve] == [3, 6]
    assert all(0.0 <= p["valid_bleu"] <= 100.0 and p["minutes"] > 0 for p in curve)
    assert curve[0]["minutes"] < curve[1]["minutes"]
    assert (trained / "bleu_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "Quality over the budget" in (trained / "README.md").read_text()
    readme = (trained / "README.md").read_text()
    assert readme.count("BLEU") >= 2 and "![" in readme and "(alignments.png)" in readme
    assert (trained / "alignments.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (trained / "report.html").read_text()
    assert "data:image/png;base64," in page and "alignments.png" not in page.split("<body>")[1] \
        .replace("metrics.json", "")  # the figure is embedded, not linked
    assert metrics["samples"][0]["source"].split()[0] in page
    # the offline attention viewer of one test sentence, self-contained and linked
    viewer = (trained / "viewer.html").read_text()
    assert metrics["viewer"] == {"file": "viewer.html",
                                 "sentence": metrics["alignment_sentences"][0]}
    assert "viewer.html" in readme and "<script" in viewer
    assert "http://" not in viewer and "https://" not in viewer
    for module in ("encoder", "decoder"):  # both stacks' attention is in the page's data
        assert module in viewer


def test_quick_preset_end_to_end(data_dir, tmp_path, capsys):
    """`attnkit translate --quick` (the main job) with a step cap that keeps the test short:
    the preset's values reach the run, explicit flags win over it, the report is complete."""
    out = tmp_path / "quick"
    code, stdout, err = run_cli(["translate", "--quick", "--max-steps", "4", "--vocab-size",
                                 "300", "--no-progress", "--data-dir", str(data_dir),
                                 "--out", str(out)], capsys)
    assert code == 0, err
    assert "BLEU" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    quick = PRESETS["quick"]
    assert config["model"] == "transformer"
    assert config["size"] == quick["size"] == "tiny"
    assert config["minutes"] == quick["minutes"] and config["beam_size"] == quick["beam_size"]
    assert config["test_limit"] == quick["test_limit"]
    assert config["vocab_size"] == 300 and config["max_steps"] == 4  # flags override
    assert metrics["training"]["step"] == 4
    assert {"bleu", "chrf", "by_length", "samples", "training", "corpus",
            "alignment_sentences"} <= set(metrics)
    assert (out / "README.md").read_text().startswith("# attnkit translate: transformer")
    assert (out / "alignments.png").read_bytes()[:4] == b"\x89PNG"
    assert "<img" in (out / "report.html").read_text()


def test_resume_continues_from_the_checkpoint(trained, data_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    code, _, err = run_cli(train_args(data_dir, copy, "--model", "transformer"), capsys)
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
    code, _, _ = run_cli(train_args(data_dir, copy, "--model", "transformer", "--resume",
                                    "--max-steps", "8"), capsys)
    assert code == 0
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["training"]["step"] == 8
    steps = [json.loads(line)["step"] for line in
             (copy / "checkpoints" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 8


def test_checkpoint_reloads_to_the_same_weights(trained):
    translator, model_config = load_translator(trained)
    assert model_config["kind"] == "transformer"
    # The report's model is the checkpoint's model: same translation both ways.
    again, _ = load_translator(trained / "checkpoints")
    outputs_a, _ = translator.translate(["Open the selected file now"])
    outputs_b, _ = again.translate(["Open the selected file now"])
    assert outputs_a == outputs_b
    for (name, a), (_, b) in zip(translator.model.state_dict().items(),
                                 again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_eval_and_text(trained, capsys, tmp_path):
    code, out, _ = run_cli(["translate", "eval", str(trained), "--test-limit", "3",
                            "--beam-size", "1", "--json", str(tmp_path / "m.json")], capsys)
    assert code == 0 and "BLEU" in out
    assert json.loads((tmp_path / "m.json").read_text())["test_sentences"] <= 3
    code, out, _ = run_cli(["translate", "text", str(trained), "Open the file"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) >= 3  # translation, blank line, the alignment table header + rows
    assert lines[1] == ""


@pytest.mark.parametrize("model", ["rnn-attention", "rnn-none"])
def test_recurrent_models_train_end_to_end(model, data_dir, tmp_path, capsys):
    code, out, _ = run_cli(train_args(data_dir, tmp_path / model, "--model", model,
                                      "--max-steps", "2"), capsys)
    assert code == 0 and "BLEU" in out
    translator, _ = load_translator(tmp_path / model)
    assert translator.max_source_tokens is None  # recurrent: no position table
    _, alignments = translator.translate(["Close the window now"], return_alignment=True)
    viewer = tmp_path / model / "viewer.html"
    if model == "rnn-none":
        assert alignments[0].weights is None
        assert not viewer.exists()  # the fixed-vector model has no attention to show
    else:
        assert viewer.is_file() and "<script" in viewer.read_text()
        weights = alignments[0].weights
        assert weights.shape == (len(alignments[0].target_tokens),
                                 len(alignments[0].source_tokens))
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[0]))


def test_config_validation():
    with pytest.raises(ValueError, match="model"):
        TranslateConfig(model="lstm")
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="minutes"):
            TranslateConfig(minutes=bad)
    with pytest.raises(TypeError, match="minutes"):
        TranslateConfig(minutes="5")
    with pytest.raises(ValueError, match="beam_size"):
        TranslateConfig(beam_size=0)
    with pytest.raises(ValueError, match="vocab_size"):
        TranslateConfig(vocab_size=5)
    with pytest.raises(ValueError, match="lr"):
        TranslateConfig(lr=float("inf"))
    with pytest.raises(TypeError, match="progress"):
        TranslateConfig(progress="yes")
    for field, bad in (("width", 0), ("layers", 0), ("dropout", 1.0), ("schedule", "step"),
                       ("eval_minutes", -1.0), ("valid_bleu_limit", 0)):
        with pytest.raises(ValueError, match=field):
            TranslateConfig(**{field: bad})
    assert set(MODEL_KINDS) == {"transformer", "rnn-attention", "rnn-luong", "rnn-local-p",
                                "rnn-none"}
    with pytest.raises(ValueError, match="models"):
        CompareConfig(models=["transformer", "transformer"])
    with pytest.raises(ValueError, match="base"):
        CompareConfig(base={"model": "transformer"})
    with pytest.raises(ValueError, match="beam_size"):
        CompareConfig(base={"beam_size": 0})


def test_api_errors(trained, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no checkpoint"):
        load_translator(empty)
    translator, _ = load_translator(trained)
    with pytest.raises(TypeError, match="sentences"):
        translator.translate("Open the file")
    with pytest.raises(ValueError, match=r"sentences\[1\].*positions for 512"):
        translator.translate(["Open", "file " * 600])


def test_corpus_round_trip(data_dir):
    corpus = load_corpus("fr", data_dir)
    assert len(corpus.train) + len(corpus.valid) + len(corpus.test) == len(corpus_entries())


def test_compare_writes_table_and_plots(data_dir, tmp_path, capsys):
    out = tmp_path / "compare"
    code, stdout, _ = run_cli(["translate", "compare", "--models", "rnn-none", "transformer",
                               "--size", "tiny", "--vocab-size", "300", "--max-steps", "2",
                               "--max-tokens", "400", "--test-limit", "3", "--beam-size", "1",
                               "--no-progress", "--data-dir", str(data_dir), "--out", str(out)],
                              capsys)
    assert code == 0 and "rnn-none" in stdout and "transformer" in stdout
    summary = json.loads((out / "metrics.json").read_text())
    assert list(summary["models"]) == ["rnn-none", "transformer"]
    assert all(row["updates"] == 2 for row in summary["models"].values())
    for name in ("bleu_by_length.png", "alignments.png", "quality_curve.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    table = (out / "README.md").read_text()
    assert "| rnn-none |" in table and "| transformer |" in table
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3
    # rnn-attention was not compared: its claims have no verdict; minutes per point do
    verdicts = summary["claims"]["verdicts"]
    assert [v["met"] for v in verdicts[:2]] == [None, None] and len(verdicts) == 2
    assert set(summary["claims"]["per_model"]) == {"rnn-none", "transformer"}
    assert "## The claims" in table or "The claims" in table
    # A second compare with --resume reuses both evaluated runs instead of training again.
    code, stdout, _ = run_cli(["translate", "compare", "--models", "rnn-none", "transformer",
                               "--resume", "--size", "tiny", "--vocab-size", "300",
                               "--max-steps", "2", "--max-tokens", "400", "--no-progress",
                               "--data-dir", str(data_dir), "--out", str(out)], capsys)
    assert code == 0 and stdout.count("already evaluated") == 2


def test_width_and_layers_shape_the_model_and_survive_reloading(data_dir, tmp_path, capsys):
    out = tmp_path / "wide"
    code, _, err = run_cli(train_args(data_dir, out, "--width", "64", "--layers", "2",
                                      "--dropout", "0.0", "--max-steps", "2"), capsys)
    assert code == 0, err
    translator, model_config = load_translator(out)
    config = model_config["config"]
    assert (config["d_model"], config["num_encoder_layers"], config["num_decoder_layers"],
            config["dropout"]) == (64, 2, 2, 0.0)
    assert translator.model.config.d_model == 64
    code, _, err = run_cli(train_args(data_dir, tmp_path / "odd", "--width", "99"), capsys)
    assert code == 2 and err.count("\n") == 1 and "--width" in err
    assert not (tmp_path / "odd").exists()  # refused before any work


def test_plan_says_what_the_budget_holds_and_warns_when_too_little():
    from attnkit.experiments.translate.config import USABLE_EPOCHS
    from attnkit.experiments.translate.run import _plan_logger

    lines = []
    config = TranslateConfig(minutes=10.0)
    announce = _plan_logger(config, range(100), lines.append)  # 100 batches per epoch
    # 1 s per update: 600 updates = 6 epochs in the budget, enough
    announce({"step_time": 1.0, "expected_steps": 600.0, "remaining_s": 588.0,
              "budget_s": 600.0, "step": 12})
    assert lines == ["measured 1.00 s per update on this machine: expect about 600 updates "
                     "(6.0 epochs) in the 10-minute budget"]
    lines.clear()
    # 4 s per update: 150 updates = 1.5 epochs, too few; 100 * 4 s per epoch
    announce({"step_time": 4.0, "expected_steps": 150.0, "remaining_s": 552.0,
              "budget_s": 600.0, "step": 12})
    assert len(lines) == 2 and lines[1].startswith("warning: this machine is too slow")
    needed = int(lines[1].rsplit("--minutes ", 1)[1].split()[0])
    assert needed * 60 >= USABLE_EPOCHS * 100 * 4.0


def test_attention_viewer_names_bad_arguments(trained):
    from attnkit.experiments.translate.report import attention_viewer

    translator, _ = load_translator(trained)
    with pytest.raises(TypeError, match="translator"):
        attention_viewer(object(), "Open the file")
    with pytest.raises(TypeError, match="text"):
        attention_viewer(translator, 3)
    with pytest.raises(ValueError, match="text"):
        attention_viewer(translator, "")
