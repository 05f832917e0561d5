"""longrange's validation check (tune.py): it trains for the given number of updates and
scores valid windows of the goal's lengths; bad arguments exit 2 before any work."""

from __future__ import annotations

import pytest

from attnkit.experiments.longrange import LongRangeConfig, tune


def test_validation_accuracy_on_the_tiny_corpus(data_dir, monkeypatch):
    read = []
    original = tune.make_examples
    monkeypatch.setattr(tune, "make_examples", lambda stream, *a, **k: read.append(stream)
                        or original(stream, *a, **k))
    config = LongRangeConfig(max_len=44, max_tokens=200, data_dir=str(data_dir),
                             progress=False)
    result = tune.validation_accuracy("rnn-attention", 2, lr=5e-3, config=config)
    assert result["steps"] == 2 and result["lr"] == 5e-3 and result["max_tokens"] == 200
    assert result["examples"] == 2 * 3  # lengths 40, 42, 44, two windows each
    assert 0.0 <= result["valid_token_accuracy"] <= 1.0
    assert 0.0 <= result["valid_exact_match"] <= 1.0
    streams = tune.prepare_data(config, log=lambda _: None)[1]
    assert all(len(s) == len(streams["valid"]) for s in read)  # the valid split only


@pytest.mark.parametrize("args", [["--steps", "0"], ["--lr", "nan"], ["--kind", "lstm"],
                                  ["--max-tokens", "5"]])
def test_bad_arguments_exit_2(args):
    with pytest.raises(SystemExit) as exit_info:
        tune.main(args)
    assert exit_info.value.code == 2
