"""`attnkit translate` against every class of bad argument: exit 2, one line, no traceback,
and nothing trained or written before the check."""

from __future__ import annotations

import json
import shutil

import pytest
from _translate_helpers import run_cli, train_args

import attnkit.experiments.translate.run as run_module
from attnkit.experiments.translate.translator import translate_text


def _one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnkit translate"), err
    assert "error:" in lines[0] and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


BAD_FLAGS = [
    ("--minutes", "0"), ("--minutes", "-1"), ("--minutes", "inf"), ("--minutes", "nan"),
    ("--minutes", "1e308"), ("--minutes", "ten"),
    ("--max-steps", "0"), ("--max-steps", "-3"), ("--max-steps", "1.5"),
    ("--vocab-size", "5"), ("--vocab-size", "99999999999"),
    ("--max-tokens", "0"), ("--max-tokens", "95"), ("--max-tokens", "99999999999"),
    ("--lr", "0"), ("--lr", "-1e-3"), ("--lr", "inf"), ("--lr", "nan"),
    ("--warmup-steps", "-1"), ("--eval-every", "0"), ("--checkpoint-every", "0"),
    ("--beam-size", "0"), ("--beam-size", "65"), ("--test-limit", "0"),
    ("--seed", "-1"), ("--seed", str(2**70)),
    ("--lang", "xx"), ("--size", "huge"), ("--amp", "fp8"),
]


@pytest.mark.parametrize("action", [[], ["train"], ["compare"]])
@pytest.mark.parametrize("flag,value", BAD_FLAGS)
def test_bad_values_exit_2(action, flag, value, tmp_path, capsys):
    code, out, err = run_cli(["translate", *action, flag, value, "--out", str(tmp_path / "o")],
                             capsys)
    _one_line_error(code, err, flag)
    assert not (tmp_path / "o").exists() and out == ""


@pytest.mark.parametrize("argv,needle", [
    (["translate", "train", "--model", "gru"], "--model"),
    (["translate", "compare", "--models", "transformer", "lstm"], "--models"),
    (["translate", "compare", "--models"], "--models"),
    (["translate", "text"], "required"),
    (["translate", "eval"], "required"),
    (["translate", "eval", "x", "--beam-size", "0"], "--beam-size"),
    (["translate", "eval", "x", "--test-limit", "-2"], "--test-limit"),
    (["translate", "text", "x", "y", "--beam-size", "1000000"], "--beam-size"),
    (["translate", "fly"], "invalid choice"),
])
def test_usage_errors_exit_2(argv, needle, capsys):
    _one_line_error(*run_cli(argv, capsys)[::2], needle)


@pytest.mark.parametrize("action", [[], ["train"], ["compare", "--models", "rnn-none"]])
@pytest.mark.parametrize("where", ["below_a_file", "a_file", "data_dir_below_a_file"])
def test_unwritable_paths_are_refused_before_training(action, where, data_dir, tmp_path,
                                                      capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out, data, flag = tmp_path / "out", str(data_dir), "--out"
    if where == "below_a_file":
        out = afile / "sub"
    elif where == "a_file":
        out = afile
    else:
        data, flag = str(afile / "data"), "--data-dir"
    code, stdout, err = run_cli(["translate", *action, "--size", "tiny", "--vocab-size", "300",
                                 "--max-steps", "1", "--data-dir", data, "--out", str(out)],
                                capsys)
    _one_line_error(code, err, flag)
    assert stdout == ""  # not even the corpus was loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("flag,value", [("--vocab-size", "280"), ("--size", "small"),
                                        ("--model", "rnn-none"), ("--lang", "de"),
                                        ("--seed", "3")])
def test_resume_with_another_model_or_corpus_is_refused(flag, value, trained, data_dir,
                                                        tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    before = sorted(p.name for p in (copy / "checkpoints").iterdir())
    argv = train_args(data_dir, copy, "--resume")
    argv += ([flag, value] if flag != "--model" else ["--model", value])
    code, stdout, err = run_cli(argv, capsys)
    _one_line_error(code, err, "--resume", flag, value)
    assert stdout == ""
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == before


def test_eval_output_and_checkpoint_paths(trained, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for json_path in (afile / "m.json", tmp_path):
        code, out, err = run_cli(["translate", "eval", str(trained), "--json", str(json_path)],
                                 capsys)
        _one_line_error(code, err, "--json")
        assert out == ""  # refused before evaluating
    for checkpoint, needle in ((tmp_path / "nowhere", "does not exist"),
                               (afile, "holds no checkpoint"),
                               (tmp_path, "holds no checkpoint")):
        for action in (["eval", str(checkpoint)], ["text", str(checkpoint), "Open"]):
            _one_line_error(*run_cli(["translate", *action], capsys)[::2], "checkpoint", needle)
    code, _, err = run_cli(["translate", "eval", str(trained), "--data-dir",
                            str(tmp_path / "nowhere")], capsys)
    _one_line_error(code, err, "no corpus")


def test_corrupt_checkpoints_fail_with_one_line(trained, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    for weights in (broken / "checkpoints").glob("ckpt-*/model.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    _one_line_error(*run_cli(["translate", "text", str(broken), "Open"], capsys)[::2],
                    "checkpoint")
    for state in (broken / "checkpoints").glob("ckpt-*/state.json"):
        state.write_bytes(b"\xff\xfe not json")
    _one_line_error(*run_cli(["translate", "eval", str(broken)], capsys)[::2], "checkpoint")
    edited = tmp_path / "edited"
    shutil.copytree(trained, edited)
    for state_file in (edited / "checkpoints").glob("ckpt-*/state.json"):
        state = json.loads(state_file.read_text())
        state["model_config"]["translate_config"]["max_len"] = -4
        state_file.write_text(json.dumps(state))
    _one_line_error(*run_cli(["translate", "eval", str(edited)], capsys)[::2],
                    "translate_config", "max_len")
    foreign = tmp_path / "foreign"
    shutil.copytree(trained, foreign)
    for tokenizer in foreign.rglob("tokenizer.json"):
        tokenizer.write_text("{not json")
    _one_line_error(*run_cli(["translate", "text", str(foreign), "Open"], capsys)[::2],
                    "tokenizer")


def test_text_refuses_what_it_cannot_translate(trained, capsys):
    for text in ("", "   \n"):
        _one_line_error(*run_cli(["translate", "text", str(trained), text], capsys)[::2],
                        "text", "non-empty")
    # Longer than the Transformer's 512 positions: refused with the limit, not cut.
    code, out, err = run_cli(["translate", "text", str(trained), "Open the file " * 300],
                             capsys)
    _one_line_error(code, err, "text", "positions for 512")
    assert out == ""
    # Control characters and odd Unicode are text like any other.
    code, out, _ = run_cli(["translate", "text", str(trained), "\x01 ünï \u202e file",
                            "--no-alignment"], capsys)
    assert code == 0 and len(out.splitlines()) == 1
    with pytest.raises(TypeError, match="text"):
        translate_text(trained, 5)
    with pytest.raises(ValueError, match="beam_size"):
        translate_text(trained, "Open", beam_size=0)


def test_compare_refuses_a_model_twice(tmp_path, capsys):
    code, out, err = run_cli(["translate", "compare", "--models", "rnn-none", "transformer",
                              "rnn-none", "--out", str(tmp_path / "c")], capsys)
    _one_line_error(code, err, "--models", "rnn-none")
    assert not (tmp_path / "c").exists()


def test_ctrl_c_is_one_line_and_code_130(data_dir, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "train", interrupted)
    code, _, err = run_cli(train_args(data_dir, tmp_path / "o"), capsys)
    assert code == 130 and len(err.strip().splitlines()) == 1 and "--resume" in err
